"""What a sweep measures: the checkpoints (any path or module freqlab loads, each loaded on demand and recognised
by content) and the data source."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from freqlab.checkpoints import identity


@dataclass
class Entry:
    """One checkpoint to sweep: loaded on demand, so a resumed sweep never loads finished ones."""

    name: str
    load: Callable[[], torch.nn.Module]
    step: int = -1
    images_seen: int = -1
    path: str = ""
    model: torch.nn.Module | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def get(self) -> torch.nn.Module:
        return self.model if self.model is not None else self.load()

    @property
    def fingerprint(self) -> str:
        """The content of the weights (:func:`freqlab.checkpoints.identity.module_fingerprint`): of the model that
        was measured once :meth:`take_fingerprint` has seen it, else of the checkpoint as it loads now."""
        if self._fingerprint is None:
            self.take_fingerprint(self.get())
        return self._fingerprint

    def take_fingerprint(self, model: torch.nn.Module) -> str:
        """Record the fingerprint of ``model``, this checkpoint as loaded (the bytes that are measured)."""
        self._fingerprint = identity.module_fingerprint(model)
        return self._fingerprint


def _metadata_int(meta: Mapping | None, key: str) -> int:
    try:
        return int((meta or {}).get(key, -1))
    except (TypeError, ValueError):
        return -1


def _from_module(name: str, module: torch.nn.Module) -> Entry:
    meta = getattr(module, "metadata", None)
    return Entry(name, lambda: module, _metadata_int(meta, "step"), _metadata_int(meta, "images_seen"), "", module)


def _from_path(path: Path, device: torch.device, trust_pickle: bool) -> list[Entry]:
    """A checkpoint (file or directory) or a run directory of checkpoints, as entries in training order."""
    from freqlab.checkpoints.store import resolve_checkpoint

    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint or run directory {path} does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise FileNotFoundError(f"no checkpoints found in {path}: the directory is empty")
    from freqlab.checkpoints import store as checkpoints

    def loader(p: Path) -> Callable[[], torch.nn.Module]:
        return lambda: checkpoints.load_denoiser(p, device=device, trust_pickle=trust_pickle)

    try:
        checkpoints.detect_format(path)
        single = True
    except ValueError:
        single = False
    if path.is_dir() and not single:  # a run directory (raises a clear ValueError when it holds no checkpoint)
        return [Entry(str(i.name), loader(Path(i.path)), -1 if i.step is None else int(i.step),
                       -1 if i.images_seen is None else int(i.images_seen), str(Path(i.path).resolve()))
                for i in checkpoints.discover_checkpoints(path)]
    if not single:
        checkpoints.detect_format(path)  # the loader's own message: which formats it expected
    meta = checkpoints.load_checkpoint_metadata(path)
    return [Entry(path.name, loader(path), _metadata_int(meta, "step"), _metadata_int(meta, "images_seen"),
                   str(path.resolve()))]


def resolve_models(models: Any, *, device: torch.device, trust_pickle: bool = False) -> list[Entry]:
    """Checkpoints to sweep, in order, from a run directory, paths, Denoisers or a ``{name: model}`` mapping."""
    if isinstance(models, (str, os.PathLike, torch.nn.Module)):
        items: list[tuple[str | None, Any]] = [(None, models)]
    elif isinstance(models, Mapping):
        items = [(str(k), v) for k, v in models.items()]
    else:
        try:
            items = [(None, m) for m in models]
        except TypeError:
            raise ValueError(f"models must be a run directory, paths, Denoisers or a mapping, got "
                             f"{type(models).__name__}") from None
    entries: list[Entry] = []
    for i, (name, item) in enumerate(items):
        if isinstance(item, torch.nn.Module):
            entries.append(_from_module(name or getattr(item, "name", None) or f"model{i}", item))
        elif isinstance(item, (str, os.PathLike)):
            found = _from_path(Path(item).expanduser(), device, trust_pickle)
            if name is not None and len(found) == 1:
                found[0].name = name
            entries.extend(found)
        else:
            raise ValueError(f"cannot sweep a {type(item).__name__}; give checkpoint paths or Denoiser objects")
    if not entries:
        raise ValueError("no models to sweep: give a run directory, checkpoint paths or Denoiser objects")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):  # same checkpoint names from two runs: qualify with the parent directory
        for e in entries:
            if names.count(e.name) > 1 and e.path:
                e.name = f"{Path(e.path).parent.name}/{e.name}"
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"checkpoint names must be unique, got duplicates {dup}; pass a {{name: model}} mapping")
    return entries


def make_data(data: Any, shape: tuple[int, int, int] | None, split: str, options: Mapping | None):
    if not isinstance(data, str):
        if options:
            raise ValueError("data_options apply only when data is given by name")
        for attr in ("name", "shape", "images"):
            if not hasattr(data, attr):
                raise ValueError(f"data must be a DataSource or a data source name, got {type(data).__name__}")
        return data
    from freqlab.data.sources import make_source

    kwargs: dict[str, Any] = {"split": split}
    if shape is not None:
        kwargs.update(resolution=(shape[1], shape[2]), grayscale=shape[0] == 1)
    kwargs.update(options or {})
    return make_source(data, **kwargs)


def data_fingerprint(data) -> dict:
    """Name, shape, size and settings of a data source (the content of its images: :mod:`freqlab.data.digest`)."""
    attrs = getattr(data, "attrs", None)
    return {"name": str(data.name), "shape": list(data.shape), "size": getattr(data, "size", None),
            "settings": {str(k): v for k, v in attrs.items()} if isinstance(attrs, Mapping) else None}


def check_shape(name: str, model: torch.nn.Module, shape: tuple[int, int, int], any_resolution: bool) -> None:
    """Data must have the model's channels, and its declared resolution unless ``any_resolution`` (a UNet runs at
    any size its downsampling divides, but a model trained at 32x32 measured at 16x16 is another experiment)."""
    expected = getattr(model, "image_shape", None)
    if expected is None:
        return
    c, h, w = (int(s) for s in expected)
    multiple = getattr(model, "size_multiple", None)
    if shape[0] != c:
        raise ValueError(f"data images have {shape[0]} channel(s) but checkpoint {name!r} expects {c}; "
                         f"choose data with {c} channel(s) (grayscale={c == 1})")
    if (multiple is None or not any_resolution) and tuple(shape[1:]) != (h, w):
        hint = "" if multiple is None else "; pass any_resolution=True (--any-resolution) to measure it at this size"
        raise ValueError(f"data images are {shape[1]}x{shape[2]} but checkpoint {name!r} was made for {h}x{w}"
                         f"{hint}")
    if multiple is not None and (shape[1] % int(multiple) or shape[2] % int(multiple)):
        raise ValueError(f"data images are {shape[1]}x{shape[2]}, not divisible by {multiple} as checkpoint "
                         f"{name!r} needs")
