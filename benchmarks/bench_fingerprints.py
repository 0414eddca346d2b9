"""What content fingerprints cost a sweep: the digest of every image it reads and the fingerprint of every
checkpoint's weights, as a share of the sweep's wall time (issue: at most 2 %).

Runs the demo's sweep (its config and σ grid, the natural photographs) over a run folder once, timing every call
of ``digest_images`` (the measured images read and digested before any work), ``ImageDigest.check`` (each batch
checked as the measurement reads it), ``DigestAsRead.add`` (the references' images hashed as their fit reads them)
and ``module_fingerprint`` (the weights as loaded) inside it: four disjoint costs. Then it resumes the complete
file, which loads every checkpoint again to fingerprint it and measures nothing, and reports that time too.

    python benchmarks/bench_fingerprints.py runs/demo/pretrain --out benchmarks/results/fingerprint_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _timed(owner, name: str, spent: dict) -> None:
    """Replace ``owner.name`` by a wrapper that adds its wall time to ``spent[name]``."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder of checkpoints (e.g. runs/demo/pretrain)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the measurements")
    parser.add_argument("--n-images", type=int, default=None, help="images per (checkpoint, σ) (demo's default)")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        parser.error(f"{args.run} is not a run folder")

    import torch

    from freqlab.checkpoints import identity
    from freqlab.data.digest import DigestAsRead, ImageDigest
    from freqlab.demo import demo_settings
    from freqlab.sweep import study

    settings = demo_settings()
    config = settings.sweep if args.n_images is None else replace(settings.sweep, n_images=args.n_images,
                                                                  batch_size=min(args.n_images, 64))
    spent: dict[str, float] = {}
    _timed(study, "digest_images", spent)
    _timed(ImageDigest, "check", spent)
    _timed(DigestAsRead, "add", spent)
    _timed(identity, "module_fingerprint", spent)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.nc"
        start = time.perf_counter()
        ds = study.sweep(args.run, "natural", settings.n_sigmas, config=config, device="cpu", out=out, progress=False)
        sweep_s = time.perf_counter() - start
        during = dict(spent)
        spent.clear()
        start = time.perf_counter()
        study.sweep(args.run, "natural", settings.n_sigmas, config=config, device="cpu", out=out, progress=False)
        resume_s = time.perf_counter() - start
    cost = sum(during.values())
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "checkpoints": int(ds.sizes["checkpoint"]), "sigmas": int(ds.sizes["sigma"]), "n_images": config.n_images,
        "modes": list(config.modes), "sweep_s": round(sweep_s, 2),
        "fingerprint_s": {k: round(v, 3) for k, v in during.items()}, "fingerprint_share": round(cost / sweep_s, 4),
        "resume_of_the_complete_file_s": round(resume_s, 2),
        "resume_fingerprint_s": {k: round(v, 3) for k, v in spent.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
