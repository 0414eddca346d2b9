"""The analysis share of the sweep's sample mode: what the trajectory and the sample's statistics cost per batch,
against the sampler's model calls (EDM's Heun, 18 steps = 35 calls), one thread.

Usage: python benchmarks/bench_sample_mode.py [CHECKPOINT] [--batch 16]   (default: the demo's final checkpoint)
"""

import argparse
import time

import torch

from freqlab.checkpoints.store import discover_checkpoints, load_denoiser
from freqlab.measure.core import Analysis, ImageStats
from freqlab.models import sampler
from freqlab.sweep.sample_mode import Trajectory


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default=None)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.checkpoint or discover_checkpoints("runs/demo/pretrain")[-1].path
    model = load_denoiser(path).eval()
    x = torch.randn(args.batch, *model.image_shape)
    an, steps = Analysis(model.image_shape), 18
    trajectory = Trajectory(steps)

    def analysis():
        for i in range(steps):
            trajectory.update(i, an.radial(an.fft(x)))
        ImageStats(an, args.batch).update(an, x, slice(0, args.batch))

    def one_call():
        with torch.inference_mode():
            model(x, torch.full((args.batch,), 2.0))

    t_analysis, t_call = best_of(analysis), best_of(one_call)
    calls = sampler.model_calls(steps, "heun")
    print(f"batch of {args.batch}: analysis {t_analysis * 1e3:.1f} ms; one model call {t_call * 1e3:.1f} ms, "
          f"{calls} calls {calls * t_call * 1e3:.0f} ms; analysis share "
          f"{t_analysis / (t_analysis + calls * t_call) * 100:.2f} %")


if __name__ == "__main__":
    main()
