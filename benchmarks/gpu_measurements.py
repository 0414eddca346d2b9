"""Measurements on a CUDA GPU for the README: does the GPU path agree with the CPU, and how fast is each stage?

1. agreement: radial spectra and a whole sweep (tiny UNet, white noise) on the GPU against the CPU;
2. pre-training images/s of the training steps for the ``cpu-small`` and ``cifar`` presets (bf16 autocast);
3. the sweep over the short ``cifar`` trajectory of step 2: images/s (one-step outputs per second), and the
   analysis share from the same sweep with the spectra switched off, with and without bf16 autocast;
4. GAN fine-tuning (D2O-F, ``conv`` frozen) images/s from the ``cpu-small`` and ``cifar`` checkpoints.

The short runs here measure speed, not quality (a few hundred steps). Usage::

    python benchmarks/gpu_measurements.py --out /tmp/gpu [--json gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DEVICE = "cuda"


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _timed(fn):
    _sync()
    t0 = time.perf_counter()
    value = fn()
    _sync()
    return value, time.perf_counter() - t0


def agreement(out: Path) -> dict:
    from freqlab import spectral
    from freqlab.checkpoints.store import save_checkpoint
    from freqlab.models.denoisers import EDMDenoiser, build_unet
    from freqlab.sweep import study as sweep

    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cpu = spectral.radial_power_spectrum(x).power
    gpu = spectral.radial_power_spectrum(x.to(DEVICE)).power.cpu()
    torch.manual_seed(0)
    unet = build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                      attention_head_dim=8)
    save_checkpoint(out / "tiny" / "checkpoints" / "step-000000", EDMDenoiser(unet, sigma_min=0.01, sigma_max=20.0),
                    metadata={"step": 0, "images_seen": 0, "ema": True, "kind": "pretrain"})
    kw = dict(n_images=64, batch_size=32, progress=False)
    a = sweep.sweep(out / "tiny", "white", [0.05, 0.5, 20.0], device="cpu", **kw)
    b = sweep.sweep(out / "tiny", "white", [0.05, 0.5, 20.0], device=DEVICE, **kw)
    rel = float(abs(a.output_power - b.output_power).max() / abs(a.output_power).max())
    return {"raps_max_rel_diff": float(((cpu - gpu).abs() / cpu.abs().clamp_min(1e-12)).max()),
            "sweep_output_power_max_rel_diff": rel}


def pretrain_speed(out: Path, preset: str, steps: int, **overrides) -> dict:
    from freqlab.pretrain.config import make_config
    from freqlab.pretrain.loop import pretrain

    config = make_config(preset, steps=steps, n_checkpoints=4, **overrides)
    result, wall = _timed(lambda: pretrain(config, out / f"pretrain-{preset}", overwrite=True, device=DEVICE,
                                           progress=False))
    return {"preset": preset, "steps": result.step, "batch_size": config.batch_size,
            "images_per_second": result.images_per_second, "wall_seconds": wall, "final": str(result.final)}


def sweep_speed(run: Path, n_images: int, batch_size: int, n_sigmas: int, autocast: bool) -> dict:
    from freqlab.checkpoints.store import discover_checkpoints
    from freqlab.sweep import study as sweep

    n_ckpt = len(discover_checkpoints(run))
    kw = dict(n_images=n_images, batch_size=batch_size, device=DEVICE, progress=False, autocast=autocast)
    sweep.sweep(run, "natural", 2, n_images=batch_size, batch_size=batch_size, device=DEVICE, progress=False,
                autocast=autocast)  # warm-up: CUDA context, cuFFT plans, kernels
    _, on = _timed(lambda: sweep.sweep(run, "natural", n_sigmas, **kw))
    _, off = _timed(lambda: sweep.sweep(run, "natural", n_sigmas, spectra=False, **kw))
    outputs = n_ckpt * n_sigmas * 2 * n_images  # both modes
    return {"checkpoints": n_ckpt, "n_images": n_images, "batch_size": batch_size, "n_sigmas": n_sigmas,
            "autocast_bf16": autocast, "seconds_with_spectra": on, "seconds_without_spectra": off,
            "analysis_share": (on - off) / on, "outputs_per_second": outputs / on}


def finetune_speed(out: Path, checkpoint: str, name: str, n_images: int, batch_size: int) -> dict:
    from freqlab.finetune.loop import finetune

    run, wall = _timed(lambda: finetune(checkpoint, out / f"finetune-{name}", n_images=n_images, batch_size=batch_size,
                                        log_every=n_images // 2, device=DEVICE, overwrite=True, progress=False))
    ips = run.log.images_per_second.values[1:]
    return {"init": name, "images": n_images, "batch_size": batch_size, "frozen_share": run.freeze.frozen_share,
            "images_per_second": float(ips.mean()), "wall_seconds": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/freqlab-gpu")
    p.add_argument("--json", default=None)
    p.add_argument("--cifar-steps", type=int, default=400)
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that the script runs")
    args = p.parse_args(argv)
    global DEVICE
    if args.smoke:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("no CUDA GPU: nothing to measure (--smoke runs tiny sizes on the CPU)", file=sys.stderr)
        return 2
    small = args.smoke
    out = Path(args.out)
    report = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (smoke run on CPU)",
              "torch": torch.__version__}
    print(f"GPU {report['gpu']}, torch {report['torch']}", flush=True)

    report["agreement"] = agreement(out)
    print("agreement GPU vs CPU:", report["agreement"], flush=True)

    report["pretrain"] = [pretrain_speed(out, "cpu-small", 3 if small else 300),
                          pretrain_speed(out, "cifar", 3 if small else args.cifar_steps, state_every=200,
                                         log_every=100, **(dict(channels=(16, 16), batch_size=4) if small else {}))]
    for r in report["pretrain"]:
        print(f"pretrain {r['preset']}: {r['steps']} steps x {r['batch_size']}: {r['images_per_second']:.0f} "
              f"images/s (training steps), wall {r['wall_seconds']:.1f} s", flush=True)

    run = out / "pretrain-cifar"
    report["sweep"] = [sweep_speed(run, 16 if small else 2048, 8 if small else 512, 3 if small else 13, autocast)
                       for autocast in (False, True)]
    for r in report["sweep"]:
        print(f"sweep {r['checkpoints']} ckpts x {r['n_sigmas']} σ x 2 modes x {r['n_images']} images "
              f"(batch {r['batch_size']}, bf16 {r['autocast_bf16']}): {r['seconds_with_spectra']:.1f} s with spectra, "
              f"{r['seconds_without_spectra']:.1f} s without; analysis share {100 * r['analysis_share']:.1f}%; "
              f"{r['outputs_per_second']:.0f} one-step outputs/s", flush=True)

    n, b = (32, 8) if small else (8192, 64)
    report["finetune"] = [finetune_speed(out, report["pretrain"][0]["final"], "cpu-small", n, b),
                          finetune_speed(out, report["pretrain"][1]["final"], "cifar", n // 2, b)]
    for r in report["finetune"]:
        print(f"finetune D2O-F from {r['init']}: {r['images']} images, batch {r['batch_size']}, frozen "
              f"{100 * r['frozen_share']:.1f}%: {r['images_per_second']:.0f} images/s, wall {r['wall_seconds']:.1f} s",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
