"""The committed criterion of the demo's verdict (``criterion.json`` beside this module): the comparison's settings,
the reference data, and the rules that turn comparisons over seeds into "reaches the data" and "moved toward the
data". The report reads it and prints its hash; changing it is a new hypothesis, to be checked on fresh seeds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from freqlab.compare.config import CompareConfig

__all__ = ["CRITERION_PATH", "Criterion", "load_criterion"]

CRITERION_PATH = Path(__file__).with_name("criterion.json")


@dataclass(frozen=True)
class Criterion:
    compare: CompareConfig
    reference_source: str
    reference_split: str
    reference_seed: int
    z_seed: int
    bootstrap_resamples: int
    level: float
    text: dict
    sha256: str

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    def compare_config(self, seed: int, n_images: int | None = None) -> CompareConfig:
        """The criterion's comparison settings with ``seed``; ``n_images``: fewer samples a set than the criterion's
        (a smaller run, which its results file then records)."""
        config = replace(self.compare, seed=seed)
        if n_images:
            config = replace(config, n_images=n_images, kernel_images=min(config.kernel_images, n_images))
        return config

    def sets(self, generators: Mapping[str, Any], shape: tuple[int, int, int], n_images: int,
             device: Any = "cpu") -> tuple[Any, dict]:
        """What the criterion compares: its held-out reference data at ``shape`` and, for each ``{name: generator
        checkpoint}``, ``n_images`` one-step samples from the criterion's z (the same z for every generator)."""
        from freqlab.data.sources import make_source
        from freqlab.finetune.generator import GeneratedImages

        candidates = {name: GeneratedImages(name, path, n_images, shape, seed=self.z_seed, device=device)
                      for name, path in generators.items()}
        reference = make_source(self.reference_source, resolution=shape[1:], grayscale=shape[0] == 1,
                                split=self.reference_split, seed=self.reference_seed)
        return reference, candidates


def load_criterion(path: str | Path = CRITERION_PATH) -> Criterion:
    """The criterion in ``path`` (default: the committed one), with the sha256 of the file's bytes."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        spec = json.loads(raw)
        ref, moved = spec["reference"], spec["moved_toward"]
        return Criterion(
            compare=CompareConfig(**spec["compare"], split=ref["split"]), reference_source=ref["source"],
            reference_split=ref["split"], reference_seed=int(ref["seed"]), z_seed=int(spec["samples"]["z_seed"]),
            bootstrap_resamples=int(moved["bootstrap_resamples"]), level=float(moved["level"]), text=spec,
            sha256=hashlib.sha256(raw).hexdigest())
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"the criterion file {path} is not a valid criterion ({type(err).__name__}: {err})") from err
