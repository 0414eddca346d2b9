"""Controls made from any reference set: one that a comparison must call indistinguishable (a held-out split) and
four it must call different (Gaussian noise with the data's spectrum, spectrum-matched dead leaves, one image
repeated, low-pass data). Each is built from held-out images of the reference, batch by batch, so it differs from
the reference only by what makes it a control.

==============  =============================================================================================
``heldout``     held-out images of the reference itself: the positive control (must be indistinguishable)
``gaussian``    each held-out image phase-randomised (Prichard & Theiler 1994): every Fourier mode keeps its
                amplitude in every channel and gets one random phase added to all channels, so each image keeps
                its power spectrum and channel cross-spectra and becomes Gaussian noise (its mean kept)
``deadleaves``  dead-leaves discs (:mod:`freqlab.data.sources`) through one fixed filter, per channel and mode
                ``sqrt(P_data / P_deadleaves)`` of the two mean 2-D spectra (means removed), then the data's
                mean brightness: the data's mean spectrum with another kind of structure
``repeated``    the first held-out image, repeated: perfect fidelity, no diversity
``lowpass``     held-out images with every mode above the low band's upper edge removed (an ideal low-pass):
                the low band as the data's, nothing above it
==============  =============================================================================================
"""

from __future__ import annotations

from typing import Callable

import torch

from freqlab.spectral import bandpass, resolve_bands

__all__ = ["CONTROLS", "POSITIVE", "EXPECTED_DIFFERENT_BANDS", "ControlMaker", "phase_randomise", "lowpass"]

CONTROLS = ("heldout", "gaussian", "deadleaves", "repeated", "lowpass")
#: The control a comparison must call indistinguishable; every other must be called different.
POSITIVE = "heldout"
#: Bands a reader expects each negative control to differ in (``diversity`` for a collapsed set), at least.
EXPECTED_DIFFERENT_BANDS = {"gaussian": ("high",), "deadleaves": (), "repeated": ("diversity",),
                            "lowpass": ("mid", "high")}


def phase_randomise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) with one random phase per image and mode added to all channels (DC untouched)."""
    h, w = x.shape[-2:]
    noise = torch.randn(x.shape[0], 1, h, w, generator=generator, dtype=torch.float64)
    rot = torch.fft.rfft2(noise)
    rot = rot / rot.abs().clamp_min(1e-30)
    rot[..., 0, 0] = 1.0
    return torch.fft.irfft2(torch.fft.rfft2(x.to(torch.float64)) * rot, s=(h, w)).to(x.dtype)


def lowpass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Ideal low-pass: the modes with ``|f| < cutoff`` (DC included) of images ``x`` (N, C, H, W)."""
    return bandpass(x.to(torch.float64), 0.0, cutoff, check_finite=False).to(x.dtype)


def _mean_spectrum(batches) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean 2-D power spectrum of mean-removed images (C, H, W//2+1), and the mean and std of their means (C,)."""
    power, means, n = 0.0, [], 0
    for x in batches:
        x = x.to(torch.float64)
        m = x.mean(dim=(-2, -1))
        power = power + torch.fft.rfft2(x - m[..., None, None]).abs().square().sum(dim=0)
        means.append(m)
        n += len(x)
    means = torch.cat(means)
    return power / n, means.mean(dim=0), means.std(dim=0)


class ControlMaker:
    """Builds the control ``name`` from held-out reference images, batch by batch.

    ``reference_batches`` (a callable returning an iterator of reference batches) gives the data's mean spectrum,
    which the dead-leaves control is filtered to; ``deadleaves(indices)`` gives dead-leaves images of the
    reference's shape; ``bands`` name the low band (its upper edge is the low-pass cutoff).
    """

    def __init__(self, name: str, *, reference_batches: Callable, deadleaves: Callable, bands=None, seed: int = 0):
        if name not in CONTROLS:
            raise ValueError(f"unknown control {name!r}; choose one of {', '.join(CONTROLS)}")
        self.name, self.seed = name, int(seed)
        self.cutoff = list(resolve_bands(bands).values())[0][1]
        self._first: torch.Tensor | None = None
        self._generator = torch.Generator().manual_seed(self.seed)
        if name == "deadleaves":
            data_power, self._mean, self._mean_std = _mean_spectrum(reference_batches())
            leaves_power, self._dl_mean, self._dl_mean_std = _mean_spectrum(
                deadleaves(range(i, i + 256)) for i in range(0, 1024, 256))
            self._filter = (data_power / leaves_power.clamp_min(1e-30)).sqrt()
            self._filter[..., 0, 0] = 0.0  # the mean is set apart
            self._deadleaves = deadleaves

    def __call__(self, heldout: torch.Tensor, indices: range) -> torch.Tensor:
        """The control's images for the held-out images ``heldout`` at positions ``indices`` of the set."""
        if self.name == "heldout":
            return heldout
        if self.name == "gaussian":
            return phase_randomise(heldout, self._generator)
        if self.name == "lowpass":
            return lowpass(heldout, self.cutoff)
        if self.name == "repeated":
            if self._first is None:
                self._first = heldout[:1].clone()
            return self._first.expand(len(heldout), -1, -1, -1).clone()
        # images other than the 1,024 the filter was estimated on
        leaves = self._deadleaves(range(1024 + indices.start, 1024 + indices.stop)).to(torch.float64)
        h, w = leaves.shape[-2:]
        m = leaves.mean(dim=(-2, -1))
        shaped = torch.fft.irfft2(torch.fft.rfft2(leaves - m[..., None, None]) * self._filter, s=(h, w))
        brightness = self._mean + (m - self._dl_mean) / self._dl_mean_std.clamp_min(1e-12) * self._mean_std
        return (shaped + brightness[..., None, None]).to(heldout.dtype)
