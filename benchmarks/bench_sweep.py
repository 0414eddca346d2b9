"""Cost of the sweep's spectral analysis next to the model, and its memory against the number of images.

Measures, in one run:
  * **analysis share**: the same sweep (one checkpoint, every σ, both modes) with ``spectra=True`` and with
    ``spectra=False`` (models, data and noise exactly the same, no analysis). Runs alternate on/off and the best of
    ``--repeats`` is kept; share = (t_on − t_off) / t_on, in wall time and in the process's CPU time (on a machine
    shared with other work the wall-time difference is mostly noise). A third estimate times the analysis with a
    model that costs nothing and compares it with the model's time per image. Target ≤ 5 %.
  * **images/s**: one-step forward passes per second with the analysis on (n_images × n_σ × n_modes / t_on).
  * **peak memory** of a sweep over 1k and 8k images, each in a fresh subprocess: the peak resident set counted
    from the sweep's start (Linux ``clear_refs``; else ``ru_maxrss``). The memory runs use the Wiener filter (cheap,
    so 8k images × every σ takes a minute; a model's own memory is one batch of activations whatever the number
    of images; ``--memory-model unet`` for the UNet) on ``grf`` data of the same shape (``--memory-data``), with
    glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_=65536``) so that the resident set tracks live memory.
  * the time of one atomic save of the results file.

The model is freqlab's ``cpu-small`` UNet (from the pre-training preset when ``freqlab.pretrain.loop`` has it, else
``build_unet()`` defaults) with random weights inside EDM preconditioning; timing does not depend on the weights.

Usage: ``python benchmarks/bench_sweep.py [--device cpu|cuda] [--n-images 256] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def cpu_small_unet(resolution: int, channels: int):
    """The cpu-small architecture with random weights, and where it came from."""
    from freqlab.models.denoisers import build_unet

    try:
        from freqlab.pretrain.config import make_config

        config = make_config("cpu-small", resolution=resolution).unet_config(channels)
        source = "the cpu-small pre-training preset"
    except (ImportError, AttributeError, TypeError, ValueError):
        config, source = {"sample_size": resolution, "in_channels": channels}, "build_unet() defaults"
    torch.manual_seed(0)
    return build_unet(**config), source


def make_model(kind: str, data, device):
    from freqlab.models.denoisers import EDMDenoiser
    from freqlab.models.linear import WienerDenoiser

    c, h, w = data.shape
    if kind == "wiener":
        return WienerDenoiser.from_images(data.sample(256, start=100_000 if data.size is None else 0)).to(device), \
            "WienerDenoiser fitted on 256 images"
    unet, source = cpu_small_unet(h, c)
    model = EDMDenoiser(unet).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    return model, f"EDMDenoiser(UNet2DModel from {source}, {n_params / 1e6:.2f} M parameters)"


class NearlyFree(torch.nn.Module):
    """``D(x, σ) = 0.9·x``: a model that costs nothing, so a sweep's time is data, noise and analysis."""

    def __init__(self, shape):
        super().__init__()
        self.image_shape, self.sigma_min, self.sigma_max = tuple(shape), 0.002, 80.0

    def forward(self, x, sigma):
        return 0.9 * x


def memory_child(args) -> None:
    """Run one sweep and print its peak resident memory (this process only) as JSON."""
    from freqlab.data.sources import make_source
    from freqlab.sweep.study import sweep

    device = torch.device(args.device)
    data = make_source(args.memory_data, resolution=args.resolution, grayscale=args.grayscale, split="test")
    model, _ = make_model(args.memory_model, data, device)
    baseline = _status_mb("VmRSS")
    reset = _reset_peak()  # Linux: peak RSS from here on, so set-up (imports, photos) does not mask the sweep's
    start = time.perf_counter()
    sweep({"m": model}, data, args.n_sigmas, n_images=args.child_images, batch_size=args.batch_size,
          device=device, progress=False)
    elapsed = time.perf_counter() - start
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    print(json.dumps({"images": args.child_images, "peak_rss_mb": peak, "baseline_mb": baseline,
                      "peak_is_sweep_only": reset, "gpu_peak_mb": gpu_mb, "seconds": elapsed}))


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_mb("VmHWM") is not None
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="natural")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--grayscale", action="store_true")
    parser.add_argument("--n-images", type=int, default=256, help="images of the timed sweeps")
    parser.add_argument("--n-sigmas", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="on/off pairs; the best of each is kept")
    parser.add_argument("--memory-images", default="1000,8000")
    parser.add_argument("--memory-model", default="wiener", choices=("wiener", "unet"))
    parser.add_argument("--memory-data", default="grf",
                        help="data of the memory runs (default grf: the natural source's crop temporaries vary "
                             "by ±100 MiB from batch to batch and would hide the sweep's own memory)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--child-images", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_images is not None:
        memory_child(args)
        return

    from freqlab.data.sources import make_source
    from freqlab.runtime import results
    from freqlab.sweep.study import sweep

    device = torch.device(args.device)
    data = make_source(args.data, resolution=args.resolution, grayscale=args.grayscale, split="test")
    model, description = make_model("unet", data, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    modes = ("denoise", "generate")
    # the analysis per checkpoint; the full-covariance linear reference is fitted once per sweep, whatever the number
    # of checkpoints, and is timed on its own below
    kwargs = dict(n_images=args.n_images, batch_size=args.batch_size, device=device, progress=False, modes=modes,
                  linear_reference=0)

    cpu_on, cpu_off = [], []

    def timed(spectra: bool) -> tuple[float, object]:
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        ds = sweep({"m": model}, data, args.n_sigmas, spectra=spectra, **kwargs)
        sync()
        (cpu_on if spectra else cpu_off).append(time.process_time() - cpu)
        return time.perf_counter() - start, ds

    timed(False)  # warm-up: imports, model, data caches
    cpu_off.clear()
    on, off = [], []
    ds = None
    for _ in range(args.repeats):
        t, ds = timed(True)
        on.append(t)
        off.append(timed(False)[0])
    t_on, t_off = min(on), min(off)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results.save(ds, os.path.join(tmp, "sweep.nc"))
        t_save = time.perf_counter() - start
    forwards = args.n_images * args.n_sigmas * len(modes)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"model: {description}")
    print(f"sweep: {args.n_images} images of {data.name} {tuple(data.shape)} x {args.n_sigmas} σ x {len(modes)} modes "
          f"= {forwards} one-step forwards, batch {args.batch_size}, best of {args.repeats}")
    print(f"  spectra on : {t_on:8.2f} s   ({forwards / t_on:8.1f} images/s)   runs: "
          + ", ".join(f"{t:.2f}" for t in on))
    print(f"  spectra off: {t_off:8.2f} s   ({forwards / t_off:8.1f} images/s)   runs: "
          + ", ".join(f"{t:.2f}" for t in off))
    share = (t_on - t_off) / t_on
    print(f"  analysis share: {100 * share:.1f} % of the sweep's wall time (target <= 5 %)")
    c_on, c_off = min(cpu_on), min(cpu_off)
    print(f"  CPU time of this process (less sensitive to other processes on a shared machine): on {c_on:.2f} s, "
          f"off {c_off:.2f} s -> analysis share {100 * (c_on - c_off) / c_on:.1f} %")

    # the same with a model that costs nothing: the analysis time per output image without the model's noise
    free = NearlyFree(data.shape)
    free_on, free_off = [], []
    for _ in range(args.repeats + 1):
        for spectra, store in ((True, free_on), (False, free_off)):
            sync()
            start = time.perf_counter()
            sweep({"m": free}, data, args.n_sigmas, spectra=spectra, **kwargs)
            sync()
            store.append(time.perf_counter() - start)
    per_image = (min(free_on) - min(free_off)) / forwards
    model_per_image = t_off / forwards
    print(f"  with a nearly free model (0.9·x): on {min(free_on):.2f} s, off {min(free_off):.2f} s -> analysis "
          f"{1e3 * per_image:.3f} ms per output image; the UNet sweep without analysis takes "
          f"{1e3 * model_per_image:.2f} ms per image -> analysis share "
          f"{100 * per_image / (per_image + model_per_image):.1f} %")
    print(f"  one atomic save of the results file: {t_save:.2f} s ({len(ds.data_vars)} variables)")
    from freqlab.models.linear import LinearMMSEDenoiser

    n_fit = 8 * int(np.prod(data.shape))  # the sweep's default
    if n_fit <= 8 * 4096:
        start = time.perf_counter()
        LinearMMSEDenoiser.from_source(data, n_fit, start=args.n_images, device=device)
        print(f"  once per sweep: fitting the full-covariance linear reference on {n_fit} images: "
              f"{time.perf_counter() - start:.1f} s (linear_reference=0 skips it)")

    print(f"peak memory, fresh process per run, model {args.memory_model}, data {args.memory_data} "
          f"{tuple(data.shape)}, {args.n_sigmas} σ x 2 modes, batch {args.batch_size}:")
    rows = []
    for n in (int(v) for v in args.memory_images.split(",")):
        cmd = [sys.executable, __file__, "--child-images", str(n), "--device", args.device,
               "--memory-data", args.memory_data,
               "--resolution", str(args.resolution), "--n-sigmas", str(args.n_sigmas), "--batch-size",
               str(args.batch_size), "--memory-model", args.memory_model]
        cmd += ["--grayscale"] if args.grayscale else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        # glibc's adaptive mmap threshold keeps freed per-batch temporaries in the heap in an order-dependent way,
        # which moves the peak of identical runs by up to ±150 MiB; a fixed threshold makes RSS track live memory
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "65536")}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        rows.append(row)
        gpu = f", GPU peak {row['gpu_peak_mb']:.0f} MiB" if row["gpu_peak_mb"] is not None else ""
        base = (f" (process before the sweep: {row['baseline_mb']:.1f} MiB; peak counted from the sweep's start)"
                if row["peak_is_sweep_only"] else " (whole process)")
        print(f"  {n:6d} images: peak RSS {row['peak_rss_mb']:7.1f} MiB{gpu}{base}  ({row['seconds']:.1f} s)")
    if len(rows) >= 2:
        growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        print(f"  growth from {rows[0]['images']} to {rows[-1]['images']} images: {growth:+.1f} MiB "
              f"({100 * growth / rows[0]['peak_rss_mb']:+.1f} %)")


if __name__ == "__main__":
    main()
