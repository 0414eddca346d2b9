"""The sweep's xarray layer: the labelled Dataset of a sweep (one part per checkpoint, the data and reference
variables shared), resuming from a file, and the plain-words summary."""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from freqlab import spectral
from freqlab.measure import core as measure
from freqlab.measure.conventions import COHERENCE_THRESHOLD, MATCH_DB
from freqlab.measure.core import Analysis, ImageStats
from freqlab.measure.references import snr_crossover, wiener_reference, window_kernel
from freqlab.runtime import distributed
from freqlab.runtime.outputs import note
from freqlab.sweep import sample_mode
from freqlab.sweep.inputs import Entry

_var = measure.variable


def _base_coords(an: Analysis, sigmas) -> dict:
    return {"sigma": ("sigma", np.asarray(sigmas, dtype=np.float64),
                      {"long_name": "noise level σ of x_σ = x0 + σ·n ([-1, 1] images)", "units": "1"}),
            **measure.coords(an)}


def data_dataset(data: ImageStats, an: Analysis, sigmas, linear: list | None, spectrum=None) -> xr.Dataset:
    """Data-only variables, the stationary Wiener reference (from ``spectrum``, a
    :class:`freqlab.measure.references.PeriodicSpectrum` of the images the references are fitted on; the measured
    images' own when None) and, when fitted, the linear MMSE reference."""
    # The stationary Wiener filter acts on the periodic spectrum of the images (as WienerDenoiser does), so its
    # reference comes from the unwindowed per-mode power: exact MSE by Parseval, the per-image brightness (DC)
    # included. With a window, its curves are then put in the measurements' convention (mean removed, windowed),
    # so they are drawn beside and divided by like for like.
    c, h, wr = data.mode_power.shape
    w = an.shape[2]
    power, pixel_sum, count = (data.mode_power, data.pixel_sum, data.count) if spectrum is None else (
        spectrum.power, spectrum.pixel_sum, spectrum.count)
    mode_power = power / count / (h * w)
    # the mean image is the constant μ per channel (as WienerDenoiser's): its spectrum is the DC mode alone.
    # (The sample mean of each mode would add its sampling noise, ~P/N, to every mode.)
    mu = pixel_sum / (count * h * w)
    mode_mean = torch.zeros_like(mode_power)
    mode_mean[:, 0, 0] = mu.square() * (h * w)
    kernel = None if an.window is None else window_kernel(an.window)
    ref = wiener_reference(mode_power, mode_mean, sigmas, an.bin_matrix64, an.weights, kernel)
    data_power = data.power.mean
    nondc = an.freq > 0
    wiener_cut = spectral.coherence_cutoff(an.freq[nondc], ref["coherence"][..., nondc], COHERENCE_THRESHOLD)
    sdims = ("sigma", "channel", "freq")
    variables = measure.to_variables(measure.data_variables(data))
    variables.update({
        "snr_crossover": _var("snr_crossover", ("sigma", "channel"), snr_crossover(an.freq, data_power, sigmas)),
        "wiener_output_power": _var("wiener_output_power", sdims, ref["output"]),
        "wiener_error_power": _var("wiener_error_power", sdims, ref["error"]),
        "wiener_transfer": _var("wiener_transfer", sdims, ref["transfer"]),
        "wiener_coherence": _var("wiener_coherence", sdims, ref["coherence"]),
        "wiener_coherence_cutoff": _var("wiener_coherence_cutoff", ("sigma", "channel"), wiener_cut.freq),
        "wiener_coherence_cutoff_bound": _var("wiener_coherence_cutoff_bound", ("sigma", "channel"), wiener_cut.bound),
        "wiener_mse": _var("wiener_mse", ("sigma", "channel"), ref["mse"]),
    })
    if linear is not None:
        variables["linear_mse"] = _var("linear_mse", ("sigma", "channel"), torch.stack([a.mean for a in linear]))
    return xr.Dataset(variables, coords=_base_coords(an, sigmas))


def checkpoint_dataset(entry: Entry, outs: dict, modes, an: Analysis, sigmas, data: ImageStats,
                       shared: xr.Dataset, *, sample_sigmas=None, sampler: str = "heun") -> xr.Dataset:
    """Per-checkpoint variables, with a ``checkpoint`` dim of length 1.

    Every (σ, one-step mode) cell is :func:`freqlab.measure.core.compare` of its outputs with the data; variables
    that only paired outputs have (denoise mode) have no ``mode`` dim. The sample mode, measured at σ_max only, has
    variables of its own, ``sample_<name>`` without ``sigma`` and ``mode`` dims, and ``outs["trajectory"]`` adds the
    sampler's band-power trajectory (:mod:`freqlab.sweep.sample_mode`).
    """
    one_step = [m for m in modes if m != "sample"]
    ns, nm = len(sigmas), len(one_step)
    trajectory = outs.pop("trajectory", None)
    sampled = outs.pop("sample", None)
    cells = {key: measure.compare(st, data, an) for key, st in outs.items()}
    variables = {}
    for name, (dims, value) in (next(iter(cells.values())).items() if cells else ()):
        if name in measure.PAIRED:
            continue
        full = torch.empty((ns, nm, *value.shape), dtype=value.dtype)
        for (s, m), cell in cells.items():
            full[s, one_step.index(m)] = cell[name][1]
        variables[name] = _var(name, ("checkpoint", "sigma", "mode") + dims, full[None])
    if sampled is not None:
        variables.update(sample_mode.sample_variables(measure.compare(sampled, data, an), float(sigmas[-1])))
    if "denoise" in modes:
        den = [cells[(s, "denoise")] for s in range(ns)]
        for name in measure.PAIRED:
            variables[name] = _var(name, ("checkpoint", "sigma") + den[0][name][0],
                                   torch.stack([d[name][1] for d in den])[None])
        band_err = spectral.band_power(an.freq, torch.stack([d["error_power"][1] for d in den]), an.counts, an.bands)
        wiener_err = torch.as_tensor(shared.wiener_error_power.values)
        band_wiener = spectral.band_power(an.freq, wiener_err, an.counts, an.bands)
        variables["error_wiener_ratio"] = _var("error_wiener_ratio", ("checkpoint", "sigma", "channel", "band"),
                                               (band_err / band_wiener)[None])
    coords = _base_coords(an, sigmas)
    if trajectory is not None:
        variables.update(sample_mode.trajectory_variables(trajectory, data.power.mean, an))
        coords.update(sample_mode.trajectory_coords(sample_sigmas, sampler))
    coords.update({
        "checkpoint": ("checkpoint", np.array([entry.name], dtype=object), {"long_name": "checkpoint name"}),
        "step": ("checkpoint", np.array([entry.step if entry.step >= 0 else math.nan], dtype=np.float64),
                 {"long_name": "training step (NaN: unknown)", "units": "1"}),
        "images_seen": ("checkpoint", np.array([entry.images_seen if entry.images_seen >= 0 else math.nan],
                                                dtype=np.float64),
                        {"long_name": "training images seen (NaN: unknown)", "units": "1"}),
        "checkpoint_path": ("checkpoint", np.array([entry.path], dtype=object),
                            {"long_name": "absolute checkpoint path ('' for an in-memory model)"}),
        "checkpoint_fingerprint": ("checkpoint", np.array([entry.fingerprint], dtype=object),
                                   {"long_name": "content fingerprint of the weights measured (freqlab.checkpoints.identity): "
                                                 "a resumed sweep measures a checkpoint again when it differs"}),
    })
    if one_step:
        coords["mode"] = ("mode", np.array(one_step, dtype=object),
                          {"long_name": "one-step mode: denoise (input x0 + σ·n) or generate (one step from σ·z)"})
    return xr.Dataset(variables, coords=coords)


def assemble(shared: xr.Dataset | None, parts: list[xr.Dataset], attrs: dict) -> xr.Dataset:
    pieces = []
    if parts:
        pieces.append(parts[0] if len(parts) == 1 else xr.concat(parts, dim="checkpoint", data_vars="minimal",
                                                                 coords="minimal", compat="override",
                                                                 join="override"))
    if shared is not None:
        pieces.append(shared)
    ds = xr.merge(pieces, compat="override", join="override") if pieces else xr.Dataset()
    ds.attrs = dict(attrs)
    return ds


def split_parts(ds: xr.Dataset) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """A results Dataset into its data-only part and one Dataset per checkpoint (without the index a read file has
    on ``step``: the parts are joined with new ones that have none)."""
    ds = ds.drop_indexes([n for n in ds.xindexes if n not in ds.dims])
    per_ckpt = [v for v in ds.data_vars if "checkpoint" in ds[v].dims]
    shared = ds.drop_vars(per_ckpt + [c for c in ds.coords if "checkpoint" in ds[c].dims or c == "mode"])
    ckpt = ds[per_ckpt]
    parts = [ckpt.isel(checkpoint=[i]) for i in range(ckpt.sizes.get("checkpoint", 0))]
    return shared, parts


def keep_unchanged(parts: list[xr.Dataset], entries: list[Entry], out) -> list[xr.Dataset]:
    """The finished checkpoints of a resumed file that are still what is asked for: a part whose checkpoint has
    the name of a requested one but other content (another run, retrained weights) is dropped, with a note, and
    measured again. Parts of checkpoints not requested now are kept as they are."""
    by_name = {e.name: e for e in entries}
    kept, changed = [], []
    for part in parts:
        name = str(part.checkpoint.values[0])
        entry = by_name.get(name)
        stored = str(part.checkpoint_fingerprint.values[0]) if "checkpoint_fingerprint" in part.coords else None
        if entry is not None and stored != entry.fingerprint:
            changed.append(name if stored is not None else f"{name} (no fingerprint: an older file)")
        else:
            kept.append(part)
    if changed and distributed.is_main():
        note(f"{len(changed)} checkpoint(s) in {out} have the names of requested ones but other content "
             f"({', '.join(changed)}); measuring them again")
    return kept


def order_checkpoints(ds: xr.Dataset, entries: list[Entry]) -> xr.Dataset:
    """Checkpoints in the requested order; ones from the file that were not requested keep theirs, after."""
    if "checkpoint" not in ds.dims:
        return ds
    have = [str(c) for c in ds.checkpoint.values]
    wanted = [e.name for e in entries if e.name in have]
    order = wanted + [c for c in have if c not in wanted]
    return ds if order == have else ds.isel(checkpoint=[have.index(c) for c in order])


def swept_modes(ds: xr.Dataset) -> list[str]:
    """The modes a sweep Dataset holds: its one-step modes (the ``mode`` coordinate), then ``sample`` when it has the
    sample mode's variables."""
    one_step = [str(m) for m in ds.mode.values] if "mode" in ds.coords else []
    return one_step + (["sample"] if "sample_relative_power_db" in ds else [])


def summarize(ds: xr.Dataset, *, lsd_match_db: float = MATCH_DB) -> str:
    """A one-paragraph text summary of a sweep: f_c at σ_max for the first and last checkpoint, bands matched,
    what the N-step sampler reaches (sample mode), MSE against Wiener's."""
    if "checkpoint" not in ds.dims or ds.sizes["checkpoint"] == 0 or (
            "cutoff_freq" not in ds and "sample_trajectory_lsd" not in ds):
        return "The sweep holds no results."
    names = [str(c) for c in ds.checkpoint.values]
    if "cutoff_freq" not in ds:  # the sample mode alone
        return (f"Swept {len(names)} checkpoint(s) with the sample mode only. For {names[-1]}: "
                + sample_sentence(ds, len(names) - 1, lsd_match_db))
    steps = [float(s) for s in ds.step.values]
    sig = ds.sigma.values
    s_max = float(sig[-1])
    mode = next(m for m in ("generate", "denoise") if m in ds.mode.values)

    def label(i: int) -> str:
        return f"{names[i]} (step {int(steps[i])})" if math.isfinite(steps[i]) and steps[i] >= 0 else names[i]

    def fc_text(i: int) -> str:
        row = ds.isel(checkpoint=i, sigma=-1).sel(mode=mode)
        return measure.cutoff_text(*measure.channel_cutoff(row.cutoff_freq, row.cutoff_freq_bound))

    first, last = 0, len(names) - 1
    parts = [
        f"Swept {len(names)} checkpoint(s) x {len(sig)} noise levels (σ {float(sig[0]):.3g} to {s_max:.3g}) on "
        f"{int(ds.attrs.get('n_images', 0))} images of '{ds.attrs.get('data_source', '?')}' "
        f"(modes: {', '.join(swept_modes(ds))})."
    ]
    f_star = float(ds.snr_crossover.isel(sigma=-1).mean("channel"))
    text = f"{fc_text(first)} for {label(first)}"
    if last != first:
        text += f" and {fc_text(last)} for {label(last)}"
    star = "below the lowest resolved frequency" if math.isnan(f_star) else f"{f_star:.3f} cycles/px"
    parts.append(f"At σ_max = {s_max:.3g} ({mode} mode) the cutoff f_c (output power off the data's by more than "
                 f"3 dB) is {text}; the SNR crossover f* is {star}.")
    lsd = ds.lsd.isel(checkpoint=last, sigma=-1).sel(mode=mode).mean("channel")
    matched = matched_bands(ds, last, mode, lsd_match_db)
    unmatched = [f"{b} ({v:.1f} dB)" if np.isfinite(v) else f"{b} (undefined)" for b, v in
                 zip(ds.band.values, lsd.values) if not v <= lsd_match_db]
    parts.append(f"At σ_max the last checkpoint matches the data's spectrum within {lsd_match_db:g} dB (LSD) in "
                 f"band(s): {', '.join(matched) or 'none'}" + (f"; not in {', '.join(unmatched)}." if unmatched
                                                                  else "."))
    if "sample_trajectory_lsd" in ds:
        parts.append(f"For {label(last)}: " + sample_sentence(ds, last, lsd_match_db))
    if "mse" in ds:
        ratio = _ratio(ds.mse.isel(checkpoint=last), ds.wiener_mse)
        if not np.isfinite(ratio).any():
            parts.append("Its denoising MSE against the stationary Wiener filter's is undefined (no channel has "
                         "power to denoise).")
            return " ".join(parts)
        i_best = int(np.nanargmin(ratio))
        parts.append(f"Its denoising MSE is {np.nanmin(ratio):.2f}–{np.nanmax(ratio):.2f}x the stationary Wiener "
                     f"filter's across σ (best {ratio[i_best]:.2f}x at σ = {float(sig[i_best]):.3g})")
        if "linear_mse" in ds:
            lin = _ratio(ds.mse.isel(checkpoint=last), ds.linear_mse)
            parts[-1] += (f" and {np.nanmin(lin):.2f}–{np.nanmax(lin):.2f}x the full-covariance linear MMSE "
                          f"denoiser's (the best linear one)")
        parts[-1] += "."
    return " ".join(parts)


def _ratio(num: xr.DataArray, den: xr.DataArray) -> np.ndarray:
    """Channel mean of ``num / den`` over the channels where ``den > 0`` (a channel with no power has no ratio);
    NaN where none has."""
    return (num / den.where(den > 0)).mean("channel").values


def matched_bands(ds: xr.Dataset, checkpoint: int, mode: str, lsd_match_db: float = MATCH_DB) -> list[str]:
    """Bands where the checkpoint's output at σ_max in ``mode`` is within ``lsd_match_db`` (LSD) of the data."""
    return measure.bands_within(ds.lsd.isel(checkpoint=checkpoint, sigma=-1).sel(mode=mode).mean("channel"), lsd_match_db)


def sample_sentence(ds: xr.Dataset, checkpoint: int, lsd_match_db: float = MATCH_DB) -> str:
    """What the N-step sampler reaches that the one-step output of the same images does not, for one checkpoint
    (both from the trajectory: its first step's estimate is the one-step output, its last the sample)."""
    lsd = ds.sample_trajectory_lsd.isel(checkpoint=checkpoint).mean("channel")
    bands = [str(b) for b in ds.band.values]
    one, many = lsd.isel(sampler_step=0).values, lsd.isel(sampler_step=-1).values
    reached = [b for b, v in zip(bands, many) if v <= lsd_match_db]
    extra = [b for b, v1, vn in zip(bands, one, many) if vn <= lsd_match_db < v1]
    how = str(ds.attrs.get("sample_mode", "the N-step sampler")).split(" from ")[0]
    return (f"From the same σ_max·z, {how} matches the data within {lsd_match_db:g} dB in band(s): "
            f"{', '.join(reached) or 'none'} (LSD {', '.join(f'{b} {v:.1f}' for b, v in zip(bands, many))} dB; "
            f"one step: {', '.join(f'{b} {v:.1f}' for b, v in zip(bands, one))} dB); bands it reaches that the "
            f"one-step output does not: {', '.join(extra) or 'none'}.")


def to_json(ds: xr.Dataset) -> dict:
    """A sweep's key numbers as a JSON-ready document (``freqlab sweep --json``): per checkpoint, at σ_max, the
    log-spectral distance per band and the cutoff f_c (with its bound flag) of every one-step mode, and in denoise
    mode the MSE against both references per σ."""
    if "checkpoint" not in ds.dims or "lsd" not in ds:
        return {"checkpoints": []}
    out = []
    for ck in ds.checkpoint.values:
        row = ds.sel(checkpoint=ck).isel(sigma=-1)
        entry = {"name": str(ck), "step": float(ds.step.sel(checkpoint=ck)) if "step" in ds.coords else None,
                 "sigma_max": float(ds.sigma.values[-1]), "modes": {}}
        for mode in [str(m) for m in ds.mode.values]:
            cell = row.sel(mode=mode)
            cutoff, bound = measure.channel_cutoff(cell.cutoff_freq, cell.cutoff_freq_bound)
            entry["modes"][mode] = {"lsd_db": {str(b): float(cell.lsd.sel(band=b).mean("channel"))
                                               for b in ds.band.values},
                                    "cutoff_freq": float(cutoff), "cutoff_freq_bound": int(bound)}
        if "mse" in ds:
            mse = ds.mse.sel(checkpoint=ck).mean("channel")
            entry["mse_over_wiener"] = (mse / ds.wiener_mse.mean("channel")).values.tolist()
            if "linear_mse" in ds:
                entry["mse_over_linear"] = (mse / ds.linear_mse.mean("channel")).values.tolist()
        out.append(entry)
    return {"sigmas": ds.sigma.values.tolist(), "checkpoints": out}
