"""How often ``freqlab compare`` calls two samples of the same data different (its false alarms), and which of its
tests say no to each control: the criterion's settings (1,000 images a set, α = 0.05, Holm), seeds never used by
the tests.

    python benchmarks/compare_calibration.py [--seeds 20] [--first 1000]

For each seed and each source (natural, deadleaves, grf), the held-out split against the reference (the seed
draws new images of a procedural source, new subsets, permutations and classifier weights): the share called
different estimates the family-wise false-alarm rate (α = 0.05 promised). Then, for the natural photographs, every
control with the p-value of each test, so a reader sees which test carries each "no".
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=1000)
    args = parser.parse_args(argv)
    from freqlab.compare.criterion import load_criterion
    from freqlab.compare.study import compare

    config = load_criterion().compare
    print("| source | seeds | called different | smallest Holm-adjusted p (median over seeds) | s per comparison |")
    print("|---|---|---|---|---|")
    for source in ("natural", "deadleaves", "grf"):
        wrong, smallest, start = 0, [], time.perf_counter()
        for seed in range(args.first, args.first + args.seeds):
            ds = compare(source, ["control:heldout"], config=config, seed=seed, progress=False, device="cpu")
            wrong += ds.verdict.item() == "different"
            smallest.append(min(float(ds.mmd2_p_holm.min()), float(ds.classifier_p_holm.min()),
                                float(ds.precision_p_holm.min()), float(ds.recall_p_holm.min())))
        smallest.sort()
        print(f"| {source} | {args.seeds} | {wrong} | {smallest[len(smallest) // 2]:.2f} | "
              f"{(time.perf_counter() - start) / args.seeds:.1f} |")
    ds = compare("natural", controls=True, config=config, seed=args.first, progress=False, device="cpu")
    bands = [str(b) for b in ds.band.values]
    print(f"\n| control | MMD² p (Holm), {' / '.join(bands)} | classifier p (Holm), {' / '.join(bands)} | "
          "precision p | recall p |\n|---|---|---|---|---|")
    for name in ds.candidate.values:
        row = ds.sel(candidate=name)
        fmt = lambda v: " / ".join(f"{float(x):.2g}" for x in v.values)  # noqa: E731
        print(f"| {name} | {fmt(row.mmd2_p_holm)} | {fmt(row.classifier_p_holm)} | "
              f"{float(row.precision_p_holm):.2g} | {float(row.recall_p_holm):.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
