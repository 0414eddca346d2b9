"""Save, load and discover denoiser checkpoints, offline and without running untrusted code.

Formats :func:`load_denoiser` recognises (see :func:`detect_format`):

* ``"freqlab"``: freqlab's own directory, ``config.json`` (UNet config, EDM σ parameters, ``"format":
  "freqlab-edm"``, metadata) beside ``model.safetensors`` (the UNet's state dict). Written by
  :func:`save_checkpoint`, atomically.
* ``"diffusers-model"``: a ``UNet2DModel.save_pretrained`` directory (``config.json`` +
  ``diffusion_pytorch_model.safetensors``); its noise schedule comes from ``scheduler_config.json`` beside it, a
  ``../scheduler`` folder, or the ``scheduler=`` argument.
* ``"diffusers-pipeline"``: a ``DDPMPipeline``/``DDIMPipeline.save_pretrained`` directory (``model_index.json``
  with ``unet/`` and ``scheduler/``).
* ``"state-dict"``: a ``.pt``/``.pth``/``.bin`` file read with ``torch.load(weights_only=True)`` only (or a
  ``.safetensors`` file); it needs a config: freqlab's ``config.json`` beside it or ``config=``.
* ``"edm-pickle"``: EDM's ``edm-*.pkl`` networks and ``network-snapshot-*.pkl`` training snapshots. A pickle runs
  code when it is loaded (EDM pickles carry their networks' Python source), so these load only with
  ``trust_pickle=True`` (``--trust-pickle`` on the command line), and without the EDM repository: freqlab
  provides its own unpickling machinery for EDM's persistent-class records.

Every error a user can trigger is a ``FileNotFoundError`` or ``ValueError`` that names the file.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import sys
import types
import uuid
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch

from freqlab import __version__
from freqlab.denoisers import Denoiser, DiffusersDenoiser, EDMDenoiser, EDMNetworkDenoiser, as_scheduler

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "UntrustedPickleError",
    "save_checkpoint",
    "load_checkpoint_metadata",
    "load_denoiser",
    "load_edm_pickle",
    "detect_format",
    "discover_checkpoints",
]

FORMAT, FORMAT_VERSION = "freqlab-edm", 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
PICKLE_SUFFIXES = (".pkl", ".pickle")
EXPECTED = ("a freqlab checkpoint directory (config.json + model.safetensors), a diffusers UNet2DModel directory "
            "(config.json + diffusion_pytorch_model.safetensors), a diffusers pipeline directory (model_index.json "
            "with unet/ and scheduler/), a .pt/.pth/.bin/.safetensors state dict, or an EDM .pkl file")


class CheckpointInfo(NamedTuple):
    """One checkpoint of a run. ``step``/``images_seen``/``ema`` are ``None`` where unknown."""

    path: Path
    step: int | None
    images_seen: int | None
    ema: bool | None
    name: str


class UntrustedPickleError(ValueError):
    """A pickle was asked for without ``trust_pickle=True``."""


# --------------------------------------------------------------------------------------------------------------
# small readers that turn library exceptions into errors naming the file
# --------------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"could not read the JSON file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for truncated or corrupt files
        raise ValueError(f"could not read the weights file {path} (truncated or not safetensors?): {err}") from err


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``.pt``/``.pth``/``.bin`` file loaded with ``weights_only=True``.

    A training checkpoint dict is unwrapped through its ``ema``, ``state_dict``, ``model``, ``unet`` or ``net`` entry.
    """
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = "weights_only" in str(err) and "Unsupported global" in str(err)
        why = ("it holds Python objects other than tensors, which could run code, so it is refused" if refused
               else f"truncated, corrupt or not a torch file ({type(err).__name__})")
        raise ValueError(f"could not read {path} as a torch state dict with torch.load(weights_only=True): {why}. "
                         "freqlab loads only plain tensors from "
                         ".pt/.pth/.bin files (EDM networks go in .pkl files, loaded with --trust-pickle)") from None

    def is_tensors(d):
        return isinstance(d, Mapping) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if is_tensors(obj):
        return dict(obj)
    for key in ("ema", "state_dict", "model", "unet", "net"):
        if isinstance(obj, Mapping) and is_tensors(obj.get(key)):
            return dict(obj[key])
    raise ValueError(f"{path} holds no state dict (a dict of tensors, possibly under 'ema', 'state_dict' or 'model')")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("unet.", "module.unet.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(names, limit: int = 5) -> str:
    names = list(names)
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(map(str, names[:limit])) + more


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict(strict=True)`` with a ValueError naming missing/unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the config"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {_listing(names)}" for what, names in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if names]
    if problems:
        raise ValueError(f"the weights in {source} do not match the model config; " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _unet_from_config(config: Mapping, source: Path):
    from diffusers import UNet2DModel

    if not isinstance(config, Mapping):
        raise ValueError(f"the UNet config in {source} must be a JSON object")
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return UNet2DModel.from_config(clean)
    except Exception as err:
        raise ValueError(f"the UNet config in {source} does not build a UNet2DModel: {err}") from err


# --------------------------------------------------------------------------------------------------------------
# freqlab's own format
# --------------------------------------------------------------------------------------------------------------
def _jsonable(value: Any, key: str) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    raise ValueError(f"metadata {key!r} is a {type(value).__name__}; metadata holds strings, numbers, booleans, "
                     "lists and dicts only")


def _check_metadata(metadata: Mapping) -> dict:
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    meta = {str(k): _jsonable(v, str(k)) for k, v in metadata.items()}
    for key in ("step", "images_seen"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"metadata {key!r} must be a non-negative int, got {value!r}")
    if meta.get("ema") is not None and not isinstance(meta["ema"], bool):
        raise ValueError(f"metadata 'ema' must be True or False, got {meta['ema']!r}")
    if meta.get("kind") is not None and not isinstance(meta["kind"], str):
        raise ValueError(f"metadata 'kind' must be a string such as 'pretrain' or 'finetune', got {meta['kind']!r}")
    return meta


def _is_freqlab_dir(path: Path) -> bool:
    config = path / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_checkpoint(path, denoiser: Denoiser, *, metadata: Mapping) -> Path:
    """Write ``denoiser`` to the directory ``path`` (``config.json`` + ``model.safetensors``), atomically.

    Parameters
    ----------
    path : str or Path
        The checkpoint directory. It is written under a temporary name beside it (each file flushed to disk, with
        the permissions the umask gives new files) and renamed into place, so a crash never leaves a half-written
        checkpoint. An existing freqlab checkpoint there is replaced; anything else there is refused.
    denoiser : EDMDenoiser, or an EDMNetworkDenoiser loaded from an EDM pickle
        Its UNet's config and weights, and its σ parameters, are saved. For an EDM network (a fine-tuned one) only
        the weights are written; the architecture stays in the source pickle, named with its sha256 in
        ``config.json``, and :func:`load_denoiser` rebuilds it from there (so it needs ``trust_pickle`` again).
    metadata : dict
        ``step`` and ``images_seen`` (non-negative ints), ``loss``, ``ema`` (bool), ``kind`` (``"pretrain"`` /
        ``"finetune"``), plus any strings and numbers (0-d tensors and NumPy scalars are converted).

    Returns
    -------
    Path of the checkpoint directory.
    """
    from safetensors.torch import save_file

    from freqlab.outputs import write_atomic

    source = getattr(denoiser, "source_pickle", None) if isinstance(denoiser, EDMNetworkDenoiser) else None
    if not isinstance(denoiser, EDMDenoiser) and source is None:
        raise ValueError(f"save_checkpoint saves an EDMDenoiser or an EDM network loaded from a pickle, got "
                         f"{type(denoiser).__name__}; diffusers models keep their own format (save_pretrained)")
    meta = _check_metadata(metadata)
    path = Path(path)
    if path.exists() and not _is_freqlab_dir(path):
        raise ValueError(f"{path} exists and is not a freqlab checkpoint; refusing to overwrite it")
    params = {"class": type(denoiser).__name__, "sigma_min": denoiser.sigma_min, "sigma_max": denoiser.sigma_max,
              "sigma_data": denoiser.sigma_data, "image_shape": list(denoiser.image_shape)}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "freqlab_version": __version__, "denoiser": params}
    if source is not None:  # the architecture stays in the trusted source pickle; only weights are written here
        params.update(source_pickle=source[0], source_sha256=source[1])
        module = denoiser.net
    else:
        unet_config = {k: v for k, v in dict(denoiser.unet.config).items() if not k.startswith("_")}
        config["unet"] = _jsonable(unet_config, "unet")
        module = denoiser.unet
    config["metadata"] = meta
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        # each file flushed to disk and given the umask's permissions before the directory is renamed into place
        write_atomic(tmp / WEIGHTS_NAME, lambda f: save_file(state, str(f), metadata={"format": FORMAT}))
        write_atomic(tmp / CONFIG_NAME, lambda f: f.write_text(json.dumps(config, indent=2) + "\n"))
        if path.exists():  # replace an older checkpoint: move it aside, rename the new one in, then delete it
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _freqlab_config(path: Path) -> dict:
    config = _read_json(path / CONFIG_NAME)
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path / CONFIG_NAME} has format_version {version!r}, newer than this freqlab reads "
                         f"({FORMAT_VERSION}); update freqlab")
    if not isinstance(config.get("unet"), Mapping) and not _is_edm_network_config(config):
        raise ValueError(f"{path / CONFIG_NAME} has no 'unet' config")
    return config


def _is_edm_network_config(config: Mapping) -> bool:
    params = config.get("denoiser")
    return isinstance(params, Mapping) and params.get("class") == "EDMNetworkDenoiser"


def load_checkpoint_metadata(path) -> dict:
    """The metadata dict of a freqlab checkpoint (``step``, ``images_seen``, ``loss``, ``ema``, ``kind``, ...).

    Other formats carry no freqlab metadata: an empty dict. A path that does not exist: ``FileNotFoundError``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    kind, root = _detect(path)
    if kind != "freqlab":
        return {}
    return dict(_freqlab_config(root).get("metadata") or {})


def _edm_denoiser_from_config(config: Mapping, state, *, weights: Path, config_path: Path) -> EDMDenoiser:
    """An EDMDenoiser from a freqlab config (or a bare UNet config, then with EDM's default σ range)."""
    unet_config = config.get("unet", config)
    unet = _unet_from_config(unet_config, config_path)
    _load_strict(unet, _strip_prefix(state), weights)
    params = config.get("denoiser", {}) if "unet" in config else {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{config_path}: 'denoiser' must be a JSON object with sigma_min, sigma_max, sigma_data, "
                         f"got {json.dumps(params)}")
    kwargs = {}
    for key in ("sigma_min", "sigma_max", "sigma_data"):
        if key in params:
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{config_path}: denoiser.{key} must be a positive number, got {json.dumps(value)}")
            kwargs[key] = float(value)
    if params.get("image_shape") and not unet.config.sample_size:
        kwargs["image_shape"] = tuple(params["image_shape"])
    return EDMDenoiser(unet.eval(), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# diffusers directories
# --------------------------------------------------------------------------------------------------------------
def _scheduler_from(scheduler, *candidates: Path):
    if scheduler is not None:
        if isinstance(scheduler, (str, os.PathLike)):
            p = Path(scheduler)
            p = p / "scheduler_config.json" if p.is_dir() else p
            if not p.is_file():
                raise FileNotFoundError(f"scheduler config {p} does not exist")
            return as_scheduler(_read_json(p))
        return as_scheduler(scheduler)
    for p in candidates:
        if p.is_file():
            return as_scheduler(_read_json(p))
    raise ValueError(f"no noise schedule found for the diffusers UNet (looked for {_listing(candidates)}); "
                     "pass scheduler= (a diffusers scheduler, its config dict, or its directory)")


def _summarise_load_error(text: str) -> str:
    """torch's multi-line ``load_state_dict`` error as one line of key listings ('' if it is not one)."""
    shape = r"torch\.Size\(\[([^\]]*)\]\)"
    mismatched = [f"{name} ({a}) in the file vs ({b}) in the config" for name, a, b in re.findall(
        rf"size mismatch for (\S+): copying a param with shape {shape} from checkpoint, the shape in current "
        rf"model is {shape}", text)]
    missing = re.findall(r'"([^"]+)"', text.partition("Missing key(s) in state_dict:")[2].split("\n")[0])
    unexpected = re.findall(r'"([^"]+)"', text.partition("Unexpected key(s) in state_dict:")[2].split("\n")[0])
    return "; ".join(f"{what}: {_listing(names)}" for what, names in
                     (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                     if names)


def _load_diffusers_unet(root: Path, subfolder: str | None):
    from diffusers import UNet2DModel

    folder = root / subfolder if subfolder else root
    weights = next((p for p in sorted(folder.glob("diffusion_pytorch_model*")) if p.is_file()), folder)
    class_name = _read_json(folder / CONFIG_NAME).get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"{folder} holds a {class_name}; freqlab's diffusers adapter takes pixel-space UNet2DModel "
                         "(DDPM-family) models")
    try:
        unet, info = UNet2DModel.from_pretrained(str(root), subfolder=subfolder, local_files_only=True,
                                                 output_loading_info=True, low_cpu_mem_usage=False)
    except Exception as err:
        summary = _summarise_load_error(str(err))
        if summary:
            raise ValueError(f"the weights in {weights} do not match {folder / CONFIG_NAME}; {summary}") from err
        raise ValueError(f"could not load the diffusers UNet weights {weights}: {_first_line(err)}") from err
    problems = [f"{k.replace('_', ' ')}: {_listing(v)}" for k, v in info.items()
                if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v]
    if problems:
        raise ValueError(f"the weights in {weights} do not match {folder / CONFIG_NAME}; " + "; ".join(problems))
    return unet.eval()


# --------------------------------------------------------------------------------------------------------------
# EDM pickles: freqlab's own stand-ins for the names an EDM pickle refers to
# --------------------------------------------------------------------------------------------------------------
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
                         f"{type(err).__name__}: {_first_line(err)}") from err


def _denoiser_from_pickle(path: Path, trust_pickle: bool, sha256: str | None = None) -> EDMNetworkDenoiser:
    """The ``ema`` network of an EDM pickle; it remembers the file and its sha256 (``sha256``: already known)."""
    obj = load_edm_pickle(path, trust_pickle=trust_pickle)
    if isinstance(obj, Mapping):
        if "ema" not in obj:
            raise ValueError(f"{path} holds a dict without an 'ema' network (keys: {_listing(obj)})")
        obj = obj["ema"]
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a torch network")
    denoiser = EDMNetworkDenoiser(obj.eval())
    denoiser.source_pickle = (str(Path(path).resolve()), sha256 or _sha256(path))  # what a fine-tune names
    return denoiser


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _edm_network_from_freqlab(root: Path, config: Mapping, trust_pickle: bool) -> EDMNetworkDenoiser:
    """A fine-tuned EDM network: the architecture from its source pickle (checked by hash), the weights from
    ``model.safetensors``. Loading the source pickle runs its code, so this needs ``trust_pickle`` too."""
    params = config["denoiser"]
    source, digest = Path(str(params.get("source_pickle", ""))), str(params.get("source_sha256", ""))
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{root} is a fine-tuned EDM network whose architecture comes from the pickle {source}; loading it runs "
            "that pickle's code: pass trust_pickle=True (--trust-pickle) if you trust that file")
    if not source.is_file():
        raise FileNotFoundError(f"{root} needs its source pickle {source} (the network's architecture), which is "
                                "missing; put it back at that path")
    if _sha256(source) != digest:
        raise ValueError(f"the source pickle {source} of {root} has changed since the fine-tune (sha256 differs); "
                         "its architecture may no longer match the saved weights")
    denoiser = _denoiser_from_pickle(source, trust_pickle=True, sha256=digest)
    weights = root / WEIGHTS_NAME
    _load_strict(denoiser.net, _read_safetensors(weights), weights)
    for key in ("sigma_min", "sigma_max", "sigma_data"):
        setattr(denoiser, key, float(params[key]))
    return denoiser


# --------------------------------------------------------------------------------------------------------------
# recognising and loading
# --------------------------------------------------------------------------------------------------------------
def _detect(path: Path, *, strict: bool = True) -> tuple[str | None, Path]:
    """``(format, root)``: the format name and the path to load it from (a named file inside a checkpoint
    directory resolves to the directory)."""
    if path.is_file():
        parent = path.parent
        if path.name in (CONFIG_NAME, WEIGHTS_NAME, "model_index.json") or path.name.startswith(
                "diffusion_pytorch_model"):
            kind, root = _detect(parent, strict=False)
            if kind is not None:
                return kind, root
        if path.suffix in PICKLE_SUFFIXES:
            return "edm-pickle", path
        if path.suffix in STATE_DICT_SUFFIXES:
            return "state-dict", path
    elif path.is_dir():
        if _is_freqlab_dir(path):
            return "freqlab", path
        if (path / "model_index.json").is_file():
            return "diffusers-pipeline", path
        if (path / CONFIG_NAME).is_file() and any(path.glob("diffusion_pytorch_model*")):
            return "diffusers-model", path
    if strict:
        raise ValueError(f"{path} is in no format freqlab recognises; expected {EXPECTED}")
    return None, path


def detect_format(path) -> str:
    """One of ``"freqlab"``, ``"diffusers-model"``, ``"diffusers-pipeline"``, ``"state-dict"``, ``"edm-pickle"``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return _detect(path)[0]


def _device(device) -> torch.device:
    from freqlab.devices import resolve_device

    return torch.device("cpu") if device is None else resolve_device(device)  # never CUDA unless asked


def load_denoiser(path, *, device=None, dtype=None, trust_pickle: bool = False, clamp: bool = False,
                  config=None, scheduler=None) -> Denoiser:
    """Load any supported checkpoint as a :class:`~freqlab.denoisers.Denoiser` (in eval mode), offline.

    Parameters
    ----------
    path : str or Path
        A checkpoint directory or file (see the module docstring for the formats).
    device : str or torch.device, optional
        Where to put the model (default CPU; ``"auto"`` picks CUDA when there is one).
    dtype : torch.dtype, optional
        Parameter dtype (e.g. ``torch.bfloat16``); the denoiser's outer maths stays float32. Not for EDM pickles,
        which choose their own precision.
    trust_pickle : bool
        Required to load ``.pkl`` files: unpickling runs code carried by the file.
    clamp : bool
        diffusers models: clamp σ outside the schedule's range (with a warning) instead of raising.
    config : dict or path, optional
        The config of a state-dict file: a freqlab ``config.json`` (or its dict), or a bare UNet2DModel config.
        Default: ``config.json`` beside the file.
    scheduler : scheduler, dict or path, optional
        The noise schedule of a diffusers UNet (overrides the one found beside it). With a state-dict file it
        makes the model a VP :class:`DiffusersDenoiser` instead of an :class:`EDMDenoiser`.
    """
    from freqlab.locate import resolve_checkpoint

    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    kind, root = _detect(path)
    if kind == "freqlab":
        config_data = _freqlab_config(root)
        weights = root / WEIGHTS_NAME
        if _is_edm_network_config(config_data):
            denoiser = _edm_network_from_freqlab(root, config_data, trust_pickle)
        else:
            denoiser = _edm_denoiser_from_config(config_data, _read_safetensors(weights), weights=weights,
                                                 config_path=root / CONFIG_NAME)
    elif kind == "diffusers-model":
        if (root.parent / "model_index.json").is_file():  # the unet/ folder of a pipeline
            _refuse_latent(root.parent, _read_json(root.parent / "model_index.json"))
        unet = _load_diffusers_unet(root, None)
        sched = _scheduler_from(scheduler, root / "scheduler_config.json",
                                root.parent / "scheduler" / "scheduler_config.json")
        denoiser = DiffusersDenoiser(unet, sched, clamp=clamp)
    elif kind == "diffusers-pipeline":
        index = _read_json(root / "model_index.json")
        _refuse_latent(root, index)
        if not (root / "unet").is_dir():
            components = _listing(k for k in index if not k.startswith("_"))
            raise ValueError(f"pipeline {root} has no unet/ folder (components: {components}); freqlab's diffusers "
                             "adapter takes pixel-space DDPM/DDIM pipelines")
        unet = _load_diffusers_unet(root, "unet")
        denoiser = DiffusersDenoiser(unet, _scheduler_from(scheduler, root / "scheduler" / "scheduler_config.json"),
                                     clamp=clamp)
    elif kind == "state-dict":
        denoiser = _denoiser_from_state_dict(root, config, scheduler, clamp)
    else:  # edm-pickle
        if dtype not in (None, torch.float32):
            raise ValueError(f"dtype={dtype} is not supported for EDM pickles: their networks choose their own "
                             "precision (use_fp16)")
        denoiser = _denoiser_from_pickle(root, trust_pickle)
        dtype = None
    return denoiser.to(device=_device(device), dtype=dtype).eval()


LATENT_COMPONENTS = ("vae", "vqvae", "vq_vae", "movq")


def _refuse_latent(root: Path, index: Mapping) -> None:
    """A latent diffusion pipeline's UNet denoises the latents of its autoencoder, not pixels: refused."""
    latent = [k for k in index if k in LATENT_COMPONENTS]
    if latent:
        components = _listing(k for k in index if not k.startswith("_"))
        raise ValueError(f"{root} is a latent diffusion pipeline (components: {components}): its UNet denoises the "
                         f"{latent[0]}'s latents, not pixels, so freqlab's pixel spectra of its outputs would mean "
                         "nothing; freqlab analyses pixel-space models only (latent models are not supported)")


def _denoiser_from_state_dict(path: Path, config, scheduler, clamp: bool) -> Denoiser:
    if config is None:
        config_path = path.parent / CONFIG_NAME
        if not config_path.is_file():
            raise ValueError(f"the state dict {path} needs its model config: put freqlab's {CONFIG_NAME} beside it "
                             "or pass config= (a dict or a path)")
        config = _read_json(config_path)
    elif isinstance(config, (str, os.PathLike)):
        config_path = Path(config)
        if not config_path.is_file():
            raise FileNotFoundError(f"config {config_path} does not exist")
        config = _read_json(config_path)
    else:
        config_path = Path("<config argument>")
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or a path to a JSON file, got {type(config).__name__}")
    state = _read_state_dict_file(path)
    if scheduler is None:
        return _edm_denoiser_from_config(config, state, weights=path, config_path=config_path)
    unet = _unet_from_config(config.get("unet", config), config_path)
    _load_strict(unet, _strip_prefix(state), path)
    return DiffusersDenoiser(unet.eval(), _scheduler_from(scheduler), clamp=clamp)


# --------------------------------------------------------------------------------------------------------------
# discovering a run's checkpoints
# --------------------------------------------------------------------------------------------------------------
def _number_in_name(name: str) -> int | None:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def _unreadable_reason(path: Path) -> str | None:
    """Why a folder that holds checkpoint files is in no format freqlab reads (None: it holds none)."""
    if not path.is_dir() or not ((path / CONFIG_NAME).exists() or (path / WEIGHTS_NAME).exists()
                                 or any(path.glob("diffusion_pytorch_model*"))):
        return None
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except FileNotFoundError:
        return f"it has weights but no {CONFIG_NAME}"
    except (OSError, ValueError) as err:
        return f"its {CONFIG_NAME} is not valid JSON ({err})"
    if not isinstance(config, Mapping):
        return f"its {CONFIG_NAME} holds a {type(config).__name__}, not a JSON object"
    return f"its {CONFIG_NAME} is neither a freqlab checkpoint's (format {FORMAT!r}) nor beside diffusers weights"


def _checkpoint_info(path: Path) -> CheckpointInfo | None:
    kind, _ = _detect(path, strict=False)
    if kind is None:
        reason = _unreadable_reason(path)
        if reason is not None:  # never a silent drop: the sweep would miss a checkpoint
            raise ValueError(f"{path} looks like a checkpoint but cannot be read: {reason}; repair or remove it")
        return None
    stem = path.stem if path.is_file() else path.name
    if kind == "freqlab":
        try:
            meta = load_checkpoint_metadata(path)
        except ValueError:
            meta = {}
        step, images, ema = meta.get("step"), meta.get("images_seen"), meta.get("ema")
        if step is None and images is None:
            step = _number_in_name(stem)
        return CheckpointInfo(path, step, images, ema, path.name)
    ema = True if kind == "edm-pickle" or "ema" in stem.lower() else None
    if kind == "edm-pickle":
        # EDM names training snapshots by thousands of images seen (kimg); edm-*.pkl names carry no step
        kimg = _number_in_name(stem) if stem.startswith("network-snapshot") else None
        return CheckpointInfo(path, None, None if kimg is None else kimg * 1000, ema, path.name)
    return CheckpointInfo(path, _number_in_name(stem), None, ema, path.name)


def discover_checkpoints(run_dir) -> list[CheckpointInfo]:
    """The checkpoints of a training run, ordered by training step.

    Looks at the entries of ``run_dir`` (and of ``run_dir/checkpoints`` if there is one). The order is by ``step``
    from freqlab metadata, else by the last number in the name (EDM's ``network-snapshot-<kimg>.pkl`` by images
    seen); checkpoints with neither come last, by name. Hidden entries (temporary files of atomic writes) are
    skipped. A missing directory is a ``FileNotFoundError``; one without checkpoints a ``ValueError``.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory; discover_checkpoints lists the checkpoints of a run directory")
    folders = [run_dir] + ([run_dir / "checkpoints"] if (run_dir / "checkpoints").is_dir() else [])
    infos = [info for folder in folders for entry in sorted(folder.iterdir()) if not entry.name.startswith(".")
             for info in [_checkpoint_info(entry)] if info is not None]
    if not infos:
        raise ValueError(f"no checkpoints found in {run_dir}; expected entries such as {EXPECTED}")

    def order(info: CheckpointInfo):
        if info.step is not None:
            return (0, info.step, info.name)
        if info.images_seen is not None:
            return (1, info.images_seen, info.name)
        return (2, 0, info.name)

    return sorted(infos, key=order)

