"""Edge leakage of the spectrum conventions: no window vs Hann (mean removed) vs a leakage-free reference.

Image crops are not periodic, so the DFT sees a jump at the borders; that jump puts spurious power on the
frequency axes (a "+" cross), high band included. This script measures how much, for each convention freqlab
could use for all its spectra, against Moisan's periodic-plus-smooth decomposition (L. Moisan, "Periodic plus
smooth image decomposition", J Math Imaging Vis 39, 2011): ``u = p + s``, where the smooth part ``s`` carries the
border discontinuity and the spectrum of the periodic part ``p`` (no window) is free of the border cross.

For natural test crops, for the one-step outputs of a checkpoint (generate mode ``D(σ·z, σ)`` and denoise mode
``D(x0 + σ·n, σ)``, at a few σ) and, as sanity rows, for white noise and a Gaussian random field (periodic by
construction, so ~0 dB expected everywhere), it reports

  a. per band (low without DC, mid, high) the mean per-mode power under ``none`` (no window), ``hann`` (mean
     removed, then Hann, power / mean(w²)) and ``per`` (periodic component, no window), as the excess in dB of
     ``none`` and ``hann`` over ``per`` (leakage);
  b. the axis-cross measure: in the high band [0.25, 0.5], mean power of the on-axis modes (kx = 0 or ky = 0) over
     that of the off-axis modes, in dB, for none / hann / per;
  c. the relative power of the outputs, 10·log10(P_out / P_data) per band (what the sweep reports), under each
     convention, and how far none and hann move it from the per reference.

Numbers are means over images and channels; ``±`` is the bootstrap standard error over images (200 resamples).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/window_leakage.py \
        --checkpoint runs/demo/pretrain/checkpoints/step-000300 --n-images 256 [--out window_leakage.txt]

CPU only: 44 s at 256 images on two cores (measured); the results are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from freqlab.checkpoints.store import load_denoiser
from freqlab.data.sources import grf_power, make_source
from freqlab.spectral import power_spectrum_2d, radial_power_spectrum

CONVENTIONS = ("none", "hann", "per")
# low band without the DC bin (bin centres are k/32, so 1/64 leaves out k = 0 only); mid and high as DEFAULT_BANDS
BANDS = {"low*": (1 / 64, 1 / 8), "mid": (1 / 8, 1 / 4), "high": (1 / 4, 1 / 2)}
GEN_SIGMAS = (80.0, 2.5, 0.5)
DEN_SIGMAS = (2.5, 0.5)
N_BOOT = 200


# ----------------------------------------------------------------------------------------------------------------
# Moisan's periodic-plus-smooth decomposition
# ----------------------------------------------------------------------------------------------------------------
def periodic_smooth(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, s)`` with ``u = p + s``; ``u`` real ``(..., M, N)``. ``s`` has zero mean, so ``p`` keeps the mean of ``u``."""
    u = u.double()
    m, n = u.shape[-2:]
    v = torch.zeros_like(u)
    jump_rows = u[..., -1, :] - u[..., 0, :]  # last row minus first row
    jump_cols = u[..., :, -1] - u[..., :, 0]
    v[..., 0, :] += jump_rows
    v[..., -1, :] -= jump_rows
    v[..., :, 0] += jump_cols
    v[..., :, -1] -= jump_cols
    q = torch.arange(m, dtype=torch.float64).view(m, 1)
    r = torch.arange(n, dtype=torch.float64).view(1, n)
    denom = 2 * torch.cos(2 * math.pi * q / m) + 2 * torch.cos(2 * math.pi * r / n) - 4
    denom[0, 0] = 1.0
    big_s = torch.fft.fft2(v) / denom
    big_s[..., 0, 0] = 0
    s = torch.fft.ifft2(big_s).real
    return u - s, s


def border_jumps(x: torch.Tensor) -> tuple[float, float]:
    """Mean |jump| across the periodic borders and mean |neighbour difference| inside the image."""
    border = torch.cat([(x[..., -1, :] - x[..., 0, :]).abs().flatten(), (x[..., :, -1] - x[..., :, 0]).abs().flatten()])
    inner = torch.cat([x.diff(dim=-2).abs().flatten(), x.diff(dim=-1).abs().flatten()])
    return float(border.mean()), float(inner.mean())


def check_decomposition(u: torch.Tensor) -> str:
    p, s = periodic_smooth(u)
    err = float((p + s - u.double()).abs().max())
    # s solves the periodic Poisson equation Δs = v exactly: residual of the discrete periodic Laplacian
    lap = sum(torch.roll(s, k, d) for k in (1, -1) for d in (-1, -2)) - 4 * s
    m, n = u.shape[-2:]
    v = torch.zeros_like(s)
    jr, jc = u[..., -1, :].double() - u[..., 0, :], u[..., :, -1].double() - u[..., :, 0]
    v[..., 0, :] += jr
    v[..., -1, :] -= jr
    v[..., :, 0] += jc
    v[..., :, -1] -= jc
    res = float((lap - (v - v.mean(dim=(-2, -1), keepdim=True))).abs().max())
    bu, iu = border_jumps(u.double())
    bp, ip = border_jumps(p)
    return (f"Moisan check (one natural crop, 3 ch): max|p+s-u| = {err:.1e}; max|Δs - v| = {res:.1e}; "
            f"mean border jump u {bu:.3f} -> p {bp:.3f} (interior neighbour diff u {iu:.3f}, p {ip:.3f})")


# ----------------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------------
def band_matrix(freq: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(n_bins, n_bands)``: mean over the modes of the bins whose centre lies in each band (high closed at 0.5)."""
    cols = []
    for lo, hi in BANDS.values():
        m = (freq >= lo) & ((freq < hi) | ((hi == 0.5) & (freq <= hi)))
        w = counts.double() * m
        cols.append(w / w.sum())
    return torch.stack(cols, 1)


def axis_masks(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-plane (fftshifted) masks of the high-band on-axis and off-axis modes."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, dtype=torch.float64)).view(h, 1)
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, dtype=torch.float64)).view(1, w)
    f = torch.sqrt(fy**2 + fx**2)
    high = (f >= 0.25) & (f <= 0.5)
    axis = (fy == 0) | (fx == 0)
    return high & axis, high & ~axis


def per_image_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image (mean over channels): band powers ``(N, n_bands)`` and high-band on/off-axis power ``(N, 2)``."""
    x = x.double()
    p, _ = periodic_smooth(x)
    variants = {"none": (x, None, False), "hann": (x, "hann", True), "per": (p, None, False)}
    on, off = axis_masks(*x.shape[-2:])
    out = {}
    for name, (img, win, rm) in variants.items():
        freq, power, counts = radial_power_spectrum(img, window=win, remove_mean=rm)
        bands = (power @ band_matrix(freq, counts)).mean(1)  # (N, n_bands)
        _, _, p2 = power_spectrum_2d(img, window=win, remove_mean=rm)
        p2 = p2.mean(1)
        axis = torch.stack([p2[:, on].mean(-1), p2[:, off].mean(-1)], -1)
        out[name] = torch.cat([bands, axis], -1)  # (N, n_bands + 2)
    return out


def true_stats(resolution: int, kind: str, exponent: float = 2.0) -> torch.Tensor:
    """Known expected spectrum on the 32x32 modes, reduced like :func:`per_image_stats`: ``(n_bands + 2,)``.

    ``white``: 1 per mode (unit variance); ``grf``: :func:`freqlab.data.sources.grf_power` of a field generated at
    ``resolution`` with ``exponent`` (a 32x32 crop of a periodic 128x128 field has the 128 field's per-mode power at f = k/32).
    """
    fy = torch.fft.fftfreq(32, dtype=torch.float64).view(32, 1)
    fx = torch.fft.fftfreq(32, dtype=torch.float64).view(1, 32)
    f = torch.sqrt(fy**2 + fx**2)
    p = torch.ones_like(f) if kind == "white" else grf_power(f, exponent, resolution=resolution)
    b = torch.floor(f * 32 + 0.5).long()  # the library's default bins: centres k/32, width 1/32
    keep = f <= 0.5
    nbin = 17
    counts = torch.bincount(b[keep], minlength=nbin)
    radial = torch.bincount(b[keep], weights=p[keep], minlength=nbin) / counts
    bands = radial @ band_matrix(torch.arange(nbin, dtype=torch.float64) / 32, counts)
    on, off = axis_masks(32, 32)
    ps = torch.fft.fftshift(p)
    return torch.cat([bands, torch.stack([ps[on].mean(), ps[off].mean()])])


def boot_index(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.cat([torch.arange(n).view(1, n), torch.randint(0, n, (N_BOOT, n), generator=gen)])


def db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(a / b)


def fmt(v: torch.Tensor) -> str:
    """Value (first row: all images) ± bootstrap SE."""
    return f"{float(v[0]):+6.2f}±{float(v[1:].std()):.2f}"


def model_outputs(path: str, x0: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    den = load_denoiser(path, device="cpu")
    gen = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(x0.shape, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    n = x0.shape[0]
    outs = {}
    with torch.inference_mode():
        for s in GEN_SIGMAS:
            outs[f"gen σ={s:g}"] = den(s * z, torch.full((n,), s)).float()
        for s in DEN_SIGMAS:
            outs[f"den σ={s:g}"] = den(x0 + s * noise, torch.full((n,), s)).float()
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="runs/demo/pretrain/checkpoints/step-000300",
                    help="a checkpoint whose one-step outputs are measured (default: the demo's final one)")
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    n = args.n_images
    idx = list(range(n))
    sets = {name: make_source(name, resolution=32, split="test").images(idx) for name in ("natural", "white", "grf")}
    # non-periodic fields with a known (natural-like f^-2) spectrum: 32x32 corners of periodic 128x128 GRFs
    # (exponent 3: steeper, like the box-downsampled photographs near Nyquist)
    for e in (2, 3):
        src = make_source("grf", resolution=128, split="test", exponent=float(e))
        sets[f"grf{e} crop"] = src.images(idx)[..., :32, :32].contiguous()
    truths = {"white": true_stats(32, "white") * 0.5**2,  # the white source's default std is 0.5
              "grf": true_stats(32, "grf"), "grf2 crop": true_stats(128, "grf"),
              "grf3 crop": true_stats(128, "grf", exponent=3.0)}
    lines = [f"window leakage: {n} images/set, 32x32 RGB; checkpoint {args.checkpoint}",
             check_decomposition(sets["natural"][0])]
    sets.update(model_outputs(args.checkpoint, sets["natural"], args.seed))
    t_model = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(args.seed)
    bidx = boot_index(n, gen)
    stats = {k: per_image_stats(v) for k, v in sets.items()}
    # bootstrap means: (N_BOOT+1, n_bands + 2) per set and convention
    means = {k: {c: st[c][bidx].mean(1) for c in CONVENTIONS} for k, st in stats.items()}
    nb = len(BANDS)

    lines += ["", "a. leakage = 10log10(P_conv / P_per) per band, dB (per = Moisan periodic component, no window)",
              f"{'set':<12}" + "".join(f"{'none ' + b:>14}" for b in BANDS) + "".join(f"{'hann ' + b:>14}" for b in BANDS)]
    for k, m in means.items():
        row = [fmt(db(m[c][:, j], m["per"][:, j])) for c in ("none", "hann") for j in range(nb)]
        lines.append(f"{k:<12}" + "".join(f"{r:>14}" for r in row))

    lines += ["", "   calibration on known spectra: 10log10(P_conv / P_true) per band, dB (white, grf: periodic;",
              "   grfE crop: 32x32 corner of a 128x128 GRF with P ∝ f^-E, natural-like but not periodic)",
              f"{'set':<12}{'band':<6}" + "".join(f"{c:>14}" for c in CONVENTIONS)]
    for k, t in truths.items():
        for j, b in enumerate(BANDS):
            lines.append(f"{k:<12}{b:<6}" + "".join(f"{fmt(db(means[k][c][:, j], t[j])):>14}" for c in CONVENTIONS))

    lines += ["", "   absolute high-band mean power per mode (none / hann / per)"]
    for k, m in means.items():
        lines.append(f"   {k:<12}" + "  ".join(f"{float(m[c][0, nb - 1]):.3e}" for c in CONVENTIONS))

    lines += ["", "b. axis cross: high band, mean power on axes (kx=0 or ky=0) / off axes, dB (true: of the known spectrum;",
              "   not 0 for grf because on- and off-axis high-band modes have different |f|)",
              f"{'set':<12}" + "".join(f"{c:>14}" for c in CONVENTIONS) + f"{'true':>8}"]
    for k, m in means.items():
        true = f"{float(db(truths[k][nb], truths[k][nb + 1])):+8.2f}" if k in truths else ""
        lines.append(f"{k:<12}" + "".join(f"{fmt(db(m[c][:, nb], m[c][:, nb + 1])):>14}" for c in CONVENTIONS) + true)

    lines += ["", "c. relative power of outputs, 10log10(P_out/P_data) per band, dB, under each convention;",
              "   d_none / d_hann = change vs the per reference (data: natural test crops; generate and data bootstrapped",
              "   independently, denoise paired)"]
    data = means["natural"]
    # independent resampling of the data for generate mode
    bidx2 = boot_index(n, gen)
    data_ind = {c: stats["natural"][c][bidx2].mean(1) for c in CONVENTIONS}
    hdr = f"{'set':<12}{'band':<6}" + "".join(f"{'rel ' + c:>14}" for c in CONVENTIONS) + f"{'d_none':>14}{'d_hann':>14}"
    lines.append(hdr)
    for k, m in means.items():
        if k in ("natural", "white", "grf") or k.endswith("crop"):
            continue
        ref = data if k.startswith("den") else data_ind
        for j, b in enumerate(BANDS):
            rel = {c: db(m[c][:, j], ref[c][:, j]) for c in CONVENTIONS}
            row = [fmt(rel[c]) for c in CONVENTIONS] + [fmt(rel["none"] - rel["per"]), fmt(rel["hann"] - rel["per"])]
            lines.append(f"{k:<12}{b:<6}" + "".join(f"{r:>14}" for r in row))

    lines += ["", f"time: {time.perf_counter() - t0:.1f} s (data + model outputs {t_model:.1f} s)"]
    text = "\n".join(lines)
    print(text)
    if args.out is None:
        return
    with open(args.out, "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
