"""Speed and memory of ``freqlab compare``: a candidate of N RGB 32×32 images (a .npy array of dead-leaves images)
against the embedded natural crops (N a set: the reference reads 2N), for N = 2,000 and 10,000, each in a fresh
process; wall time and peak resident memory of that process.

    python benchmarks/bench_compare.py [--device cuda] [--sizes 2000,10000]

Memory should not grow with N (only a few dozen features per image and band are kept; the kernel and k-NN
statistics use fixed-size subsets).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# the command line in this process, then its own peak resident memory on stderr
PEAK = ("import resource, sys; from freqlab.cli import main; rc = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="2000,10000")
    args = parser.parse_args(argv)
    import numpy as np

    from freqlab.data.sources import make_source

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        leaves = make_source("deadleaves", resolution=32, seed=3)
        array = Path(tmp) / "candidate.npy"
        parts = [((leaves.images(range(i, min(i + 1000, max(sizes)))) + 1) * 127.5).round().clamp(0, 255)
                 .byte().permute(0, 2, 3, 1).numpy() for i in range(0, max(sizes), 1000)]
        np.save(array, np.concatenate(parts))
        print("| N a set | wall time (s) | peak memory (MiB) | verdict |\n|---|---|---|---|")
        for n in sizes:
            cmd = [sys.executable, "-c", PEAK, "compare", "natural", str(array), "--n-images", str(n),
                   "--device", args.device, "--quiet", "--json"]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - start
            peak = int(done.stderr.rsplit("PEAK", 1)[1])  # KiB (Linux)
            verdict = json.loads(done.stdout)["candidates"][0]["verdict"]
            print(f"| {n:,} | {seconds:.1f} | {peak / 1024:.0f} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
