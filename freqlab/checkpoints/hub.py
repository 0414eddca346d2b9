"""Hugging Face Hub ids offline: ``owner/name`` or ``owner/name/subfolder`` that is not a local path is looked up in
the local Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``; never downloaded). Not cached: one line saying so and
how to fetch it on a connected machine. :func:`freqlab.checkpoints.store.resolve_checkpoint` uses it, after the run
aliases ``final`` / ``latest``.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["from_hub_cache", "looks_like_hub_id"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_](/[\w.-]+)*$")


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` or ``owner/name/subfolder``: two or more plain path parts, not absolute, no ``.``/``..``."""
    parts = text.split("/")
    return bool(_HUB_ID.match(text)) and len(parts) >= 2 and not any(p in (".", "..") for p in parts)


def from_hub_cache(repo: str) -> Path:
    """The local path of Hub id ``repo`` (``owner/name[/subfolder]``) in the Hugging Face cache; never downloads."""
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
