"""A short plain-words report of a demo results directory (``report.md``), with the numbers behind each claim.

It answers, from saved results only: which bands the pre-trained model produces in one step at σ_max, which it
produces at lower σ, how that changed over pre-training, which bands EDM's N-step sampler reaches from the same
noise that one step does not, what GAN fine-tuning added, whether it brought each run's samples to the data band by
band (two-sample comparisons over seeds against held-out data and controls, :mod:`freqlab.compare.verdict`, under
the committed criterion), and, inside the network, which blocks carry the high band and what an unfrozen
fine-tune moved. A band counts as
"produced" when its log-spectral distance to the data is within ``MATCH_DB``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from freqlab.measure import core as measure
from freqlab.measure.conventions import MATCH_DB
from freqlab.runtime import results

__all__ = ["RUN_NAMES", "build_report", "verdict_section", "write_report"]

#: How the report names the demo's fine-tunes.
RUN_NAMES = {"pretrained": "D2O-F from pre-trained", "random": "random init, D2O-F frozen",
             "random-unfrozen": "random init, nothing frozen"}


def _bands(ds: xr.Dataset) -> list[str]:
    return [str(b) for b in ds.band.values]


def _band_edges(ds: xr.Dataset) -> str:
    return ", ".join(f"{b} [{float(ds.band_lo.sel(band=b)):.3g}, {float(ds.band_hi.sel(band=b)):.3g}]" for b in _bands(ds))


def _step(ds: xr.Dataset, ck) -> str:
    step = float(ds.step.sel(checkpoint=ck)) if "step" in ds.coords else np.nan
    return f"step {int(step):,}" if np.isfinite(step) and step >= 0 else str(ck)


def _cutoff(row: xr.Dataset, name: str = "cutoff_freq", short: bool = False) -> str:
    return measure.cutoff_text(*measure.channel_cutoff(row[name], row[f"{name}_bound"]), short=short)


def _produced(lsd: xr.DataArray) -> str:
    names = measure.bands_within(lsd, MATCH_DB)
    return ", ".join(names) if names else "none"


def _produces_text(lsd: xr.DataArray) -> str:
    produced = _produced(lsd)
    if produced == "none":
        return f"produces **no band** within {MATCH_DB:g} dB of the data's spectrum"
    return f"produces the **{produced}** band(s) within {MATCH_DB:g} dB of the data's spectrum"


def _lsd_row(lsd: xr.DataArray) -> str:
    return " | ".join(f"{float(lsd.sel(band=b)):.1f}" for b in lsd.band.values)


def _sigma_max_reading(gen: xr.Dataset, ds: xr.Dataset) -> str:
    """What the σ_max output's power per band means: a deficit everywhere is what a faithful denoiser gives."""
    rel = gen.relative_power_db.mean("channel")
    per_band = {b: float(rel.sel(freq=rel.freq[(rel.freq > 0) & (rel.freq >= float(ds.band_lo.sel(band=b)))
                                               & (rel.freq <= float(ds.band_hi.sel(band=b)))]).mean())
                for b in _bands(ds)}
    excess = [b for b, v in per_band.items() if v > MATCH_DB]
    if excess:
        return (f"It has more power than the data in the {', '.join(excess)} band(s): grain or artefacts that a "
                "faithful denoiser would not produce at σ_max, where the best answer is close to the data mean.")
    if all(v < -MATCH_DB for v in per_band.values()):
        return ("Less power than the data in every band is what a faithful denoiser gives at σ_max: the input holds "
                "almost nothing of the image, so the best one-step answer is close to the data mean, a blurred "
                "image. That deficit is what GAN fine-tuning has to fill.")
    return ""


def sweep_section(ds: xr.Dataset) -> list[str]:
    """Sections 1-3: σ_max generation, lower σ, and the pre-training trajectory."""
    return _sigma_max_lines(ds) + _lower_sigma_lines(ds) + _pretraining_lines(ds)


def _sigma_max_lines(ds: xr.Dataset) -> list[str]:
    bands = _bands(ds)
    last = ds.checkpoint.values[-1]
    smax = float(ds.sigma.max())
    gen = ds.sel(checkpoint=last, mode="generate", sigma=smax)
    lsd_max = gen.lsd.mean("channel")
    rel = gen.relative_power_db.mean("channel")
    low_db = float(rel.sel(freq=rel.freq[(rel.freq > 0) & (rel.freq < 0.125)]).mean())
    high_db = float(rel.sel(freq=rel.freq[rel.freq >= 0.25]).mean())
    return [
        f"## One step at σ_max = {smax:g}: what pre-training already generates",
        "",
        f"The final pre-trained model ({_step(ds, last)}) fed pure noise σ_max·z, i.e. the D2O generator before any "
        f"fine-tuning, {_produces_text(lsd_max)}. "
        f"Its output has {low_db:+.1f} dB of the data's power in the low band and {high_db:+.1f} dB in the high band; "
        f"its cutoff f_c, the lowest frequency where its power departs from the data's by more than 3 dB (too "
        f"little or too much), is {_cutoff(gen)}. {_sigma_max_reading(gen, ds)}",
        "",
        f"| band (cycles/px) | {' | '.join(bands)} |",
        f"|---|{'---|' * len(bands)}",
        f"| log-spectral distance at σ_max (dB) | {_lsd_row(lsd_max)} |",
        "",
    ]


def _lower_sigma_lines(ds: xr.Dataset) -> list[str]:
    last = ds.checkpoint.values[-1]
    lines = [
        "## Lower noise levels: which bands one denoising step recovers",
        "",
        "In `denoise` mode the input is a real image plus noise x0 + σ·n. Below, f_c is the lowest frequency where "
        "the one-step output's power departs from the data's by more than 3 dB; the coherence cutoff is where the "
        "output stops carrying the clean image (coherence < 0.5: above it, what the output has is not the signal); "
        "f*(σ) is the SNR crossover where the data's power falls to σ² (the stationary Wiener filter's coherence "
        "cutoff). ≤ / ≥ mark bounds: the criterion already fails at the lowest frequency, or never. MSE / Wiener "
        "compares with the stationary Wiener filter (the best shift-invariant linear denoiser)"
        + (", MSE / linear with the full-covariance linear MMSE denoiser (the best linear denoiser); < 1: the model "
           "beats it." if "linear_mse" in ds else "; < 1: it beats it.")
        + f" Both references are fitted on {_references_text(ds)}, and every model is measured on the swept "
        "images: equal terms.",
        "",
        "| σ | f_c (cycles/px) | coherence cutoff (cycles/px) | f*(σ) (cycles/px) | MSE / Wiener | "
        + ("MSE / linear | " if "linear_mse" in ds else "") + "bands produced |",
        "|---|---|---|---|---|" + ("---|" if "linear_mse" in ds else "") + "---|",
    ]
    den = ds.sel(checkpoint=last, mode="denoise")
    ratio = (ds.mse.sel(checkpoint=last) / ds.wiener_mse).mean("channel")
    linear = (ds.mse.sel(checkpoint=last) / ds.linear_mse).mean("channel") if "linear_mse" in ds else None
    for sigma in ds.sigma.values:
        row = den.sel(sigma=sigma)
        fstar = float(ds.snr_crossover.sel(sigma=sigma).mean("channel"))
        extra = f"{float(linear.sel(sigma=sigma)):.2f} | " if linear is not None else ""
        lines.append(f"| {sigma:.3g} | {_cutoff(row, short=True)} | {_cutoff(row, 'coherence_cutoff', short=True)} | "
                     f"{_fstar_text(fstar, ds)} | {float(ratio.sel(sigma=sigma)):.2f} | {extra}"
                     f"{_produced(row.lsd.mean('channel'))} |")
    return lines + _diffusion_model_lines(ds, linear if linear is not None else ratio)


def _fstar_text(fstar: float, ds: xr.Dataset) -> str:
    """f*(σ) for a table: NaN means the data's power is below σ² already at the lowest resolved frequency."""
    return f"{fstar:.3f}" if np.isfinite(fstar) else f"< {float(ds.freq.values[1]):.3f}"


def _references_text(ds: xr.Dataset) -> str:
    """The images both references were fitted on, as the sweep recorded them."""
    return str(ds.attrs.get("references_fitted_on", "held-out images of the same data"))


def _diffusion_model_lines(ds: xr.Dataset, ratio: xr.DataArray) -> list[str]:
    """Where the final checkpoint is a diffusion model in the sense that counts: better than the best linear
    denoiser (or, without it, the stationary Wiener filter). Claims about denoising hold only at those σ."""
    what = "the best linear denoiser" if "linear_mse" in ds else "the stationary Wiener filter"
    worse = [float(s) for s, r in zip(ds.sigma.values, ratio.values) if not r < 1.0]
    if not worse:
        return ["", f"The final checkpoint beats {what} at every σ of the sweep."]
    better = [float(s) for s, r in zip(ds.sigma.values, ratio.values) if r < 1.0]
    worst = float(ratio.max())
    return ["", f"**The final checkpoint is no better than {what} at σ = {', '.join(f'{s:.3g}' for s in worse)}** "
                f"(MSE up to {worst:.2f}× its); at those σ it is not yet a diffusion model that has learned more than "
                "second-order statistics, and this report claims nothing about its denoising there"
                + (f". It beats it at σ = {', '.join(f'{s:.3g}' for s in better)}." if better else ".")]


def _pretraining_lines(ds: xr.Dataset) -> list[str]:
    bands = _bands(ds)
    last = ds.checkpoint.values[-1]
    smax = float(ds.sigma.max())
    lsd_max = ds.sel(checkpoint=last, mode="generate", sigma=smax).lsd.mean("channel")
    lines = ["", "## Over pre-training", "",
              "How the one-step generator at σ_max and the denoiser at σ = 0.5 changed from the random initialisation "
              "(step 0, the control for \"what does pre-training add\") to the end of pre-training:", "",
              f"| checkpoint | f_c at σ_max (cycles/px) | LSD at σ_max: {' / '.join(bands)} (dB) | diversity ratio at σ_max, high | "
              "MSE/Wiener at σ≈0.5 |",
              "|---|---|---|---|---|"]
    s_half = float(ds.sigma.values[np.argmin(np.abs(np.log(ds.sigma.values / 0.5)))])
    for ck in ds.checkpoint.values:
        g = ds.sel(checkpoint=ck, mode="generate", sigma=smax)
        div = float(g.diversity_ratio.mean("channel").sel(band=bands[-1]))
        r = float((ds.mse.sel(checkpoint=ck, sigma=s_half) / ds.wiener_mse.sel(sigma=s_half)).mean("channel"))
        lines.append(f"| {_step(ds, ck)} | {_cutoff(g, short=True)} | "
                     f"{' / '.join(f'{float(v):.1f}' for v in g.lsd.mean('channel').values)} | {div:.2f} | {r:.2f} |")
    first = ds.checkpoint.values[0]
    lsd0 = ds.sel(checkpoint=first, mode="generate", sigma=smax).lsd.mean("channel")
    lines += ["", f"From {_step(ds, first)} to {_step(ds, last)} the log-spectral distance at σ_max went "
              + ", ".join(f"{b}: {float(lsd0.sel(band=b)):.1f} → {float(lsd_max.sel(band=b)):.1f} dB" for b in bands) + "."]
    return lines


def finetune_section(logs: dict[str, xr.Dataset]) -> list[str]:
    """Section 5: what GAN fine-tuning added, with the random-init control."""
    if not logs:
        return []
    first = next(iter(logs.values()))
    bands = [str(b) for b in first.band.values]
    lines = ["", "## What GAN fine-tuning added", "",
             "D2O-F: the one-step generator G(z) = D(σ_max·z, σ_max) fine-tuned with a plain GAN loss (no distillation), "
             f"with the `conv` policy freezing {100 * float(first.attrs.get('frozen_share', np.nan)):.0f}% of the parameters. "
             "Diversity ratio: spread of per-image log band power relative to the data's (about 1: as varied as the "
             "data; near 0: every sample the same texture). Kurtosis gap: band-pass kurtosis minus the data's, DC "
             "excluded (negative: more Gaussian; positive: heavier tails than the data, sparse structure or "
             "artefacts). Channel means.", "",
             f"| run | images seen | LSD {' / '.join(bands)} (dB) | diversity ratio {' / '.join(bands)} | kurtosis gap, high |",
             "|---|---|---|---|---|"]
    for name, log in logs.items():
        for pos, label in ((0, "start"), (-1, "end")):
            row = log.isel(images_seen=pos)
            lines.append(
                f"| {name} ({label}) | {int(row.images_seen):,} | "
                f"{' / '.join(f'{float(v):.1f}' for v in row.lsd.mean('channel').values)} | "
                f"{' / '.join(f'{float(v):.2f}' for v in row.diversity_ratio.mean('channel').values)} | "
                f"{float(row.kurtosis_gap.sel(band=bands[-1]).mean('channel')):+.2f} |")
    lines.append("")
    for name, log in logs.items():
        start, end = log.isel(images_seen=0).mean("channel"), log.isel(images_seen=-1).mean("channel")
        h0, h1 = float(start.lsd.sel(band=bands[-1])), float(end.lsd.sel(band=bands[-1]))
        d1 = float(end.diversity_ratio.sel(band=bands[-1]))
        change = f"reduced {h0 / h1:.1f}-fold" if 0 < h1 < h0 else "not reduced"
        lines.append(f"- **{name}**: high-band log-spectral distance {h0:.1f} → {h1:.1f} dB ({change}); "
                     f"high-band diversity ratio at the end {d1:.2f}.")
    return lines


def verdict_section(root: Path) -> list[str]:
    """The verdict on fine-tuning from the comparisons of ``compare.nc`` and the committed criterion (empty when
    the results directory has no comparisons)."""
    if not (root / "compare.nc").exists():
        return []
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.verdict import verdict_section as section

    ds = results.load(root / "compare.nc")
    criterion = load_criterion()
    lines = section(ds, criterion, RUN_NAMES)
    made_with = ds.attrs.get("criterion_sha256")
    if made_with and made_with != criterion.sha256:
        lines += ["", f"**Note**: `compare.nc` was made under another criterion (sha256 `{made_with}`); rerun the "
                  "demo to compare under today's."]
    return lines


def sampler_section(ds: xr.Dataset) -> list[str]:
    """Many steps against one: per checkpoint, the bands EDM's N-step sampler reaches from σ_max·z that the one-step
    output of the same images does not (both from the sampler's trajectory: its first estimate is the one-step
    output, its last the sample), and from which step on each band stays within ``MATCH_DB`` of the data."""
    if "sample_trajectory_lsd" not in ds:
        return []
    how = str(ds.attrs.get("sample_mode", "EDM's deterministic sampler")).split(" from ")[0]
    n = int(ds.attrs.get("sample_images", 0)) or "the first"
    lines = ["## Many steps against one: what the weights can already generate", "",
             f"From the same noise σ_max·z (σ_max = {float(ds.sigma.max()):g}), {how} gives each checkpoint's "
             f"multi-step sample of {n} images; the one-step output of the same images is D2O's starting point. A "
             f"band is *reached* when its log-spectral distance to the data is at most {MATCH_DB:g} dB. Bands the "
             "sampler reaches and one step does not are what GAN fine-tuning must teach the one-step generator.", "",
             f"| checkpoint | N-step LSD (dB; {' / '.join(_bands(ds))}) | one-step LSD (dB) | N-step reaches | "
             "one step reaches | sampler only |",
             "|---|---|---|---|---|---|"]
    for ck in ds.checkpoint.values:
        lsd = ds.sample_trajectory_lsd.sel(checkpoint=ck).mean("channel")
        many, one = lsd.isel(sampler_step=-1), lsd.isel(sampler_step=0)
        reach_many, reach_one = _produced(many), _produced(one)
        extra = [b for b in reach_many.split(", ") if b != "none" and b not in reach_one.split(", ")]
        lines.append(f"| {_step(ds, ck)} | {_slash_row(many)} | {_slash_row(one)} | {reach_many} | {reach_one} | "
                     f"{', '.join(extra) or 'none'} |")
    return lines + ["", _trajectory_sentence(ds), ""]


def _slash_row(lsd: xr.DataArray) -> str:
    return " / ".join(f"{float(lsd.sel(band=b)):.1f}" for b in lsd.band.values)


def _trajectory_sentence(ds: xr.Dataset) -> str:
    """From which sampler step each band of the final checkpoint's estimate stays within MATCH_DB (LSD) of the data
    to the end, and whether the bands settle coarse before fine."""
    lsd = ds.sample_trajectory_lsd.isel(checkpoint=-1).mean("channel")
    t = ds.sampler_sigma.values
    settled = {}
    for b in _bands(ds):
        inside = np.abs(lsd.sel(band=b).values) <= MATCH_DB
        out = np.flatnonzero(~inside)
        settled[b] = None if not inside[-1] else (int(out[-1]) + 1 if out.size else 0)
    text = "; ".join(f"{b} from t = {t[i]:.3g} (step {i})" if i is not None else f"{b} never"
                     for b, i in settled.items())
    arrived = [i for i in settled.values() if i is not None]
    if arrived != sorted(arrived):
        order = "not coarse before fine"
    elif len(arrived) < len(settled):
        order = "a band that never settles leaves the order open"
    elif len(set(arrived)) > 1:
        order = "coarse before fine, the order in which a diffusion model is expected to build an image"
    else:
        order = "all bands at the same step"
    return (f"Along the sampler of the final checkpoint, the estimate x̂0 = D(x_i, t_i) stays within {MATCH_DB:g} dB "
            f"(log-spectral distance) of the data's spectrum to the end: {text} ({order}).")


def inside_section(root: Path) -> list[str]:
    """Inside the network: which blocks carry the high band (per-layer feature spectra) and what an unfrozen D2O
    fine-tune moved against the D2O-F frozen set (weight change); empty when neither file is there."""
    lines = []
    if (root / "layer_spectra.nc").exists():
        from freqlab.inside import layer_spectra

        text = layer_spectra.summarize(results.load(root / "layer_spectra.nc")).splitlines()
        lines += ["", text[0], ""] + [f"- {line.strip()}" for line in text[1:]] + [
            "", "A block whose feature maps hold a larger share of their power above 1/4 cycle per image pixel carries "
            "more of the fine detail, and a share can fall while the block's power in that band grows: "
            "`figures/layer_spectra.png` shows every block's spectrum at σ_max beside its absolute high-band power."]
    if (root / "weight_change.nc").exists():
        from freqlab.inside import weight_change

        ds = results.load(root / "weight_change.nc")
        text = weight_change.summarize(ds).splitlines()
        unfrozen = "unfrozen" in str(ds.attrs.get("after", ""))
        lines += ["", ("What an unfrozen fine-tune (D2O, nothing frozen) moved, against the set D2O-F freezes:"
                       if unfrozen else "What the D2O-F fine-tune moved (its frozen set must not move at all; the "
                       "unfrozen comparison runs with `freqlab weights`):"), "",
                  "```", *text, "```"]
        if unfrozen:
            lines += ["", "A share of the squared change is not a function: Adam moves every weight by about its "
                      "learning rate per step, so equal-size steps alone would put "
                      f"{100 * float(ds.frozen_share_of_params):.1f} % of the squared change on the frozen set (its "
                      "share of the parameters)."]
    if (root / "function_change.nc").exists():
        from freqlab.inside import function_change

        text = function_change.summarize(results.load(root / "function_change.nc")).splitlines()
        lines += ["", "What that weight change does to the one-step outputs:", "", "```", *text, "```"]
    return ["", "## Inside the network", *lines, ""] if lines else []


def ablation_section(root: Path) -> list[str]:
    """The σ-ablation (:mod:`freqlab.compare.ablation`), when a benchmark wrote its results into ``root``."""
    from freqlab.compare import ablation

    path = root / ablation.ABLATION_FILE
    return ablation.section(results.load(path)) if path.exists() else []


def build_report(root: str | Path) -> str:
    """The report of the results directory ``root`` as markdown."""
    from freqlab.plots.results_dir import finetune_logs

    root = Path(root)
    ds = results.load(root / "sweep.nc")
    try:
        logs = finetune_logs(root)
    except FileNotFoundError:
        logs = {}
    head = [
        "# freqlab demo report",
        "",
        f"Data: `{ds.attrs.get('data_source', '?')}` ({ds.attrs.get('data_split', '?')} split, "
        f"{int(ds.attrs.get('n_images', 0))} images of {int(ds.attrs.get('data_height', 0))}×"
        f"{int(ds.attrs.get('data_width', 0))} px), {ds.sizes['checkpoint']} checkpoints × {ds.sizes['sigma']} noise "
        f"levels. Bands (cycles/pixel): {_band_edges(ds)}. A band is *produced* when its log-spectral distance to "
        f"the data is at most {MATCH_DB:g} dB. Figures: `figures/`.",
        "",
    ]
    body = _numbered(sweep_section(ds) + sampler_section(ds) + finetune_section(logs) + verdict_section(root)
                     + inside_section(root) + ablation_section(root))
    return "\n".join(head + body) + "\n"


def _numbered(lines: list[str]) -> list[str]:
    """Number the sections (``## ``) in the order they appear: a report without a section skips no number."""
    out, k = [], 0
    for line in lines:
        if line.startswith("## "):
            k += 1
            line = f"## {k}. {line[3:]}"
        out.append(line)
    return out


def write_report(root: str | Path) -> Path:
    """Write ``root/report.md``; returns its path."""
    path = Path(root) / "report.md"
    path.write_text(build_report(root), encoding="utf-8")
    return path
