"""The settings of a layer-spectra study (:class:`LayerSpectraConfig`), defined once: what determines its numbers.
:func:`freqlab.inside.layer_spectra.layer_spectra` takes it whole or builds it from keywords, ``freqlab layers``
builds its options from it. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from freqlab.measure.conventions import WINDOW
from freqlab.runtime.settings import documented, parse_window, require, setting

__all__ = ["MODES", "MIN_IMAGES", "DEFAULT_N_SIGMAS", "LayerSpectraConfig"]

#: The inputs a layer study feeds, the sweep's: ``generate`` (σ·z) or ``denoise`` (x0 + σ·n); one per file.
MODES = ("generate", "denoise")
MIN_IMAGES = 2
#: Noise levels of the default grid, log-spaced over the first model's range.
DEFAULT_N_SIGMAS = 4


@documented
@dataclass
class LayerSpectraConfig:
    """Everything that determines a layer study's numbers besides the models, the data and the σ grid; each
    field's doc is also the help of its ``freqlab layers`` option. A study measures one mode (its inputs pair with
    the sweep's cells of that mode and seed)."""

    mode: str = setting("generate", "the inputs: generate (σ·z; at σ_max the D2O generator) or denoise (x0 + σ·n)",
                        choices=MODES)
    n_images: int = setting(64, "images per (checkpoint, σ)")
    batch_size: int = setting(32, "images per forward pass")
    seed: int = setting(0, "seeds the noise (as the sweep's) and the random-init control's weights", cli=False)
    window: Any = setting(WINDOW, "window of the spectra, each channel-image's mean removed first: hann (freqlab's "
                          "convention), none, kaiser, hamming, blackman", parse=parse_window, metavar="WINDOW")
    random_init: bool = setting(False, "also measure the first model's architecture with fresh weights (the "
                                "control, named random-init)")
    split: str = setting("test", "data split of a named source (denoise mode)", choices=("train", "test"))
    data_options: Mapping[str, Any] | None = setting(None, "options of a named data source (e.g. its path: "
                                                     "--data-path)", cli=False)

    def __post_init__(self):
        require(self, at_least={"n_images": MIN_IMAGES, "batch_size": 1})
