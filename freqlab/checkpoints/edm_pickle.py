"""EDM pickles (``edm-*.pkl``, ``network-snapshot-*.pkl``) without the EDM repository: freqlab's own stand-ins for
the names such a pickle refers to, and its unpickler. A pickle runs the code it carries, so nothing here loads one
without ``trust_pickle=True``."""

from __future__ import annotations

import builtins
import hashlib
import io
import pickle
import sys
import types
from pathlib import Path
from typing import Mapping

import torch

from freqlab.checkpoints.readers import first_line, listing
from freqlab.models.denoisers import EDMNetworkDenoiser

__all__ = ["UntrustedPickleError", "denoiser_from_pickle", "load_edm_pickle", "sha256_of"]


class UntrustedPickleError(ValueError):
    """A pickle was asked for without ``trust_pickle=True``."""


class _EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict``: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


class _StandIn(types.ModuleType):
    """Stands in for a module of the EDM repository while pickled source runs. In a package, unknown attributes are
    sub-modules; in a module, functions that explain, when called, that freqlab does not provide them."""

    def __init__(self, name: str, package: bool = False, **attrs):
        super().__init__(name)
        self._package = package
        self.__dict__.update(attrs)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._package:
            sub = self.__dict__[attr] = _StandIn(f"{self.__name__}.{attr}")
            return sub

        def missing(*args, **kwargs):
            raise NotImplementedError(f"{self.__name__}.{attr} belongs to the EDM repository, which freqlab does not "
                                      "provide; this network needs it to run")

        return missing


_STAND_INS = {
    "torch_utils": _StandIn("torch_utils", package=True, persistence=_StandIn(
        "torch_utils.persistence", persistent_class=lambda cls: cls, is_persistent=lambda obj: False,
        import_hook=lambda hook: hook)),
    "dnnlib": _StandIn("dnnlib", package=True, EasyDict=_EasyDict, util=_StandIn("dnnlib.util", EasyDict=_EasyDict)),
}


def _import_with_stand_ins(name, globals=None, locals=None, fromlist=(), level=0):
    """``__import__`` for pickled source: ``torch_utils`` and ``dnnlib`` resolve to freqlab's stand-ins."""
    root = name.partition(".")[0]
    if level == 0 and root in _STAND_INS:
        module = _STAND_INS[root]
        if fromlist:
            for part in name.split(".")[1:]:
                module = getattr(module, part)
        return module
    return builtins.__import__(name, globals, locals, fromlist, level)


def _module_from_source(source: str) -> types.ModuleType:
    """Execute pickled module source in a fresh module (one per distinct source, registered in sys.modules)."""
    if not isinstance(source, str):
        raise pickle.UnpicklingError("a persistent-class record carries no module source")
    name = "freqlab._pickled_source_" + hashlib.sha256(source.encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = {**vars(builtins), "__import__": _import_with_stand_ins}
        sys.modules[name] = module
        try:
            exec(compile(source, f"<module source pickled as {name}>", "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
    return module


def _reconstruct_persistent(meta):
    """Rebuild an object from EDM's persistent-class record ``{type, version, module_src, class_name, state}``."""
    if not isinstance(meta, Mapping) or meta.get("type") != "class" or "class_name" not in meta:
        raise pickle.UnpicklingError(f"unexpected persistent-object record (keys {sorted(meta)[:6]})")
    module = _module_from_source(meta.get("module_src"))
    cls = module.__dict__.get(meta["class_name"])
    if not isinstance(cls, type):
        raise pickle.UnpicklingError(f"the pickled source defines no class {meta['class_name']!r}")
    obj = cls.__new__(cls)
    state = meta.get("state")
    if state is not None:
        state = _EasyDict(state) if isinstance(state, Mapping) else state
        setstate = getattr(obj, "__setstate__", None)
        if callable(setstate):
            setstate(state)
        else:
            obj.__dict__.update(state)
    return obj


def _storage_from_bytes(data: bytes):
    # as torch.storage._load_from_bytes, but onto the CPU: a snapshot written on a GPU loads on any machine
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


_REDIRECTS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
}


class _EDMUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _REDIRECTS:
            return _REDIRECTS[(module, name)]
        if module.partition(".")[0] in _STAND_INS:
            raise pickle.UnpicklingError(f"the pickle refers to {module}.{name} from the EDM repository, for which "
                                         "freqlab has no stand-in")
        return super().find_class(module, name)


def load_edm_pickle(path, *, trust_pickle: bool = False):
    """Unpickle an EDM ``.pkl`` file without the EDM repository; only with ``trust_pickle=True``.

    Returns the unpickled object (for EDM files a dict with the network under ``'ema'``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(2)
    if not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):  # PROTO opcode: every pickle since Python 2.3
        raise ValueError(f"{path} is not a Python pickle (an EDM network .pkl starts with pickle's protocol header); "
                         "truncated, corrupt or another kind of file")
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} is a Python pickle, and loading a pickle runs the code it carries (EDM pickles carry their "
            "network's source code), so freqlab loads it only if you trust where it came from: pass "
            "trust_pickle=True to load_denoiser (or --trust-pickle on the command line)")
    try:
        with open(path, "rb") as f:
            return _EDMUnpickler(f).load()
    except Exception as err:
        raise ValueError(f"could not load the pickle {path} (truncated, corrupt, or not an EDM pickle): "
                         f"{type(err).__name__}: {first_line(err)}") from err


def denoiser_from_pickle(path: Path, trust_pickle: bool, sha256: str | None = None) -> EDMNetworkDenoiser:
    """The ``ema`` network of an EDM pickle; it remembers the file and its sha256 (``sha256``: already known)."""
    obj = load_edm_pickle(path, trust_pickle=trust_pickle)
    if isinstance(obj, Mapping):
        if "ema" not in obj:
            raise ValueError(f"{path} holds a dict without an 'ema' network (keys: {listing(obj)})")
        obj = obj["ema"]
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a torch network")
    denoiser = EDMNetworkDenoiser(obj.eval())
    denoiser.source_pickle = (str(Path(path).resolve()), sha256 or sha256_of(path))  # what a fine-tune names
    return denoiser


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
