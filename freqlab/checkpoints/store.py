"""Save, load and discover denoiser checkpoints, offline and without running untrusted code.

Formats :func:`load_denoiser` recognises (see :func:`detect_format`):

* ``"freqlab"``: freqlab's own directory, ``config.json`` (UNet config, EDM σ parameters, ``"format":
  "freqlab-edm"``, metadata; for a fine-tuned diffusers UNet also its scheduler config) beside
  ``model.safetensors`` (the UNet's state dict). Written by :func:`save_checkpoint`, atomically.
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

EDM pickles are read by :mod:`freqlab.checkpoints.edm_pickle`, files in general by :mod:`freqlab.checkpoints.readers`; each format
becomes a denoiser in :mod:`freqlab.checkpoints.builders`. Every error a user can trigger is a ``FileNotFoundError``
or ``ValueError`` that names the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch

from freqlab import __version__
from freqlab.checkpoints.builders import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    denoiser_from_state_dict,
    diffusers_denoiser_from_config,
    edm_denoiser_from_config,
    edm_network_from_freqlab,
    from_diffusers_dir,
)
from freqlab.checkpoints.edm_pickle import denoiser_from_pickle
from freqlab.checkpoints.readers import read_json, read_safetensors
from freqlab.models.denoisers import Denoiser, DiffusersDenoiser, EDMDenoiser, EDMNetworkDenoiser

__all__ = [
    "CheckpointInfo",
    "save_checkpoint",
    "load_checkpoint_metadata",
    "load_denoiser",
    "detect_format",
    "discover_checkpoints",
    "resolve_checkpoint",
]

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
    denoiser : EDMDenoiser, DiffusersDenoiser, or an EDMNetworkDenoiser loaded from an EDM pickle
        Its UNet's config and weights, and its σ parameters, are saved; for a DiffusersDenoiser (a fine-tuned
        DDPM-family UNet) also its scheduler's config, prediction type and clamp setting. For an EDM network only
        the weights are written; the architecture stays in the source pickle, named with its sha256 in
        ``config.json``, and :func:`load_denoiser` rebuilds it from there (so it needs ``trust_pickle`` again).
    metadata : dict
        ``step`` and ``images_seen`` (non-negative ints), ``loss``, ``ema`` (bool), ``kind`` (``"pretrain"`` /
        ``"finetune"``), plus any strings and numbers (0-d tensors and NumPy scalars are converted).

    Returns
    -------
    Path of the checkpoint directory.
    """
    source = getattr(denoiser, "source_pickle", None) if isinstance(denoiser, EDMNetworkDenoiser) else None
    if not isinstance(denoiser, (EDMDenoiser, DiffusersDenoiser)) and source is None:
        raise ValueError(f"save_checkpoint saves an EDMDenoiser, a DiffusersDenoiser or an EDM network loaded from "
                         f"a pickle, got {type(denoiser).__name__}")
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
        if isinstance(denoiser, DiffusersDenoiser):
            params.update(prediction_type=denoiser.prediction_type, clamp=denoiser.clamp)
            config["scheduler"] = _jsonable(dict(denoiser.scheduler_config), "scheduler")
    config["metadata"] = meta
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    _write_checkpoint_dir(path, config, state)
    return path


def _write_checkpoint_dir(path: Path, config: dict, state: dict) -> None:
    """``config.json`` and ``model.safetensors`` written under a temporary name beside ``path`` and renamed into
    place (an older checkpoint there moved aside first, then deleted): a crash never leaves half a checkpoint."""
    from safetensors.torch import save_file

    from freqlab.runtime.outputs import write_atomic

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


def _freqlab_config(path: Path) -> dict:
    config = read_json(path / CONFIG_NAME)
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path / CONFIG_NAME} has format_version {version!r}, newer than this freqlab reads "
                         f"({FORMAT_VERSION}); update freqlab")
    if not isinstance(config.get("unet"), Mapping) and _denoiser_class(config) != "EDMNetworkDenoiser":
        raise ValueError(f"{path / CONFIG_NAME} has no 'unet' config")
    named = _denoiser_class(config)
    if named is not None and named not in DENOISER_CLASSES:
        raise ValueError(f"{path / CONFIG_NAME}: denoiser.class {json.dumps(named)} is not one freqlab saves "
                         f"({', '.join(DENOISER_CLASSES)})")
    return config


#: The denoiser classes a freqlab checkpoint may name (what save_checkpoint writes).
DENOISER_CLASSES = ("EDMDenoiser", "DiffusersDenoiser", "EDMNetworkDenoiser")


def _denoiser_class(config: Mapping) -> str | None:
    """The ``denoiser.class`` a freqlab config names (None when it names none; a malformed one is checked later)."""
    params = config.get("denoiser")
    return params.get("class") if isinstance(params, Mapping) else None


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
    from freqlab.runtime.devices import resolve_device

    return torch.device("cpu") if device is None else resolve_device(device)  # never CUDA unless asked


def load_denoiser(path, *, device=None, dtype=None, trust_pickle: bool = False, clamp: bool = False,
                  config=None, scheduler=None) -> Denoiser:
    """Load any supported checkpoint as a :class:`~freqlab.models.denoisers.Denoiser` (in eval mode), offline.

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
    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    kind, root = _detect(path)
    if kind == "freqlab":
        denoiser = _from_freqlab_dir(root, trust_pickle, clamp)
    elif kind in ("diffusers-model", "diffusers-pipeline"):
        denoiser = from_diffusers_dir(root, kind, scheduler, clamp)
    elif kind == "state-dict":
        denoiser = denoiser_from_state_dict(root, config, scheduler, clamp)
    else:  # edm-pickle
        if dtype not in (None, torch.float32):
            raise ValueError(f"dtype={dtype} is not supported for EDM pickles: their networks choose their own "
                             "precision (use_fp16)")
        denoiser = denoiser_from_pickle(root, trust_pickle)
        dtype = None
    return denoiser.to(device=_device(device), dtype=dtype).eval()


def _from_freqlab_dir(root: Path, trust_pickle: bool, clamp: bool) -> Denoiser:
    """A checkpoint written by :func:`save_checkpoint`, as the denoiser class its config names."""
    config_data = _freqlab_config(root)
    weights = root / WEIGHTS_NAME
    if _denoiser_class(config_data) == "EDMNetworkDenoiser":
        return edm_network_from_freqlab(root, config_data, trust_pickle)
    if _denoiser_class(config_data) == "DiffusersDenoiser":
        return diffusers_denoiser_from_config(config_data, read_safetensors(weights), weights=weights,
                                               config_path=root / CONFIG_NAME, clamp=clamp)
    return edm_denoiser_from_config(config_data, read_safetensors(weights), weights=weights,
                                     config_path=root / CONFIG_NAME)


# --------------------------------------------------------------------------------------------------------------
# discovering a run's checkpoints
# --------------------------------------------------------------------------------------------------------------
def _number_in_name(name: str) -> int | None:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def _unreadable_reason(path: Path) -> str | None:
    """Why a folder that holds checkpoint files is in no format freqlab reads (None: it holds none)."""
    if path.is_dir() and re.fullmatch(r"step-\d+|finetune-\d+(-ema)?", path.name) and not any(path.iterdir()):
        return "it is empty (named like a checkpoint of freqlab's, it holds no files)"
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


#: Names that stand for the last checkpoint of a run.
ALIASES = ("final", "latest")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The path on disk of the checkpoint ``path`` names, before any loader looks at it.

    An existing path is returned as it is; ``RUN/checkpoints/final`` (or ``latest``) and ``RUN/final`` name the last
    checkpoint of a pre-training or fine-tuning run in training order (:func:`discover_checkpoints`; for a
    fine-tuning run the EMA generator of its last save, which sorts after the raw one); a Hugging Face Hub id comes
    from the local cache (:mod:`freqlab.checkpoints.hub`). Anything else is returned unchanged, so the loader's own "does not
    exist" message applies.
    """
    from freqlab.checkpoints.hub import from_hub_cache, looks_like_hub_id

    text = os.fspath(path)
    resolved = Path(text).expanduser()
    if resolved.exists():
        return resolved
    if resolved.name in ALIASES and resolved.parent.is_dir():
        try:
            found = discover_checkpoints(resolved.parent)
        except ValueError as err:
            raise ValueError(f"{resolved} names the last checkpoint of a run, but {err}") from None
        return Path(found[-1].path)
    if looks_like_hub_id(text):
        return from_hub_cache(text)
    return resolved


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

