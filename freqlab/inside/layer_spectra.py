"""Where in the network each band lives: radial power spectra of the feature maps of every UNet block.

D2O-F fine-tunes a pre-trained diffusion model into a one-step generator with ~85 % of its weights frozen; this
module shows which blocks of the UNet carry which frequency bands. Forward hooks on the blocks of
:func:`freqlab.models.unet_blocks.unet_blocks` take each block's output ``(N, C, h, w)`` and, **inside the hook**, compute
its radial power spectrum with freqlab's convention (:mod:`freqlab.measure.core`: Hann window after removing each
channel-image's mean; the ``C`` channels are ``C`` images), summed over images and channels in one batched FFT, and
add it to a float64 accumulator: no activation outlives its batch, and the hooks are removed whatever happens.

Inputs are the sweep's (:mod:`freqlab.sweep.study`), so a layer measurement pairs with a sweep cell of the same seed:
``generate`` feeds ``σ·z`` with ``z`` from :data:`freqlab.measure.core.GENERATE_STREAM`, ``denoise`` feeds ``x0 + σ·n``
with ``n`` from ``"sweep/denoise"`` and the data source's images.

Per block, checkpoint and σ
---------------------------
* ``layer_power``: the mean radial power of the block's channels, **divided by the layer's total power over its
  non-DC modes** (``Σ_b counts_b·P_b``, DC bin excluded), so ``Σ counts·layer_power = 1`` over the layer's non-DC
  bins: the fraction of the layer's power per mode. A layer's grid maps one to one onto the image's low
  frequencies (a mode ``k`` of an ``h × w`` grid is at ``k/h`` cycles per layer pixel, ``k/H`` per image pixel), so
  the value per mode compares across resolutions; a white layer at half resolution sits 6 dB above a white layer
  at full resolution because its power is spread over 4× fewer modes.
* frequencies in **image** cycles/pixel: ``freq_image = freq_layer·s`` with ``s = max(h, w)/max(H, W)``; every
  layer is put on the image's bins (``freq``) by linear interpolation in log power between its own bin centres
  (exact: a coarser grid's bin centres k/h map to k/H, the image's own), NaN above its Nyquist ``0.5·s``.
  ``freq_layer`` (layer, freq) gives the same bins in the layer's own cycles/pixel.
* ``band_share``: the fraction of the layer's non-DC power in each band of
  :func:`freqlab.spectral.resolve_bands` (image cycles/pixel; bins assigned by centre as the sweep does). A band
  whose lower edge is at or above the layer's Nyquist cannot be represented: NaN; the layer's Nyquist bin, which
  sits on that edge, counts in the band below. Shares of the representable bands sum to 1.
* ``layer_total_power``: the normaliser, mean over channels of the layer's non-DC power (``Σ counts·P``).

Layout: dims ``(checkpoint, sigma, layer, freq)`` and ``(checkpoint, sigma, layer, band)``; coords ``layer_stage``,
``layer_resolution`` (grid height h), ``layer_width``, ``layer_scale`` (s), ``layer_channels``, ``layer_modes``
(non-DC modes of the grid: a white layer has ``layer_power = 1/layer_modes``) on ``layer``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch
import xarray as xr

from freqlab import spectral
from freqlab.measure import core as measure
from freqlab.inside.layer_config import DEFAULT_N_SIGMAS, LayerSpectraConfig
from freqlab.measure.sigmas import check_sigmas, model_sigmas
from freqlab.models.unet_blocks import BlockInfo, describe_blocks, feature_map, unet_blocks
from freqlab.runtime import results
from freqlab.runtime.devices import resolve_device
from freqlab.runtime.outputs import holding
from freqlab.runtime.rng import per_sample_randn
from freqlab.runtime.settings import configure
from freqlab.sweep.inputs import Entry, check_shape, make_data, resolve_models

__all__ = ["layer_spectra", "summarize", "to_json", "band_power", "RANDOM_INIT", "FILE_NAME"]

RANDOM_INIT = "random-init"
FILE_NAME = "layer_spectra.nc"
LOG_FLOOR = 1e-30
NORMALISATION = ("layer_power = mean radial power of the block's channels (each channel-image a separate image) "
                 "divided by the layer's total power over its non-DC modes, sum_b counts_b*P_b over bins b > 0: "
                 "sum of counts*layer_power over the layer's non-DC bins is 1 (fraction of the layer's power per mode)")
MAPPING = ("freq is in cycles/pixel of the image; a layer on an h x w grid has freq_image = freq_layer*s with "
           "s = max(h, w)/max(H, W), put on the image bins by linear interpolation in log power between its own bin "
           "centres (exact: they map onto image bin centres), NaN above its Nyquist 0.5*s")
BAND_SHARE = ("fraction of the layer's non-DC power in each band (image cycles/pixel, bins by centre); NaN for a "
              "band whose lower edge is at or above the layer's Nyquist (the Nyquist bin counts in the band below)")


# --------------------------------------------------------------------------------------------------------------
# the hooks
# --------------------------------------------------------------------------------------------------------------
class _LayerHook:
    """Adds the summed radial power of a block's output to ``acc[state.sigma]`` (float64, on the device)."""

    def __init__(self, info: BlockInfo, window, device, n_sigmas: int, state: dict):
        self.an = measure.Analysis((info.channels, info.height, info.width), None, window, device)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.acc = torch.zeros(n_sigmas, self.an.freq.numel(), dtype=dtype, device=device)
        self.count = np.zeros(n_sigmas)
        self.state, self.info = state, info

    def __call__(self, _module, _inputs, output) -> None:
        fm = feature_map(output)
        if fm is None or tuple(fm.shape[1:]) != (self.info.channels, self.info.height, self.info.width):
            raise ValueError(f"block {self.info.name} returned {None if fm is None else tuple(fm.shape)}, not the "
                             f"(N, {self.info.channels}, {self.info.height}, {self.info.width}) feature map it "
                             "returned on the probe")
        power = spectral.abs2(self.an.fft(fm.detach().float())).sum((0, 1)).flatten()  # (h·Wr,)
        si = self.state["sigma"]
        self.acc[si] += (power @ self.an.bin_matrix).to(self.acc.dtype)
        self.count[si] += fm.shape[0] * fm.shape[1]

    def mean_power(self) -> np.ndarray:
        """``(n_sigmas, n_bins)``: the mean radial power per channel-image."""
        return self.acc.double().cpu().numpy() / np.maximum(self.count, 1)[:, None]


def _forward(entry: Entry, model, x: torch.Tensor, sigma: float) -> None:
    try:
        model(x, torch.full((x.shape[0],), float(sigma), device=x.device, dtype=torch.float32))
    except ValueError as err:  # e.g. a σ outside a diffusers schedule: say which checkpoint and σ
        raise ValueError(f"checkpoint {entry.name!r} at σ={sigma:g}: {err}") from err


def _measure_checkpoint(entry: Entry, model, infos: list[BlockInfo], inputs, n_batches: int, sigmas, window, dev,
                        bar) -> list:
    """One pass over the images; returns the hooks (their accumulators) in block order."""
    step = 1.0 / n_batches
    state = {"sigma": 0}
    hooks = [_LayerHook(info, window, dev, len(sigmas), state) for info in infos]
    blocks = unet_blocks(model)
    handles = []
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        handles = [blocks[info.name].register_forward_hook(hook) for info, hook in zip(infos, hooks)]
        with torch.inference_mode():
            for base, scale in inputs():  # batch → σ, as the sweep: each batch's inputs are drawn once
                for si, sigma in enumerate(sigmas):
                    state["sigma"] = si
                    _forward(entry, model, base + sigma * scale if scale is not None else sigma * base, sigma)
                    bar.update(step)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return hooks


# --------------------------------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------------------------------
@holding("out")
def layer_spectra(models: Any, data: Any = "natural", sigmas=None, *, config: LayerSpectraConfig | None = None,
                  device="auto", out=None, progress: bool = True, trust_pickle: bool = False,
                  **settings) -> xr.Dataset:
    """Radial power spectra of the feature maps of every UNet block, per checkpoint and noise level.

    Parameters
    ----------
    models : run directory, checkpoint path(s), Denoiser(s) or ``{name: path or Denoiser}``, as
        :func:`freqlab.sweep.study.sweep` takes them. Every checkpoint must have the same blocks.
    data : DataSource or a source name (denoise mode only; a name gets the model's resolution and channels).
    sigmas : noise levels, an int ``n`` or None: ``n`` (default :data:`DEFAULT_N_SIGMAS`) log-spaced levels from the
        first model's ``sigma_min`` to its ``sigma_max``, ``sigma_max`` included.
    config : :class:`freqlab.inside.layer_config.LayerSpectraConfig` (mode, images, seed, window, the random-init
        control; each field documented there); ``**settings`` set single fields of it.
    device, out, progress, trust_pickle : as :func:`freqlab.sweep.study.sweep`; ``out`` is written atomically at
        the end (:func:`freqlab.runtime.results.save`).

    Returns
    -------
    xarray.Dataset: ``layer_power`` (checkpoint, sigma, layer, freq), ``band_share`` (checkpoint, sigma, layer,
    band), ``layer_total_power`` (checkpoint, sigma, layer); see the module docstring.
    """
    cfg = configure(LayerSpectraConfig, config, settings, what="layer spectra")
    mode, n_images, seed, window = cfg.mode, cfg.n_images, cfg.seed, cfg.window
    if sigmas is not None and not isinstance(sigmas, (int, np.integer)):
        sigmas = check_sigmas(sigmas)
    dev = resolve_device(device)
    entries = resolve_models(models, device=dev, trust_pickle=trust_pickle)
    first = entries[0].get()
    if cfg.random_init:
        _add_random_init(entries, int(seed))
    sigmas = model_sigmas(first, sigmas, DEFAULT_N_SIGMAS)
    source, shape = _source_and_shape(first, data, mode, n_images, cfg.split, cfg.data_options)
    batches = [range(i, min(i + cfg.batch_size, n_images)) for i in range(0, n_images, cfg.batch_size)]

    def inputs():  # (base, scale): the input is base + σ·scale (denoise) or σ·base (generate)
        for idx in batches:
            if mode == "generate":
                yield per_sample_randn(int(seed), measure.GENERATE_STREAM, idx, shape, device=dev), None
            else:
                yield (source.images(list(idx)).to(dev),
                       per_sample_randn(int(seed), "sweep/denoise", idx, shape, device=dev))

    bar = _progress(len(entries) * len(sigmas), progress)
    try:
        infos, skipped, power = _measure_all(entries, {entries[0].name: first}, shape, sigmas, inputs, len(batches),
                                             window, dev, bar)
    finally:
        bar.close()
    ds = _assemble(entries, infos, power, np.asarray(sigmas, dtype=float), shape)
    ds.attrs.update(_attrs(mode, n_images, seed, window, source, skipped, shape, entries))
    if out is not None:
        results.save(ds, out)
    return ds


def _add_random_init(entries: list[Entry], seed: int) -> None:
    """The control: the first model's architecture with fresh weights, as a checkpoint named RANDOM_INIT."""
    from freqlab.finetune.generator import random_init as fresh_weights

    if RANDOM_INIT in {e.name for e in entries}:
        raise ValueError(f"a checkpoint is already named {RANDOM_INIT!r}; rename it or drop random_init")
    entries.append(Entry(RANDOM_INIT, lambda: fresh_weights(entries[0].get(), seed)))


def _source_and_shape(first, data, mode: str, n_images: int, split: str, data_options):
    """The data source (denoise mode, or a model that declares no shape) and the image shape ``(C, H, W)``."""
    model_shape = getattr(first, "image_shape", None)
    source = None
    if mode == "denoise" or model_shape is None:
        source = make_data(data, tuple(model_shape) if model_shape is not None else None, split, data_options)
        size = getattr(source, "size", None)
        if size is not None and n_images > size:
            raise ValueError(f"data source {source.name!r} has {size} images, fewer than n_images={n_images}")
    return source, tuple(int(s) for s in (source.shape if source is not None else model_shape))


def _measure_all(entries: list[Entry], loaded: dict, shape, sigmas, inputs, n_batches: int, window, dev, bar):
    """Every checkpoint in turn (one model in memory at a time): ``(blocks, skipped, power per checkpoint)``."""
    infos, skipped, power = None, [], []
    for entry in entries:
        bar.set_postfix_str(entry.name, refresh=False)
        model = loaded.pop(entry.name) if entry.name in loaded else entry.get()
        loaded.clear()
        check_shape(entry.name, model, shape, False)
        model.to(dev)
        found, left_out = describe_blocks(model, shape, float(sigmas[-1]), dev)
        if infos is None:
            infos, skipped = found, left_out
        elif found != infos:
            raise ValueError(f"checkpoint {entry.name!r} has other blocks than {entries[0].name!r}; measure "
                             "different architectures separately")
        hooks = _measure_checkpoint(entry, model, infos, inputs, n_batches, sigmas, window, dev, bar)
        power.append([h.mean_power() for h in hooks])
        del model, hooks
    return infos, skipped, power


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, desc="layer spectra", unit="σ", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} (checkpoint, σ) "
                           "[{elapsed}<{remaining}{postfix}]")


# --------------------------------------------------------------------------------------------------------------
# the Dataset
# --------------------------------------------------------------------------------------------------------------
def _on_image_bins(freq_img: np.ndarray, freq_layer_img: np.ndarray, values: np.ndarray, nyquist: float):
    """Values at a layer's bin centres (image units) onto the image's bins, linear in log power, NaN above
    ``nyquist``."""
    logs = np.log(np.maximum(values, LOG_FLOOR))
    out = np.exp(np.interp(freq_img, freq_layer_img, logs))
    out[freq_img > nyquist * (1 + 1e-9)] = np.nan
    return out


def _band_share(freq_layer_img: np.ndarray, counts: np.ndarray, norm: np.ndarray, nyquist: float, bands) -> np.ndarray:
    """Fraction of a layer's non-DC power per band (bins by centre in image units; see the module docstring)."""
    names = list(bands)
    which = np.full(freq_layer_img.shape, -1)
    for b, (lo, hi) in enumerate(bands.values()):
        inside = (freq_layer_img >= lo) & ((freq_layer_img <= hi) if hi >= 0.5 else (freq_layer_img < hi))
        which[inside] = b
    which[0] = -1  # DC
    representable = np.array([lo < nyquist * (1 - 1e-9) for lo, _ in bands.values()])
    for i in range(1, len(which)):  # a bin in a band the grid cannot represent (its Nyquist bin): the band below
        while which[i] > 0 and not representable[which[i]]:
            which[i] -= 1
    share = np.array([float((counts * norm)[which == b].sum()) for b in range(len(names))])
    share[~representable] = np.nan
    return share


def _assemble(entries, infos: list[BlockInfo], power: list, sigmas: np.ndarray, shape) -> xr.Dataset:
    h_img, w_img = shape[1:]
    img_bins = spectral.radial_binning(h_img, w_img, dtype=torch.float64)
    freq_img = img_bins.freq.numpy()
    bands = spectral.resolve_bands(None)
    scales = np.array([max(i.height, i.width) / max(h_img, w_img) for i in infos])
    layer_power, share, total = _normalised(infos, power, len(sigmas), freq_img, scales, bands)
    dims = ("checkpoint", "sigma", "layer")
    data_vars = {
        "layer_power": (dims + ("freq",), layer_power, _attrs_of(
            "radial power of the block's output per mode as a fraction of its non-DC power, on the image's bins",
            "1/mode")),
        "band_share": (dims + ("band",), share, _attrs_of("fraction of the block's non-DC power in the band (NaN: the "
                                                          "band is above the block's Nyquist)")),
        "layer_total_power": (dims, total, _attrs_of("mean over channels of the block's non-DC power, "
                                                     "sum_b counts_b*P_b (the normaliser of layer_power)",
                                                     "feature units²")),
        "band_power": (dims + ("band",), share * total[..., None], _attrs_of(
            "the block's absolute power in the band, band_share * layer_total_power: comparable across checkpoints "
            "of one architecture (a share that falls while the total grows can hide a band that grew)",
            "feature units²")),
    }
    return xr.Dataset(data_vars, coords=_coords(entries, infos, sigmas, img_bins, scales, bands))


def _attrs_of(long_name, unit="1"):
    return {"long_name": long_name, "units": unit, "units_udunits": "1"}


def _normalised(infos: list[BlockInfo], power: list, n_s: int, freq_img: np.ndarray, scales: np.ndarray, bands):
    """Each block's spectrum as a fraction of its non-DC power, on the image's bins, its band shares and totals."""
    n_c, n_l, n_f, n_b = len(power), len(infos), freq_img.size, len(bands)
    layer_power = np.full((n_c, n_s, n_l, n_f), np.nan)
    share = np.full((n_c, n_s, n_l, n_b), np.nan)
    total = np.full((n_c, n_s, n_l), np.nan)
    for li, info in enumerate(infos):
        bins = spectral.radial_binning(info.height, info.width, dtype=torch.float64)
        f_layer, counts = bins.freq.numpy() * scales[li], bins.counts.numpy().astype(float)
        nyquist = 0.5 * scales[li]
        for ci in range(n_c):
            for si in range(n_s):
                p = power[ci][li][si]
                tot = float((counts[1:] * p[1:]).sum())
                norm = p / tot if tot > 0 else np.full_like(p, np.nan)
                total[ci, si, li] = tot
                layer_power[ci, si, li] = _on_image_bins(freq_img, f_layer, norm, nyquist)
                share[ci, si, li] = _band_share(f_layer, counts, norm, nyquist, bands)
    return layer_power, share, total


def _coords(entries, infos: list[BlockInfo], sigmas: np.ndarray, img_bins, scales: np.ndarray, bands) -> dict:
    freq_img = img_bins.freq.numpy()
    freq_layer = freq_img[None, :] / scales[:, None]
    freq_layer[freq_img[None, :] > 0.5 * scales[:, None] * (1 + 1e-9)] = np.nan
    attrs = _attrs_of
    return {
        "checkpoint": [e.name for e in entries],
        "step": ("checkpoint", np.array([e.step if e.step >= 0 else math.nan for e in entries], dtype=float),
                 attrs("training step (NaN: unknown)")),
        "images_seen": ("checkpoint", np.array([e.images_seen if e.images_seen >= 0 else math.nan for e in entries],
                                               dtype=float), attrs("images seen in training (NaN: unknown)")),
        "checkpoint_path": ("checkpoint", np.array([e.path for e in entries], dtype=object),
                            {"long_name": "absolute path of the checkpoint ('' in memory)"}),
        "sigma": ("sigma", sigmas, attrs("noise level σ", "image units")),
        "layer": [i.name for i in infos],
        "layer_stage": ("layer", np.array([i.stage for i in infos], dtype=object),
                        {"long_name": "stage of the block: in, down, mid, up, out (diffusers) or enc, dec (EDM)"}),
        "layer_resolution": ("layer", np.array([i.height for i in infos]), attrs("height h of the block's grid",
                                                                                  "pixels")),
        "layer_width": ("layer", np.array([i.width for i in infos]), attrs("width w of the block's grid", "pixels")),
        "layer_scale": ("layer", scales, attrs("s = max(h, w)/max(H, W): layer cycles/pixel to image cycles/pixel")),
        "layer_channels": ("layer", np.array([i.channels for i in infos]), attrs("channels of the block's output")),
        "layer_modes": ("layer", np.array([int(spectral.radial_binning(i.height, i.width).counts[1:].sum())
                                           for i in infos]),
                        attrs("non-DC modes of the block's grid up to its Nyquist (a white layer has layer_power "
                              "1/layer_modes)")),
        "freq": ("freq", freq_img, attrs("radial frequency, cycles/pixel of the image", measure.CPP)),
        "freq_count": ("freq", img_bins.counts.numpy(), attrs("full-plane modes of the image in the bin")),
        "freq_layer": (("layer", "freq"), freq_layer, attrs("the same frequency in cycles/pixel of the layer's grid "
                                                            "(NaN above its Nyquist)", measure.CPP)),
        "band": list(bands),
        "band_lo": ("band", [lo for lo, _ in bands.values()], attrs("lower band edge (image)", measure.CPP)),
        "band_hi": ("band", [hi for _, hi in bands.values()], attrs("upper band edge (image)", measure.CPP)),
    }


def _attrs(mode, n_images, seed, window, source, skipped, shape, entries) -> dict:
    out = {
        "title": "freqlab per-layer feature spectra",
        "measured": "radial power spectrum of each UNet block's output feature map (N, C, h, w), each channel-image "
                    "a separate image, averaged over channels and images, per checkpoint and noise level",
        "mode": mode, "n_images": int(n_images), "seed": int(seed),
        "window": "none" if window is None else str(window if isinstance(window, str) else "custom"),
        "spectrum_window": measure.window_text(window),
        "spectrum_normalisation": measure.NORMALISATION,
        "layer_normalisation": NORMALISATION, "frequency_mapping": MAPPING, "band_share_definition": BAND_SHARE,
        "image_shape": ",".join(str(s) for s in shape),
        "noise_convention": "generate input sigma*z, z from stream 'sweep/generate'; denoise input x0 + sigma*n, n "
                            "from 'sweep/denoise'; per image from (seed, stream, index): the sweep's inputs",
        "skipped_blocks": ",".join(skipped) or "none",
    }
    if source is not None and mode == "denoise":
        out["data_source"] = str(source.name)
    out.update(results.provenance_attrs(*[e.path for e in entries if e.path]))
    return out


def band_power(ds: xr.Dataset) -> xr.DataArray:
    """Absolute band power per block (``band_power``; for files written before it, ``band_share`` times
    ``layer_total_power``)."""
    return ds.band_power if "band_power" in ds else ds.band_share * ds.layer_total_power


def summarize(ds: xr.Dataset, n_top: int = 3) -> str:
    """Plain text: per checkpoint, at σ_max, the ``n_top`` blocks with the largest high-band share, with their
    absolute high-band power beside it (a share is not a power)."""
    band = "high" if "high" in ds.band.values else str(ds.band.values[-1])
    lo, hi = float(ds.band_lo.sel(band=band)), float(ds.band_hi.sel(band=band))
    s_max = float(ds.sigma.values[-1])
    lines = [f"Per-layer feature spectra: {ds.sizes['layer']} blocks, {ds.attrs.get('mode', '?')} mode, "
             f"{ds.attrs.get('n_images', '?')} images; at σ_max = {s_max:.3g}, the blocks with the largest share of "
             f"their power in the {band} band ({lo:g}-{hi:g} cycles/pixel of the image):"]
    power = band_power(ds)
    for ck in ds.checkpoint.values:
        row = ds.band_share.sel(checkpoint=ck, band=band).isel(sigma=-1)
        values = row.values
        absolute = power.sel(checkpoint=ck, band=band).isel(sigma=-1).values
        order = [i for i in np.argsort(-np.nan_to_num(values, nan=-1.0)) if np.isfinite(values[i])][:n_top]
        top = ", ".join(f"{ds.layer.values[i]} ({int(ds.layer_resolution.values[i])}x{int(ds.layer_width.values[i])})"
                        f" share {values[i]:.3f}, power {absolute[i]:.3g}" for i in order)
        lines.append(f"  {ck}: {top or 'no block resolves this band'}")
    if ds.sizes["checkpoint"] > 1:  # the output block in absolute terms, model by model
        last = str(ds.layer.values[-1])
        cells = power.sel(band=band, layer=last).isel(sigma=-1)
        lines.append(f"  {last}'s absolute {band}-band power: " + ", ".join(
            f"{ck} {float(v):.3g}" for ck, v in zip(ds.checkpoint.values, cells.values)))
    return "\n".join(lines)


def to_json(ds: xr.Dataset) -> dict:
    """Per checkpoint and block, at σ_max: the share and the absolute power of each band (``--json``)."""
    power = band_power(ds).isel(sigma=-1)
    share = ds.band_share.isel(sigma=-1)
    return {"sigma": float(ds.sigma.values[-1]), "mode": ds.attrs.get("mode"), "checkpoints": {
        str(ck): {str(layer): {str(b): {"share": float(share.sel(checkpoint=ck, layer=layer, band=b)),
                                        "power": float(power.sel(checkpoint=ck, layer=layer, band=b))}
                               for b in ds.band.values} for layer in ds.layer.values}
        for ck in ds.checkpoint.values}}
