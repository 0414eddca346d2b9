"""``freqlab spectra``: spectra of the default data beside dead leaves, a Gaussian random field and white noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freqlab.commands.common import add_common

EXAMPLES = """examples:
  freqlab spectra                                  # natural, deadleaves, grf, white -> figures/data_spectra.*
  freqlab spectra --sources natural,grf --n-images 4096 --window kaiser --out /tmp/spectra
  freqlab spectra --data-path real/ --data-path samples/ --out /tmp/cmp  # two folders side by side, one file
  freqlab spectra --data-path photos/ --tiles --resolution 64          # 64x64 tiles at the photos' own scale
  freqlab spectra --data-path photos/ --native                         # every photo whole, at its own size
  freqlab spectra --data-path real/ --data-path samples/ --native      # mixed sizes, one axis, one file
  freqlab spectra --sources natural --data-path images.npz             # the embedded photos beside your array
"""


def register(sub) -> None:
    p = sub.add_parser("spectra", help="spectra of data sources with confidence bands and fitted slopes",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", default=None, help="comma-separated data sources (default: natural,deadleaves,grf,"
                   "white; none when --data-path is given)")
    p.add_argument("--data-path", action="append", default=[], metavar="PATH",
                   help="a folder of images, a CIFAR-10 python folder or a .npy/.npz array, labelled by its name; "
                        "repeat to compare several (images are centre-cropped and downsampled to --resolution, "
                        "unless --tiles or --native)")
    p.add_argument("--tiles", action="store_true",
                   help="folders: cut every image into --resolution tiles at its own scale instead of downsampling "
                        "(photographs of any sizes, nothing resampled: the spectrum of the pixels as they are)")
    p.add_argument("--native", action="store_true",
                   help="measure every image whole at its own size (no crop, no resize; sizes and aspect ratios "
                        "may differ), all on one frequency axis: bins of width 1/N cycles/pixel, N the smallest "
                        "longer side of any image in the run (generated --sources are made at --resolution)")
    p.add_argument("--n-images", type=int, default=1024, help="images per source (default 1024)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--resolution", type=int, default=32, help="image size in pixels (default 32): of the generated "
                   "sources, and of --data-path images unless --native")
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--window", default="hann", help="window of the spectra, each image's mean removed first: hann "
                   "(default, freqlab's convention, as in sweep and finetune), kaiser, hamming, blackman or none")
    add_common(p, out_default="figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.data.sources import source_for_path
    from freqlab.measure import data_spectra as dataspectra
    from freqlab.plots import data as data_plots
    from freqlab.plots.style import save_figure
    from freqlab.runtime import results
    from freqlab.runtime.devices import resolve_device

    if args.native and args.tiles:
        raise ValueError("--native and --tiles exclude each other: --native measures each whole image at its own "
                         "size, --tiles cuts images into --resolution tiles")
    names = args.sources if args.sources is not None else ("" if args.data_path else "natural,deadleaves,grf,white")
    sources = [s.strip() for s in names.split(",") if s.strip()]
    sources += [source_for_path(p, resolution=args.resolution, grayscale=args.grayscale, split="train",
                                seed=args.seed, tiles=args.tiles, native=args.native) for p in args.data_path]
    ds = dataspectra.data_spectra(
        sources, n_images=args.n_images, batch_size=args.batch_size, resolution=args.resolution,
        grayscale=args.grayscale, window=None if args.window == "none" else args.window, native=args.native,
        seed=args.seed, device=resolve_device(args.device), progress=not args.quiet,
    )
    out = Path(args.out)
    nc = results.save(ds, out / "data_spectra.nc")
    written = save_figure(data_plots.data_spectra_figure(ds), out / "data_spectra", close=True)
    print(dataspectra.summary(ds))
    print(f"wrote {nc} and {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
