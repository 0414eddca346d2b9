"""Speed of freqlab's radial power spectrum against the bare FFT and the per-image pattern of common scripts.

Measures, in one run on the same inputs (float32, 1 channel):
  * floor: ``torch.fft.rfft2`` plus ``|X|²``, the least any RAPS must do (the fastest of three ways to compute
    ``|X|²``: ``Xr² + Xi²`` on the real view, the same with an in-place multiply-add, ``X·conj(X)``);
  * freqlab ``radial_power_spectrum`` with no window and with a Hann window, as a ratio to the floor;
  * the per-image pattern of pysteps' ``rapsd`` and most papers' scripts (numpy ``fft2``, ``fftshift``, integer
    radius, one boolean mask per radius), reimplemented here as the baseline (run on a subset of images);
and images/s for each. Usage: ``python benchmarks/bench_spectral.py [--device cuda] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from freqlab.spectral import radial_power_spectrum


def per_image_masks(images: np.ndarray) -> np.ndarray:
    """The common script pattern: one image at a time, fftshift, integer radius, a boolean mask per radius."""
    out = []
    for img in images:
        h, w = img.shape
        power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2 / (h * w)
        yy, xx = np.indices((h, w))
        r = np.sqrt((yy - h // 2) ** 2 + (xx - w // 2) ** 2).round().astype(int)
        out.append([power[r == k].mean() for k in range(min(h, w) // 2 + 1)])
    return np.asarray(out)


def best_time(fn, repeats: int, sync) -> float:
    fn()  # warm-up (caches, plans)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-images", type=int, default=32, help="images timed for the per-image baseline")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(f"{'case':<12} {'floor s':>9} {'freqlab s':>10} {'ratio':>6} {'hann s':>8} {'ratio':>6} {'img/s':>9} {'baseline img/s':>15} {'speed-up':>9}")
    torch.manual_seed(0)
    for n, size in ((1024, 64), (256, 256)):
        x = torch.randn(n, 1, size, size, device=device)

        def floor_indexed():
            r = torch.view_as_real(torch.fft.rfft2(x))
            return r[..., 0].square() + r[..., 1].square()

        def floor_inplace():
            r = torch.view_as_real(torch.fft.rfft2(x))
            p = r[..., 0].square()
            return p.addcmul_(r[..., 1], r[..., 1])

        def floor_conj():
            f = torch.fft.rfft2(x)
            return (f * f.conj()).real

        # the floor is the fastest of three ways to get |X|²: a slow floor would flatter freqlab's ratio
        t_floor = min(best_time(f, args.repeats, sync) for f in (floor_indexed, floor_inplace, floor_conj))
        t_plain = best_time(lambda: radial_power_spectrum(x), args.repeats, sync)
        t_hann = best_time(lambda: radial_power_spectrum(x, window="hann"), args.repeats, sync)
        subset = x[: args.baseline_images, 0].cpu().numpy()
        t_base = best_time(lambda: per_image_masks(subset), max(1, args.repeats // 2), lambda: None)
        base_rate = len(subset) / t_base
        rate = n / t_plain
        print(
            f"{n}x{size}x{size:<5} {t_floor:9.4f} {t_plain:10.4f} {t_plain / t_floor:6.2f} {t_hann:8.4f} "
            f"{t_hann / t_floor:6.2f} {rate:9.0f} {base_rate:15.0f} {rate / base_rate:8.0f}x"
        )


if __name__ == "__main__":
    main()
