"""What a fine-tune's weight change does to the one-step outputs, part by part: the test that says something where
a share of the squared weight change cannot (Adam moves every weight by about its learning rate per step, so a set
holding 87 % of the parameters takes about 87 % of the squared change whatever it does to the function).

From an unfrozen fine-tune (``before`` → ``after``) and a freezing policy, two hybrids are built: the pre-trained
weights with the change put back on the policy's **trainable** set only (the frozen set's change undone), and with
it on the **frozen** set only. All four networks generate from the same ``z`` (one step at σ_max), each output is
band-passed (DC excluded), and per band::

    lost_share(part) = E‖b(G_after(z)) − b(G_part(z))‖² / E‖b(G_after(z)) − b(G_before(z))‖²

the share of the fine-tune's change of the outputs in that band that is lost when only ``part``'s weight change is
kept (0: that part alone makes the whole change; 1: without the other part nothing of it is left; above 1: the
part alone moves the outputs elsewhere). ``moved`` is the denominator per band: how far the fine-tune moved them.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import xarray as xr

from freqlab import spectral
from freqlab.finetune.generator import Generator
from freqlab.inside.weight_change import frozen_set, load_model
from freqlab.runtime import results
from freqlab.runtime.outputs import holding
from freqlab.runtime.rng import per_sample_randn

__all__ = ["PARTS", "FILE_NAME", "function_change", "summarize"]

#: The hybrids: the weight change kept on this part only.
PARTS = ("trainable", "frozen")
FILE_NAME = "function_change.nc"


def _hybrid(before: torch.nn.Module, after: torch.nn.Module, keep: set[str]) -> torch.nn.Module:
    """``before``'s weights with ``after``'s on the parameters named in ``keep``."""
    model = copy.deepcopy(before)
    params_after = dict(after.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in keep:
                p.copy_(params_after[name])
    return model


def _band_images(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(n_bands, N, C, H, W)`` band-pass images of ``x`` (DC excluded)."""
    fx = torch.fft.rfft2(x.double())
    return torch.stack([torch.fft.irfft2(fx * m, s=x.shape[-2:]) for m in masks.to(fx.real.dtype)])


@holding("out")
@torch.no_grad()
def function_change(before, after, *, policy: str = "conv", n_images: int = 256, seed: int = 0,
                    batch_size: int = 64, trust_pickle: bool = False, out=None) -> xr.Dataset:
    """Per part (:data:`PARTS`) and band, the share of the fine-tune's output change lost when only that part's
    weight change is kept (module docstring); ``moved`` per band. ``before``/``after`` as
    :func:`freqlab.inside.weight_change.weight_change` takes them; on the CPU."""
    if int(n_images) < 2:
        raise ValueError(f"n_images must be at least 2, got {n_images}")
    model_before = load_model(before, trust_pickle=trust_pickle, role="before").float().eval()
    model_after = load_model(after, trust_pickle=trust_pickle, role="after").float().eval()
    report = frozen_set(model_before, policy)
    frozen = set(report.frozen_names)
    names = {n for n, _ in model_before.named_parameters()}
    nets = {"before": model_before, "after": model_after,
            "trainable": _hybrid(model_before, model_after, names - frozen),
            "frozen": _hybrid(model_before, model_after, frozen)}
    gens = {k: Generator(v).eval() for k, v in nets.items()}
    shape = tuple(gens["before"].image_shape)
    bands = spectral.resolve_bands(None)
    masks = spectral.band_masks(shape[1], shape[2], bands)
    sums = {k: torch.zeros(len(bands), dtype=torch.float64) for k in ("moved", *PARTS)}
    for i in range(0, int(n_images), batch_size):
        z = per_sample_randn(int(seed), "function-change/z", range(i, min(i + batch_size, int(n_images))), shape)
        out_b = {k: _band_images(g(z), masks) for k, g in gens.items()}
        sums["moved"] += (out_b["after"] - out_b["before"]).square().sum(dim=(1, 2, 3, 4))
        for part in PARTS:
            sums[part] += (out_b["after"] - out_b[part]).square().sum(dim=(1, 2, 3, 4))
    moved = sums["moved"].numpy()
    lost = np.stack([sums[p].numpy() / np.where(moved > 0, moved, np.nan) for p in PARTS])
    ds = xr.Dataset(
        {"lost_share": (("part", "band"), lost, {
            "long_name": "share of the fine-tune's output change in the band lost when only this part's weight "
                         "change is kept", "units": "1"}),
         "moved": (("band",), moved / int(n_images), {
             "long_name": "mean squared change of the band-pass one-step outputs from before to after",
             "units": "image units²"})},
        coords={"part": list(PARTS), "band": list(bands)})
    ds.attrs.update({"title": "What the weight change does to the one-step outputs, part by part",
                     "policy": policy, "n_images": int(n_images), "seed": int(seed),
                     "frozen_share_of_params": float(report.frozen_share),
                     **results.provenance_attrs(*(x for x in (before, after) if isinstance(x, (str,))))})
    if out is not None:
        results.save(ds, out)
    return ds


def summarize(ds: xr.Dataset) -> str:
    """Per band, the share of the output change lost with each part's weight change alone."""
    bands = [str(b) for b in ds.band.values]
    lines = [f"What the weight change does to the one-step outputs ({int(ds.attrs['n_images'])} images, policy "
             f"'{ds.attrs['policy']}': {100 * float(ds.attrs['frozen_share_of_params']):.1f}% of the parameters in "
             "its frozen set); share of the output change lost, per band "
             f"({' / '.join(bands)}), when only one part's weight change is kept:"]
    for part in ds.part.values:
        values = " / ".join(f"{float(v):.2f}" for v in ds.lost_share.sel(part=part).values)
        lines.append(f"  the {part} set's change alone: {values}")
    return "\n".join(lines)
