"""``compare``: is a set of images distinguishable from a reference set, and in which band?

Every image is band-passed (low / mid / high, DC excluded, and the whole image) and described by the fixed feature
map of :mod:`freqlab.compare.features`. The reference gives two halves, ``R1`` and ``R2`` (images ``0..N-1`` and
``N..2N-1``); each candidate gives ``N`` images ``C``. Per band, in standardised units (the sets compared, pooled):

* **distance with its null**: the unbiased MMD² of ``R1`` and ``C`` (Gaussian kernel, a random subset of
  ``kernel_images`` a set) with its permutation p-value; ``mmd2_reference`` is the MMD² of ``R1`` and ``R2``, what
  two samples of the data score;
* **classifier test**: an MLP trained on half of ``R1`` and ``C``, scored on the other halves (exact binomial p);
* **fidelity and diversity**: precision and recall (k-NN balls) of ``C`` beside those of ``R2``; on the whole image
  each is a one-sided test (Fisher's exact for precision, McNemar's for recall), so a collapsed set is caught even
  when its one image is perfect.

The p-values of a candidate (MMD and classifier in every band, precision and recall) are adjusted together by
Holm's method; the candidate is ``different`` when any adjusted p-value is at most ``alpha``, and the bands that
differ are those whose MMD or classifier test does (``diversity``/``fidelity`` when recall/precision do). Else it is
``indistinguishable`` at this sample size, which is not "equal".

Controls (:mod:`freqlab.compare.controls`) are built from held-out reference images ``2N..3N-1``. Images are read
in batches and only their features are kept (a few dozen numbers per image and band), so memory does not grow with
the images; the kernel and k-NN statistics use fixed-size subsets.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import xarray as xr

from freqlab.compare import features as feature_map
from freqlab.compare import twosample
from freqlab.compare.config import CompareConfig
from freqlab.compare.controls import CONTROLS, ControlMaker
from freqlab.data.base import DataSource
from freqlab.data.sources import DATA_SOURCES, make_source, source_for_path
from freqlab.runtime import results
from freqlab.runtime.devices import resolve_device
from freqlab.runtime.outputs import holding
from freqlab.runtime.rng import sample_seed
from freqlab.runtime.settings import configure

__all__ = ["compare", "summarize", "to_json", "CONTROL_PREFIX", "TensorImages"]

#: A candidate written ``control:NAME`` is the control NAME of the reference.
CONTROL_PREFIX = "control:"


class TensorImages(DataSource):
    """Images held in memory, ``(N, C, H, W)`` float, read as they are (not clipped: a generator's outputs may
    leave [-1, 1], and clipping would change what is compared)."""

    def __init__(self, name: str, images: torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"{name}: images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError(f"{name}: the images hold NaN or infinite values")
        self.data = images.detach().float().cpu()
        super().__init__(name, tuple(self.data.shape[1:]), int(self.data.shape[0]), {})

    def _images(self, idx):
        return self.data[torch.as_tensor(idx)]


def _as_source(item: Any, cfg: CompareConfig, name: str | None = None) -> DataSource:
    """A DataSource of a name, a path, a tensor or a DataSource."""
    if isinstance(item, DataSource):
        return item
    if isinstance(item, torch.Tensor):
        return TensorImages(name or "images", item)
    if isinstance(item, (str, os.PathLike)):
        text = str(item)
        if text in DATA_SOURCES and not Path(text).exists():
            return make_source(text, resolution=cfg.resolution, grayscale=cfg.grayscale, split=cfg.split,
                               seed=cfg.seed)
        return source_for_path(text, resolution=cfg.resolution, grayscale=cfg.grayscale, split=cfg.split)
    raise ValueError(f"cannot compare a {type(item).__name__}: give a source name ({', '.join(DATA_SOURCES)}), a "
                     "folder or .npy/.npz path, an (N, C, H, W) tensor or a DataSource")


def _candidates(candidates: Any, controls: Any) -> list[tuple[str, Any]]:
    """``[(name, item)]``: the candidates in order, then the controls asked for (``True``: all of them)."""
    if isinstance(candidates, Mapping):
        items = [(str(k), v) for k, v in candidates.items()]
    elif isinstance(candidates, (str, os.PathLike, torch.Tensor, DataSource)):
        items = [(None, candidates)]
    else:
        items = [(None, c) for c in candidates]
    named = []
    for name, item in items:
        if name is None:
            name = (item[len(CONTROL_PREFIX):] if isinstance(item, str) and item.startswith(CONTROL_PREFIX)
                    else getattr(item, "name", None) or (Path(str(item)).stem if isinstance(item, (str, os.PathLike))
                                                         else f"candidate{len(named)}"))
        named.append((name, item))
    wanted = CONTROLS if controls is True else tuple(controls or ())
    named += [(c, CONTROL_PREFIX + c) for c in wanted if c not in {n for n, _ in named}]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}; pass a {{name: images}} mapping")
    if not named:
        raise ValueError("nothing to compare: give at least one candidate, or controls")
    return named


def _batches(source: DataSource, start: int, n: int, batch: int) -> Iterator[tuple[range, torch.Tensor]]:
    for i in range(start, start + n, batch):
        idx = range(i, min(i + batch, start + n))
        yield idx, source.images(list(idx))


def _features(batches, bands, device, bar, shape) -> dict[str, torch.Tensor]:
    """Features per band of every batch, on ``device``."""
    parts: dict[str, list[torch.Tensor]] = {}
    for x in batches:
        if tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"images of shape {tuple(x.shape[1:])} cannot be compared with the reference's "
                             f"{tuple(shape)}: give sets of one shape (resolution and channels)")
        for band, f in feature_map.features(x.to(device), bands).items():
            parts.setdefault(band, []).append(f)
        bar.update(len(x))
    return {band: torch.cat(v) for band, v in parts.items()}


def _set_size(reference: DataSource, cfg: CompareConfig, needs_heldout: bool) -> int:
    """Images per set: ``n_images``, or fewer when a finite reference cannot give 2N (3N with controls)."""
    need = 3 if needs_heldout else 2
    if reference.size is None or reference.size >= need * cfg.n_images:
        return cfg.n_images
    n = reference.size // need
    if n < 8:
        raise ValueError(f"the reference {reference.name!r} has {reference.size} images; a comparison needs at "
                         f"least {need * 8} ({need} sets of 8{', with controls' if needs_heldout else ''})")
    print(f"compare: the reference {reference.name!r} has {reference.size} images: {n} per set "
          f"(asked {cfg.n_images})", file=sys.stderr)
    return n


@holding("out")
def compare(reference: Any, candidates: Any = (), *, controls: Any = False, config: CompareConfig | None = None,
            device="auto", out: str | os.PathLike | None = None, progress: bool = True, **settings) -> xr.Dataset:
    """Compare each candidate with the reference, band by band (module docstring).

    Parameters
    ----------
    reference : a source name, a folder or ``.npy``/``.npz`` path, an ``(N, C, H, W)`` tensor or a DataSource.
    candidates : one of those, a sequence of them, or ``{name: one of them}``; ``"control:NAME"`` is the control
        NAME of the reference (:data:`freqlab.compare.controls.CONTROLS`).
    controls : True adds every control as a candidate; or a sequence of control names.
    config : :class:`freqlab.compare.config.CompareConfig`; ``**settings`` set single fields of it.
    device : "auto", "cpu", "cuda", ...: where features and statistics are computed.
    out : netCDF path, written atomically; None: memory only.

    Returns
    -------
    xarray.Dataset with dims ``candidate`` and ``band`` (the frequency bands and ``image``): ``mmd2``, ``mmd2_p``,
    ``classifier_accuracy``, ``classifier_p``, ``precision``, ``recall`` (candidate, band), their Holm-adjusted
    p-values, ``mmd2_reference``, ``precision_reference``, ``recall_reference`` (band: the data against itself),
    ``differs`` (candidate, band), ``fidelity_differs``, ``diversity_differs`` and ``verdict`` (candidate).
    """
    cfg = configure(CompareConfig, config, settings, what="compare")
    dev = resolve_device(device)
    named = _candidates(candidates, controls)
    ref = _as_source(reference, cfg, "reference")
    uses_controls = any(isinstance(item, str) and item.startswith(CONTROL_PREFIX) for _, item in named)
    n = _set_size(ref, cfg, uses_controls)
    bands = feature_map.band_names(cfg.bands)
    from tqdm.auto import tqdm

    bar = tqdm(total=n * (2 + len(named)), disable=not progress, file=sys.stderr, desc="compare", unit="img",
               dynamic_ncols=True)
    try:
        r1 = _features((x for _, x in _batches(ref, 0, n, cfg.batch_size)), cfg.bands, dev, bar, ref.shape)
        r2 = _features((x for _, x in _batches(ref, n, n, cfg.batch_size)), cfg.bands, dev, bar, ref.shape)
        rows = [_compare_one(name, _candidate_features(name, item, ref, n, cfg, dev, bar), r1, r2, bands, cfg, i)
                for i, (name, item) in enumerate(named)]
    finally:
        bar.close()
    ds = _assemble(rows, r1, r2, bands, cfg, ref, n)
    if out is not None:
        results.save(ds, out)
    return ds


def _candidate_features(name, item, ref: DataSource, n: int, cfg: CompareConfig, dev, bar) -> dict[str, torch.Tensor]:
    if isinstance(item, str) and item.startswith(CONTROL_PREFIX):
        control = item[len(CONTROL_PREFIX):]
        maker = ControlMaker(
            control, bands=cfg.bands, seed=sample_seed(cfg.seed, f"compare/control/{control}", 0),
            reference_batches=lambda: (x for _, x in _batches(ref, 0, n, cfg.batch_size)),
            deadleaves=_deadleaves_like(ref, cfg))
        return _features((maker(x, idx) for idx, x in _batches(ref, 2 * n, n, cfg.batch_size)), cfg.bands, dev, bar,
                         ref.shape)
    source = _as_source(item, cfg, name)
    count = n if source.size is None else min(n, source.size)
    if count < 8:
        raise ValueError(f"candidate {name!r} has {source.size} images; a comparison needs at least 8")
    bar.total += count - n
    return _features((x for _, x in _batches(source, 0, count, cfg.batch_size)), cfg.bands, dev, bar, ref.shape)


def _deadleaves_like(ref: DataSource, cfg: CompareConfig):
    channels, h, w = ref.shape
    leaves = make_source("deadleaves", resolution=(h, w), grayscale=channels == 1, split=cfg.split,
                         seed=sample_seed(cfg.seed, "compare/control/deadleaves-source", 0))
    return lambda indices: leaves.images(list(indices))


def _subset(x: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(len(x), generator=generator)[:m].to(x.device)]


def _compare_one(name: str, cand: dict, r1: dict, r2: dict, bands, cfg: CompareConfig, index: int) -> dict:
    """The statistics of one candidate in every band, with Holm-adjusted p-values and the verdict."""
    row: dict[str, Any] = {"name": name, "n_images": len(cand[bands[0]])}
    for band in bands:
        gen = torch.Generator().manual_seed(sample_seed(cfg.seed, f"compare/{name}/{band}", index))
        a, b, c = twosample.standardize(r1[band], r2[band], cand[band])
        m = min(len(a), len(c), cfg.kernel_images)
        a_k, b_k, c_k = _subset(a, m, gen), _subset(b, m, gen), _subset(c, m, gen)
        row[("mmd", band)] = twosample.mmd_test(a_k, c_k, permutations=cfg.permutations, generator=gen)
        row[("classifier", band)] = twosample.classifier_test(
            _subset(a, cfg.classifier_images, gen), _subset(c, cfg.classifier_images, gen), generator=gen,
            hidden=cfg.classifier_hidden, steps=cfg.classifier_steps)
        row[("pr", band)] = twosample.fidelity_diversity_test(a_k, b_k, c_k, k=cfg.neighbours)
    image = feature_map.IMAGE_BAND
    family = [row[("mmd", b)].p for b in bands] + [row[("classifier", b)].p for b in bands]
    family += [row[("pr", image)].precision_p, row[("pr", image)].recall_p]
    adjusted = twosample.holm(family)
    k = len(bands)
    row["mmd_p_holm"], row["classifier_p_holm"] = adjusted[:k], adjusted[k:2 * k]
    row["precision_p_holm"], row["recall_p_holm"] = adjusted[2 * k], adjusted[2 * k + 1]
    row["differs"] = [min(x, y) <= cfg.alpha for x, y in zip(row["mmd_p_holm"], row["classifier_p_holm"])]
    row["fidelity_differs"] = row["precision_p_holm"] <= cfg.alpha
    row["diversity_differs"] = row["recall_p_holm"] <= cfg.alpha
    row["verdict"] = "different" if (any(row["differs"]) or row["fidelity_differs"] or row["diversity_differs"]) \
        else "indistinguishable"
    return row


def _assemble(rows: list[dict], r1: dict, r2: dict, bands, cfg: CompareConfig, ref: DataSource, n: int) -> xr.Dataset:
    def per_band(key: str, field: str) -> np.ndarray:
        return np.array([[getattr(row[(key, b)], field) for b in bands] for row in rows], dtype=float)

    cb = ("candidate", "band")
    ds = xr.Dataset(
        {
            "mmd2": (cb, per_band("mmd", "mmd2")),
            "mmd2_null_mean": (cb, per_band("mmd", "null_mean")),
            "mmd2_null_sd": (cb, per_band("mmd", "null_sd")),
            "mmd2_p": (cb, per_band("mmd", "p")),
            "mmd2_p_holm": (cb, np.array([row["mmd_p_holm"] for row in rows])),
            "classifier_accuracy": (cb, per_band("classifier", "accuracy")),
            "classifier_p": (cb, per_band("classifier", "p")),
            "classifier_p_holm": (cb, np.array([row["classifier_p_holm"] for row in rows])),
            "precision": (cb, per_band("pr", "precision")),
            "recall": (cb, per_band("pr", "recall")),
            "precision_reference": (cb, per_band("pr", "precision_reference")),
            "recall_reference": (cb, per_band("pr", "recall_reference")),
            "precision_p": ("candidate", np.array([row[("pr", feature_map.IMAGE_BAND)].precision_p for row in rows])),
            "recall_p": ("candidate", np.array([row[("pr", feature_map.IMAGE_BAND)].recall_p for row in rows])),
            "precision_p_holm": ("candidate", np.array([row["precision_p_holm"] for row in rows])),
            "recall_p_holm": ("candidate", np.array([row["recall_p_holm"] for row in rows])),
            "differs": (cb, np.array([row["differs"] for row in rows], dtype=np.int8)),
            "fidelity_differs": ("candidate", np.array([row["fidelity_differs"] for row in rows], dtype=np.int8)),
            "diversity_differs": ("candidate", np.array([row["diversity_differs"] for row in rows], dtype=np.int8)),
            "verdict": ("candidate", np.array([row["verdict"] for row in rows], dtype=object)),
            "n_images": ("candidate", np.array([row["n_images"] for row in rows], dtype=np.int64)),
            "mmd2_reference": ("band", _reference_mmd(r1, r2, bands, cfg)),
        },
        coords={"candidate": [row["name"] for row in rows], "band": list(bands)},
    )
    for var, (long_name, units) in _VARIABLES.items():
        if var in ds:
            ds[var].attrs.update(long_name=long_name, units=units)
    ds.attrs.update({
        "title": "freqlab two-sample comparison, band by band",
        "reference": str(ref.name), "n_images_per_set": int(n), "image_shape": ",".join(map(str, ref.shape)),
        "alpha": float(cfg.alpha), "family": "Holm over the MMD and classifier tests of every band, and the "
                                             "precision and recall tests of the whole image, per candidate",
        "config": json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
                             sort_keys=True, default=str),
        "features": "freqlab.compare.features: per band-pass image, log power, log kurtosis and skewness per "
                    "channel, tails of |y|/rms, orientation shares, channel correlations, energy clustering, "
                    "magnitude correlation (and per-channel means for the whole image); standardised by the "
                    "pooled statistics of R1, R2 and the candidate",
        **results.provenance_attrs(),
    })
    return ds


def _reference_mmd(r1: dict, r2: dict, bands, cfg: CompareConfig) -> np.ndarray:
    """MMD² of the reference's two halves, per band: what two samples of the data score."""
    out = []
    for band in bands:
        gen = torch.Generator().manual_seed(sample_seed(cfg.seed, f"compare/reference/{band}", 0))
        a, b = twosample.standardize(r1[band], r2[band])
        m = min(len(a), cfg.kernel_images)
        out.append(twosample.mmd_test(_subset(a, m, gen), _subset(b, m, gen), permutations=19, generator=gen).mmd2)
    return np.array(out)


_VARIABLES = {
    "mmd2": ("unbiased MMD² of the candidate and the reference's first half (Gaussian kernel, standardised "
             "features)", "1"),
    "mmd2_reference": ("unbiased MMD² of the reference's two halves: what two samples of the data score", "1"),
    "mmd2_p": ("permutation p-value of the MMD²", "1"),
    "classifier_accuracy": ("held-out accuracy of an MLP telling the candidate from the reference", "1"),
    "classifier_p": ("exact one-sided binomial p-value of the classifier's accuracy against 0.5", "1"),
    "precision": ("share of the candidate inside the reference's k-NN balls (fidelity)", "1"),
    "recall": ("share of the reference inside the candidate's k-NN balls (diversity)", "1"),
    "precision_reference": ("precision of the reference's second half: what the data scores", "1"),
    "recall_reference": ("recall of the reference's second half: what the data scores", "1"),
    "differs": ("1 where the band's MMD or classifier test rejects after Holm's adjustment", "1"),
    "verdict": ("indistinguishable at this sample size, or different", ""),
}


def differing(row: xr.Dataset) -> list[str]:
    """What one candidate's row of a comparison differs in: its bands, then ``fidelity`` and ``diversity``."""
    differ = [str(b) for b in row.band.values if int(row.differs.sel(band=b))]
    return differ + ["fidelity"] * int(row.fidelity_differs) + ["diversity"] * int(row.diversity_differs)


def summarize(ds: xr.Dataset) -> str:
    """One line per candidate: its verdict, the bands that differ, and the distances against the data's own."""
    bands = [str(b) for b in ds.band.values]
    lines = [f"Compared with {ds.attrs.get('reference', 'the reference')} ({int(ds.attrs['n_images_per_set'])} "
             f"images a set, α = {float(ds.attrs['alpha']):g} per candidate, Holm); MMD² of the data against "
             "itself: " + ", ".join(f"{b} {float(ds.mmd2_reference.sel(band=b)):.3g}" for b in bands)]
    for name in ds.candidate.values:
        row = ds.sel(candidate=name)
        differ = differing(row)
        where = f" in {', '.join(differ)}" if differ else ""
        mmd = ", ".join(f"{b} {float(row.mmd2.sel(band=b)):.3g}" for b in bands)
        lines.append(f"  {name}: {row.verdict.item()}{where}; MMD² {mmd}; precision "
                     f"{float(row.precision.sel(band='image')):.2f}, recall {float(row.recall.sel(band='image')):.2f} "
                     f"(data {float(row.precision_reference.sel(band='image')):.2f}, "
                     f"{float(row.recall_reference.sel(band='image')):.2f})")
    return "\n".join(lines)


def to_json(ds: xr.Dataset) -> dict:
    """The comparison as one JSON-ready document (``freqlab compare --json``)."""
    bands = [str(b) for b in ds.band.values]
    out = []
    for name in ds.candidate.values:
        row = ds.sel(candidate=name)
        out.append({
            "name": str(name), "verdict": str(row.verdict.item()), "n_images": int(row.n_images),
            "bands": {b: {"differs": bool(int(row.differs.sel(band=b))), "mmd2": float(row.mmd2.sel(band=b)),
                          "mmd2_reference": float(ds.mmd2_reference.sel(band=b)),
                          "mmd2_p": float(row.mmd2_p.sel(band=b)), "mmd2_p_holm": float(row.mmd2_p_holm.sel(band=b)),
                          "classifier_accuracy": float(row.classifier_accuracy.sel(band=b)),
                          "classifier_p_holm": float(row.classifier_p_holm.sel(band=b))} for b in bands},
            "precision": float(row.precision.sel(band="image")), "recall": float(row.recall.sel(band="image")),
            "precision_reference": float(row.precision_reference.sel(band="image")),
            "recall_reference": float(row.recall_reference.sel(band="image")),
            "fidelity_differs": bool(int(row.fidelity_differs)), "diversity_differs": bool(int(row.diversity_differs)),
        })
    return {"reference": ds.attrs.get("reference"), "n_images_per_set": int(ds.attrs["n_images_per_set"]),
            "alpha": float(ds.attrs["alpha"]), "candidates": out}
