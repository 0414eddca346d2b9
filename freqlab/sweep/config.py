"""The settings of a sweep (:class:`SweepConfig`): what determines its numbers, defined once.

:func:`freqlab.sweep.study.sweep` takes it whole (``config=``) or builds it from keywords, and ``freqlab sweep`` builds
its options from its fields (:mod:`freqlab.commands.options`).
Imports no torch (the command line builds its parser from it); the σ grid is :mod:`freqlab.measure.sigmas`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from freqlab.measure.conventions import DEFAULT_BAND_EDGES, WINDOW
from freqlab.runtime.settings import documented, parse_edges, parse_optional_int, parse_window, require, setting

__all__ = ["MODES", "DEFAULT_MODES", "SAMPLERS", "DISTRIBUTE", "MIN_IMAGES", "SweepConfig", "parse_modes"]

#: ``denoise``: input ``x0 + σ·n``; ``generate``: one step from ``σ·z``; ``sample``: EDM's N-step deterministic
#: sampler from ``σ_max·z`` (the same z), the multi-step reference (measured at σ_max only).
MODES = ("denoise", "generate", "sample")
DEFAULT_MODES = ("denoise", "generate")
SAMPLERS = ("heun", "euler")  # as freqlab.models.sampler.SAMPLERS
DISTRIBUTE = ("auto", "images", "checkpoints")
#: Fewest images per checkpoint: standard errors and the Wasserstein distance need a sample.
MIN_IMAGES = 2


def parse_modes(text: str) -> tuple[str, ...]:
    """``both`` (the default modes), ``all`` or comma-separated mode names."""
    named = {"both": DEFAULT_MODES, "all": MODES}
    return named.get(text.strip(), tuple(m.strip() for m in text.split(",") if m.strip()))


@documented
@dataclass
class SweepConfig:
    """Everything that determines a sweep's numbers besides the models, the data and the σ grid; each field's doc
    is also the help of its ``freqlab sweep`` option."""

    modes: tuple[str, ...] = setting(
        DEFAULT_MODES, f"modes to measure, of {', '.join(MODES)}: denoise (input x0 + σ·n), generate (one step from "
        "σ·z), sample (EDM's N-step sampler from σ_max·z, the multi-step reference); both = denoise,generate; all",
        parse=parse_modes, metavar="MODES")
    n_images: int = setting(512, "images per (checkpoint, σ)")
    batch_size: int = setting(128, "images per forward pass (the numbers do not depend on it)")
    seed: int = setting(0, "seeds the noise n and z, per image (the data source has its own seed)", cli=False)
    bands: Any = setting(None, "band edges in cycles/pixel for the band metrics (none: low/mid/high, "
                         + ",".join(f"{e:g}" for e in DEFAULT_BAND_EDGES) + ")", parse=parse_edges, metavar="EDGES")
    window: Any = setting(WINDOW, "window of the radial spectra, each image's mean removed first: hann (freqlab's "
                          "convention), none (the periodic spectrum, for which the Wiener reference is exact), kaiser, "
                          "hamming, blackman", parse=parse_window, metavar="WINDOW")
    autocast: bool = setting(False, "bf16 autocast for the models on accelerators (ignored on the CPU); spectra stay "
                             "float32/float64")
    split: str = setting("test", "data split of a named source", choices=("train", "test"))
    data_options: Mapping[str, Any] | None = setting(None, "options of a named data source (e.g. its path: "
                                                     "--data-path)", cli=False)
    wasserstein_images: int = setting(1024, "the Wasserstein distance of per-image log band power uses the first N "
                                      "images (their values are kept: memory); every other statistic uses all")
    reference_split: str | None = setting(
        "train", "the split the references are fitted on (the stationary Wiener filter's spectrum and mean, the "
        "linear MMSE denoiser): train, the images a model learned from, so that the references and the models are "
        "compared on equal terms on the measured split; none: held-out images of the measured source, right "
        "after the n_images measured (also what a source given as an object gets)",
        parse=lambda text: None if text.strip().lower() == "none" else text.strip(), metavar="SPLIT")
    linear_reference: int | None = setting(
        None, "images to fit the full-covariance linear MMSE denoiser on (the best linear denoiser, measured as "
        "linear_mse); none: 8·C·H·W when an image has at most 4096 values and the source has them; 0: off (the "
        "Wiener filter's spectrum then comes from max(n_images, 1024) images)", parse=parse_optional_int,
        metavar="N")
    distribute: str = setting("auto", "under torchrun: split each checkpoint's images across processes, or give "
                              "each process whole checkpoints; auto splits checkpoints when they divide evenly",
                              choices=DISTRIBUTE)
    any_resolution: bool = setting(False, "measure checkpoints on data at a resolution other than the one they "
                                   "declare (off: a mismatch is an error)")
    sample_steps: int = setting(18, "steps of the sample mode's sampler (Heun: 2N − 1 model calls per image)")
    sampler: str = setting("heun", "the sample mode's sampler", choices=SAMPLERS)
    sample_images: int | None = setting(None, "the sample mode measures the first N images only (none: all "
                                        "n_images)", parse=parse_optional_int, metavar="N")

    def __post_init__(self):
        modes = [self.modes] if isinstance(self.modes, str) else list(self.modes)
        self.modes = tuple(dict.fromkeys(str(m) for m in modes))
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        require(self, at_least={"n_images": MIN_IMAGES, "batch_size": 1, "wasserstein_images": MIN_IMAGES,
                                "sample_steps": 1},
                choices={"reference_split": (None, "train", "test")},
                why={"n_images": "standard errors need a sample"})
        if self.sample_images is not None and int(self.sample_images) < MIN_IMAGES:
            raise ValueError(f"sample_images must be at least {MIN_IMAGES} or None (all), got {self.sample_images}")

    @property
    def keep(self) -> int:
        """Images whose band powers are kept for the Wasserstein distance."""
        return min(self.n_images, int(self.wasserstein_images))

    @property
    def n_sample(self) -> int:
        """Images the ``sample`` mode measures (the first ones)."""
        return self.n_images if self.sample_images is None else min(self.n_images, int(self.sample_images))
