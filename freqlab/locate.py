"""Where a checkpoint the user named lives: the ``final`` / ``latest`` alias, and Hugging Face Hub ids offline.

:func:`resolve_checkpoint` turns what a user types into a path on disk, before any loader looks at it:

* an existing path is returned as it is;
* ``RUN/checkpoints/final`` (or ``latest``), and ``RUN/final``, name the last checkpoint of a pre-training or
  fine-tuning run in training order (:func:`freqlab.checkpoints.discover_checkpoints`; for a fine-tuning run the
  EMA generator of its last save, which sorts after the raw one);
* ``owner/name`` or ``owner/name/subfolder`` that is not a local path is looked up in the local Hugging Face cache
  (``HF_HUB_CACHE``, ``HF_HOME``; never downloaded). Not cached: one line saying so and how to fetch it on a
  connected machine.

Anything else is returned unchanged, so the loader's own "does not exist" message applies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["ALIASES", "resolve_checkpoint", "looks_like_hub_id"]

#: Names that stand for the last checkpoint of a run.
ALIASES = ("final", "latest")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_](/[\w.-]+)*$")


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` or ``owner/name/subfolder``: two or more plain path parts, not absolute, no ``.``/``..``."""
    parts = text.split("/")
    return bool(_HUB_ID.match(text)) and len(parts) >= 2 and not any(p in (".", "..") for p in parts)


def _alias(path: Path) -> Path | None:
    if path.name not in ALIASES or path.exists() or not path.parent.is_dir():
        return None
    from freqlab.checkpoints import discover_checkpoints

    try:
        found = discover_checkpoints(path.parent)
    except ValueError as err:
        raise ValueError(f"{path} names the last checkpoint of a run, but {err}") from None
    return Path(found[-1].path)


def _from_hub_cache(repo: str) -> Path:
    owner, name, *sub = repo.split("/")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # very old huggingface_hub
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import LocalEntryNotFoundError
    try:
        root = Path(snapshot_download(f"{owner}/{name}", local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise FileNotFoundError(
            f"{repo} does not exist as a local path, and read as a Hugging Face Hub id, {owner}/{name} is not in the "
            f"local Hugging Face cache (freqlab never downloads): on a connected machine run `huggingface-cli "
            f"download {owner}/{name}` and copy its cache (~/.cache/huggingface) here, or pass the model's "
            "folder") from None
    path = root.joinpath(*sub)
    if not path.exists():
        raise FileNotFoundError(f"{owner}/{name} is in the Hugging Face cache ({root}) but has no {'/'.join(sub)}")
    return path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The path on disk of the checkpoint ``path`` names (see the module docstring)."""
    text = os.fspath(path)
    resolved = Path(text).expanduser()
    if resolved.exists():
        return resolved
    alias = _alias(resolved)
    if alias is not None:
        return alias
    if looks_like_hub_id(text):
        return _from_hub_cache(text)
    return resolved
