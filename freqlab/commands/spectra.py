"""``freqlab spectra``: spectra of the default data beside dead leaves, a Gaussian random field and white noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freqlab.commands.common import add_common, report
from freqlab.commands.options import add_setting_options, setting_values
from freqlab.measure.data_spectra_config import DEFAULT_SOURCES, DataSpectraConfig

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
    p.add_argument("--sources", default=None, help="comma-separated data sources (default: "
                   f"{','.join(DEFAULT_SOURCES)}; none when --data-path is given)")
    p.add_argument("--data-path", action="append", default=[], metavar="PATH",
                   help="a folder of images, a CIFAR-10 python folder or a .npy/.npz array, labelled by its name; "
                        "repeat to compare several (images are centre-cropped and downsampled to --resolution, "
                        "unless --tiles or --native)")
    p.add_argument("--tiles", action="store_true",
                   help="folders: cut every image into --resolution tiles at its own scale instead of downsampling "
                        "(photographs of any sizes, nothing resampled: the spectrum of the pixels as they are)")
    add_setting_options(p, DataSpectraConfig, skip=("seed",),
                        title="what determines the numbers (freqlab.measure.data_spectra_config)")
    add_common(p, out_default="figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from freqlab.data.sources import source_for_path
    from freqlab.measure.data_spectra import data_spectra, summarize, to_json
    from freqlab.plots import data as data_plots
    from freqlab.plots.style import save_figure
    from freqlab.runtime.outputs import check_writable_under

    if args.native and args.tiles:
        raise ValueError("--native and --tiles exclude each other: --native measures each whole image at its own "
                         "size, --tiles cuts images into --resolution tiles")
    config = DataSpectraConfig(**setting_values(DataSpectraConfig, args))
    names = args.sources if args.sources is not None else ("" if args.data_path else ",".join(DEFAULT_SOURCES))
    sources = [s.strip() for s in names.split(",") if s.strip()]
    sources += [source_for_path(p, resolution=config.resolution, grayscale=config.grayscale, split="train",
                                seed=config.seed, tiles=args.tiles, native=config.native) for p in args.data_path]
    out = Path(args.out)
    check_writable_under(out, include_self=True)
    ds = data_spectra(sources, config=config, device=args.device, out=out / "data_spectra.nc",
                      progress=not args.quiet)
    written = save_figure(data_plots.data_spectra_figure(ds), out / "data_spectra", close=True)
    report(args, summarize(ds), {"out": str(out / "data_spectra.nc"), **to_json(ds)})
    print(f"wrote {out / 'data_spectra.nc'} and {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
