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
import json
import sys

from freqlab.commands.common import add_common
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
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    add_setting_options(p, CompareConfig, skip=("seed",), title="what determines the numbers (freqlab.compare.config)")
    add_common(p, out_default=None)
    p.add_argument("--out", default=None, help="also write the result as netCDF to this path (default: none)")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.compare.study import compare, summarize, to_json

    if not args.candidates and not args.controls:
        raise ValueError("nothing to compare: give CANDIDATE paths or names, or --controls")
    ds = compare(args.reference, args.candidates, controls=args.controls, device=args.device, out=args.out,
                 progress=not args.quiet, config=CompareConfig(**setting_values(CompareConfig, args)))
    if args.json:
        print(json.dumps(to_json(ds), indent=2))
    else:
        print(summarize(ds))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
