"""``freqlab compare``: is a set of images distinguishable from a reference set, and in which band?

Each image is band-passed (low, mid, high; DC excluded) and taken whole, and described by a fixed feature map
(freqlab.compare.features). Per band, the candidate is compared with the reference by a distance with its
permutation null (unbiased MMD²) and a classifier two-sample test; fidelity and diversity by precision and recall.
Every p-value of a candidate is adjusted together (Holm); the verdict is "indistinguishable" at this sample size,
or "different" with the bands that differ. --controls adds the controls made from the reference: a held-out split
(must be indistinguishable), Gaussian noise with the data's spectrum, spectrum-matched dead leaves, one image
repeated and low-pass data (each must be different).
"""

from __future__ import annotations

import argparse
import sys

from freqlab.commands.common import add_common, report
from freqlab.commands.options import add_setting_options, setting_values
from freqlab.compare.config import CompareConfig

EXAMPLES = """examples:
  freqlab compare natural --controls                       # the embedded photographs against their controls
  freqlab compare real/ samples/ --n-images 5000           # two folders of images
  freqlab compare data.npz gen-a.npz gen-b.npz --json      # several candidates, one JSON document on stdout
  freqlab compare natural control:lowpass control:heldout  # single controls by name
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="band-by-band two-sample comparison of image sets, with controls",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", metavar="REFERENCE", help="a data source name, a folder of images or a .npy/.npz array")
    p.add_argument("candidates", nargs="*", metavar="CANDIDATE",
                   help="the same kinds of input, or control:NAME (heldout, gaussian, deadleaves, repeated, lowpass)")
    p.add_argument("--controls", action="store_true", help="add every control of the reference as a candidate")
    p.add_argument("--fid", action="store_true",
                   help="also the standard FID and KID of each candidate (not the controls) through torch-fidelity, "
                        "when its Inception weights are already in the local torch hub cache (else one line says so)")
    add_setting_options(p, CompareConfig, skip=("seed",), title="what determines the numbers (freqlab.compare.config)")
    add_common(p, out_default=None)
    p.add_argument("--out", default=None, help="also write the result as netCDF to this path (default: none)")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.compare.study import compare, summarize, to_json

    if not args.candidates and not args.controls:
        raise ValueError("nothing to compare: give CANDIDATE paths or names, or --controls")
    config = CompareConfig(**setting_values(CompareConfig, args))
    ds = compare(args.reference, args.candidates, controls=args.controls, device=args.device, out=args.out,
                 progress=not args.quiet, config=config)
    doc = to_json(ds)
    text = summarize(ds)
    if args.fid:
        standard = _standard(args, ds, config)
        for entry in doc["candidates"]:
            entry["standard"] = standard.get(entry["name"])
        text += "".join(f"\n  {name}: " + (value if isinstance(value, str) else
                        f"FID {value['fid']:.2f}, KID {value['kid']:.4f} ± {value['kid_std']:.4f}")
                        for name, value in standard.items())
    report(args, text, doc)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _standard(args, ds, config: CompareConfig) -> dict:
    """``{candidate: FID/KID dict, or the line saying why not}`` for the candidates that are not controls."""
    from freqlab.compare.standard import standard_metrics
    from freqlab.compare.study import CONTROL_PREFIX, _as_source

    reference = _as_source(args.reference, config, "reference")
    n = int(ds.attrs["n_images_per_set"])
    out = {}
    for item, name in zip(args.candidates, ds.candidate.values):
        if not item.startswith(CONTROL_PREFIX):
            out[str(name)] = standard_metrics(reference, _as_source(item, config, str(name)), n, device=args.device)
    return out
