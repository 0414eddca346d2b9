"""Quality and speed of ``freqlab pretrain``: is the pre-trained model a faithful denoiser at every σ of the sweep?

Runs a pre-training preset (default ``cpu-small`` on ``natural``) into ``--out`` (or reuses a finished run there),
then reports

* the wall time of the run (checkpoint writing included) and images/s of the training steps alone;
* the one-step denoising MSE of the final EMA model on **held-out** crops (``split="test"``: photographs never
  trained on) against the stationary Wiener filter fitted on **training** crops (``WienerDenoiser.from_images``),
  as the ratio model/Wiener at every σ of the sweep's default grid (13 log-spaced levels from σ_min to σ_max,
  which the demo sweeps too). Target: ratio ≤ 1 at every σ (≤ 1.02 at σ ≤ 0.01, where both are within a few per
  cent of the identity and the Wiener filter's gain is itself a few per cent);
* the one-step generator at σ_max, ``D(σ_max·z, σ_max)`` on the same z as the sweep's ``generate`` mode: its
  power per band relative to the held-out data's (target: ≤ 0 dB in every band, no excess power, i.e. no grain).

Usage::

    python benchmarks/pretrain_quality.py --out runs/bench-pretrain            # train cpu-small, then evaluate
    python benchmarks/pretrain_quality.py --out runs/pretrain --no-train        # evaluate an existing run
    python benchmarks/pretrain_quality.py --out /tmp/x --set steps=200 lr=2e-3  # try other settings

Exit status 0 whether or not the target is met (the last line says which). Timing depends on what else the
machine is doing; the numbers are printed with the thread count, CPU and load average.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from freqlab import spectral  # noqa: E402
from freqlab.checkpoints.store import discover_checkpoints, load_denoiser  # noqa: E402
from freqlab.data.sources import make_source  # noqa: E402
from freqlab.measure import core as measure
from freqlab.models.denoisers import count_parameters  # noqa: E402
from freqlab.models.linear import WienerDenoiser  # noqa: E402
from freqlab.pretrain.config import TrainConfig, make_config
from freqlab.pretrain.loop import pretrain  # noqa: E402
from freqlab.runtime.rng import per_sample_randn  # noqa: E402
from freqlab.measure.sigmas import DEFAULT_N_SIGMAS, default_sigmas  # noqa: E402

NEAR_IDENTITY = 0.01  # at σ ≤ this the target ratio is 1.02


def grid(sigma_min: float, sigma_max: float) -> list[float]:
    """The sweep's default σ grid (the demo's too)."""
    return [float(s) for s in default_sigmas(sigma_min, sigma_max, DEFAULT_N_SIGMAS)]


def target(sigma: float) -> float:
    return 1.02 if sigma <= NEAR_IDENTITY else 1.0


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@torch.no_grad()
def denoising_mse(denoiser, images: torch.Tensor, sigma: float, *, seed: int = 0, batch: int = 256,
                  device: str = "cpu") -> float:
    """Mean squared error of ``denoiser(x0 + σ·n, σ)`` against ``x0`` over ``images`` (noise per image index).

    The denoiser runs on ``device``; the noise is drawn and the error summed on the CPU, so every device sees the
    same inputs."""
    total = 0.0
    for start in range(0, len(images), batch):
        x0 = images[start:start + batch]
        n = per_sample_randn(seed, f"bench/noise/{sigma}", range(start, start + len(x0)), x0.shape[1:])
        out = denoiser((x0 + sigma * n).to(device), sigma).float().cpu()
        total += float((out - x0).double().square().sum())
    return total / images.numel()


@torch.no_grad()
def band_power_db(denoiser, images: torch.Tensor, sigma_max: float, *, batch: int = 256,
                  device: str = "cpu") -> list[float]:
    """Power per band (low, mid, high) of ``D(σ_max·z, σ_max)`` over that of ``images``, in dB, channel mean.

    z is the sweep's ``generate`` noise for image indices 0..N-1; spectra as in the sweep (Hann window after
    removing each image's mean, freqlab.measure.core).
    """
    an = measure.Analysis(images.shape[1:])
    out_power, data_power = 0.0, 0.0
    for start in range(0, len(images), batch):
        x0 = images[start:start + batch]
        z = per_sample_randn(0, measure.GENERATE_STREAM, range(start, start + len(x0)), x0.shape[1:])
        out = denoiser((sigma_max * z).to(device), sigma_max).float().cpu()
        out_power = out_power + an.radial(an.fft(out)).double().sum(0)
        data_power = data_power + an.radial(an.fft(x0)).double().sum(0)
    ratio = (spectral.band_power(an.freq, out_power, an.counts, an.bands)
             / spectral.band_power(an.freq, data_power, an.counts, an.bands))
    return [float(v) for v in (10 * torch.log10(ratio)).mean(0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench-pretrain", help="run directory (trained into unless --no-train)")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--data", default="natural")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    p.add_argument("--no-train", action="store_true", help="only evaluate the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--n-test", type=int, default=256, help="held-out test crops (default 256)")
    p.add_argument("--n-fit", type=int, default=8192, help="training crops the Wiener filter is fitted on")
    p.add_argument("--all-checkpoints", action="store_true", help="evaluate every checkpoint, not only the last")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--device", default="cpu", help="where the model trains and is evaluated (cpu, cuda, cuda:N)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
                    + (f", {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else ""),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__}

    if args.no_train:
        config = TrainConfig.from_dict(json.loads((out / "run.json").read_text())["config"])
    else:
        overrides = dict(kv.split("=", 1) for kv in args.set)
        config = make_config(args.preset, data=args.data, **{k: _value(v) for k, v in overrides.items()})
        report["load_average_before"] = os.getloadavg()
        t0 = time.perf_counter()
        result = pretrain(config, out, overwrite=args.overwrite, device=args.device, progress=True)
        report["wall_seconds"] = time.perf_counter() - t0
        report["train_step_seconds"] = result.seconds
        report["images_per_second"] = result.images_per_second
        report["steps"] = result.step
        report["load_average_after"] = os.getloadavg()
    report["config"] = config.to_dict()

    train = make_source(config.data, resolution=config.resolution, grayscale=config.grayscale, split="train",
                        seed=config.data_seed, path=config.data_path, **config.data_options)
    test = make_source(config.data, resolution=config.resolution, grayscale=config.grayscale, split="test",
                       seed=config.data_seed, path=config.data_path, **config.data_options)
    fit = train.sample(min(args.n_fit, train.size or args.n_fit))
    x_test = test.sample(min(args.n_test, test.size or args.n_test))
    wiener = WienerDenoiser.from_images(fit)
    sigmas = grid(config.sigma_min, config.sigma_max)
    t0 = time.perf_counter()
    wiener_mse = {s: denoising_mse(wiener, x_test, s) for s in sigmas}
    report["wiener_mse"] = wiener_mse

    infos = discover_checkpoints(out)
    chosen = infos if args.all_checkpoints else infos[-1:]
    report["checkpoints"] = {}
    for info in chosen:
        model = load_denoiser(info.path, device=args.device).eval()
        mse = {s: denoising_mse(model, x_test, s, device=args.device) for s in sigmas}
        report["checkpoints"][info.name] = {
            "step": info.step, "parameters": count_parameters(model), "mse": mse,
            "ratio": {s: mse[s] / wiener_mse[s] for s in sigmas},
            "sigma_max_band_power_db": band_power_db(model, x_test, config.sigma_max, device=args.device)}
    report["evaluation_seconds"] = time.perf_counter() - t0

    print(f"machine: {report['machine']}, torch {report['torch']} with {report['torch_threads']} threads")
    if "wall_seconds" in report:
        print(f"pretrain {config.preset} on {config.data}: {report['steps']} steps of {config.batch_size} images, "
              f"wall {report['wall_seconds']:.0f} s ({report['wall_seconds'] / 60:.2f} min, checkpoints included), "
              f"training steps {report['images_per_second']:.1f} images/s")
    if "load_average_before" in report:
        print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*report["load_average_before"])
              + ", after: {:.2f} {:.2f} {:.2f}".format(*report["load_average_after"])
              + " (other processes on the machine slow the run down)")
    print(f"held-out {test.name} test crops: {len(x_test)}; Wiener fitted on {len(fit)} training crops; "
          f"evaluation {report['evaluation_seconds']:.0f} s")
    names = list(report["checkpoints"])
    print("MSE / Wiener (target ≤ 1; ≤ 1.02 at σ ≤ 0.01)")
    print(f"{'σ':>9}  {'Wiener MSE':>10}  {'target':>6}" + "".join(f"  {n:>12}" for n in names))
    for s in sigmas:
        print(f"{s:>9.4g}  {wiener_mse[s]:>10.3g}  {target(s):>6.2f}"
              + "".join(f"  {report['checkpoints'][n]['ratio'][s]:>12.3f}" for n in names))
    print("power of D(σ_max·z, σ_max) relative to the data, dB, low / mid / high band (target ≤ 0 in every band)")
    for n in names:
        print(f"{n:<18}" + " / ".join(f"{v:+.2f}" for v in report["checkpoints"][n]["sigma_max_band_power_db"]))
    last = report["checkpoints"][names[-1]]
    failed = [s for s in sigmas if not last["ratio"][s] <= target(s)]
    excess = [b for b, v in zip(("low", "mid", "high"), last["sigma_max_band_power_db"]) if not v <= 0]
    report["target_met"] = not failed and not excess
    print("target: " + ("met" if report["target_met"] else "NOT met")
          + (f"; ratio above target at σ = {', '.join(f'{s:.4g}' for s in failed)}" if failed else "")
          + (f"; excess power at σ_max in the {', '.join(excess)} band" if excess else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
