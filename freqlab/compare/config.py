"""The settings of a comparison (:class:`CompareConfig`), defined once: :func:`freqlab.compare.study.compare` takes
it whole or builds it from keywords, ``freqlab compare`` builds its options from it, and the demo's verdict reads
its values from the committed criterion (:mod:`freqlab.compare.criterion`). Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from freqlab.measure.conventions import DEFAULT_BAND_EDGES
from freqlab.runtime.settings import documented, parse_edges, require, setting

__all__ = ["CompareConfig"]


@documented
@dataclass
class CompareConfig:
    """Everything that determines a comparison's numbers and verdicts besides the image sets; each field's doc is
    also the help of its ``freqlab compare`` option."""

    n_images: int = setting(1000, "images per set: each candidate's, and each of the reference's two halves (the "
                            "reference reads 2N images, its controls N more held-out ones)", metavar="N")
    batch_size: int = setting(250, "images per batch while the features are computed")
    seed: int = setting(0, "seeds the subsets, permutations, classifier and controls", cli=False)
    bands: Any = setting(None, "band edges in cycles/pixel (none: low/mid/high, "
                         + ",".join(f"{e:g}" for e in DEFAULT_BAND_EDGES) + "); the whole image is compared too",
                         parse=parse_edges, metavar="EDGES")
    alpha: float = setting(0.05, "family-wise error per candidate (Holm over every band's MMD and classifier test, "
                           "and the fidelity and diversity tests)")
    permutations: int = setting(300, "permutations of the MMD's null")
    kernel_images: int = setting(1000, "images per set in the MMD and the k-NN statistics (a random subset: "
                                 "their cost grows with its square, not with N)", metavar="N")
    neighbours: int = setting(5, "k of the k-NN balls of precision and recall", metavar="K")
    classifier_images: int = setting(4000, "images per set the classifier test uses at most (half to train, half to "
                                     "score)", metavar="N")
    classifier_hidden: int = setting(64, "hidden units of the classifier test's MLP")
    classifier_steps: int = setting(300, "full-batch Adam steps of the classifier test")
    resolution: int = setting(32, "image size of named sources and of folders (centre-cropped, downsampled)",
                              metavar="PIXELS")
    grayscale: bool = setting(False, "one channel instead of three")
    split: str = setting("train", "data split of named sources", choices=("train", "test"))

    def __post_init__(self):
        require(self, at_least={"n_images": 8, "batch_size": 1, "permutations": 19, "kernel_images": 8,
                                "neighbours": 1, "classifier_images": 8, "classifier_hidden": 1,
                                "classifier_steps": 1, "resolution": 4})
        if not 0 < float(self.alpha) < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if self.neighbours >= min(self.n_images, self.kernel_images):
            raise ValueError(f"neighbours ({self.neighbours}) must be below the images a set "
                             f"({min(self.n_images, self.kernel_images)})")
