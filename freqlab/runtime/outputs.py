"""Owning an output: atomic writes, one run per output at a time, and the temporary files a killed run left.

Every file freqlab writes goes through :func:`write_atomic` (a hidden temporary file in the same directory, flushed,
given the umask's permissions, renamed over the target), so a crash leaves the old file or the new one, never half.

:func:`hold` takes an **advisory lock** on an output (a results file or a run directory) for the whole run. The lock
is the hidden sibling file ``.<name>.lock`` (``runs/.pretrain.lock`` for ``runs/pretrain``, ``.sweep.nc.lock``
for ``sweep.nc``), locked with ``flock`` and holding one JSON line about its holder (pid, host, start time,
command). A second run into the same output refuses at once with :class:`OutputInUse`, naming the holder.

What is guaranteed:

* **Same machine**: always. The kernel releases the lock when its process ends, however it ends (``kill -9``
  included), so a lock left by a dead run is taken over by the next one, which says so.
* **Shared file systems**: as far as the file system honours ``flock``. On Linux, NFS (v3 with NLM, v4) maps it
  to POSIX locks that the server arbitrates between hosts; Lustre, GPFS and BeeGFS do when mounted with their
  lock options. Where the file system refuses locks (``ENOLCK``, ``EOPNOTSUPP``) the run goes on without one and
  says so in one line. Not on Windows (no ``fcntl``): there freqlab runs without a lock.
* **Several processes of one run** (``torchrun``): rank 0 holds the lock (``RANK`` unset or ``"0"``); the other
  ranks do not take it. The lock is re-entrant within a process, so the command line can take it before importing
  torch (a busy output refuses in a fraction of a second) and the library functions take it again for API users.

When it takes a lock, :func:`hold` removes the temporary files a killed run left in that output
(:func:`clean_temporaries`): ``.<name>.*.tmp`` beside a results file; inside a run directory and its direct
sub-folders, hidden entries named like freqlab's temporaries. This module imports nothing heavier than the
standard library.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import os
import shutil
import socket
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputInUse", "write_atomic", "hold", "holding", "lock_path", "clean_temporaries", "check_writable_under",
           "note"]


class OutputInUse(RuntimeError):
    """Another live run holds the lock of this output."""


# --------------------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask: read from ``/proc/self/status`` where there is one (Linux), so it is never changed;
    elsewhere set and restored at once (:func:`os.umask` is the only portable way to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Write the file ``path`` atomically: ``writer(tmp)`` writes a temporary file in the same directory, which is
    then flushed to disk, given the mode a new file gets (``0o666 & ~umask``) and renamed over ``path``.

    The temporary file (``.<name>.<random>.tmp``, hidden) exists, empty, when ``writer`` is called; ``writer`` may
    overwrite or replace it. The parent directory is created. On any failure (in ``writer`` or after) the
    temporary file is removed and an existing file at ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as handle:  # make the bytes durable before the rename makes them visible
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; honour the umask like open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


# --------------------------------------------------------------------------------------------------------------
# temporaries of a killed run
# --------------------------------------------------------------------------------------------------------------
def _is_temporary(name: str) -> bool:
    """Names of freqlab's temporaries: ``.<name>.<random>.tmp`` (files), ``.<name>.tmp-<random>`` and
    ``.<name>.old-<random>`` (checkpoint directories), ``.tmp-<name>`` (fine-tuning state)."""
    return name.startswith(".") and not name.endswith(".lock") and (
        name.endswith(".tmp") or ".tmp-" in name or ".old-" in name)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except OSError:
        return False


def clean_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders a killed run left in the output ``target``; return what was removed.

    A results file: its hidden siblings ``.<name>.*.tmp``. A run directory: hidden temporaries (names as
    :func:`write_atomic` and the checkpoint writers make them) in it and in its direct sub-folders, skipping a
    sub-folder that has a lock file of its own (another run's output). Call it only while holding ``target``'s lock.
    """
    target = Path(target)
    removed: list[Path] = []
    if target.is_dir():
        folders = [target] + [p for p in target.iterdir() if p.is_dir() and not p.name.startswith(".")
                              and not lock_path(p).exists()]
        for folder in folders:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            removed += [p for p in entries if _is_temporary(p.name) and _remove(p)]
    elif target.parent.is_dir():
        prefix = f".{target.name}."
        removed += [p for p in target.parent.iterdir()
                    if p.name.startswith(prefix) and p.name.endswith(".tmp") and _remove(p)]
    return removed


# --------------------------------------------------------------------------------------------------------------
# the advisory lock
# --------------------------------------------------------------------------------------------------------------
def check_writable_under(target: str | os.PathLike, *, include_self: bool = False) -> None:
    """NotADirectoryError (one line) when a folder above ``target`` (or ``target`` itself, with ``include_self``, for
    an output folder) is a file: caught before any work instead of as a raw Errno at the first write."""
    target = Path(target)
    blocked = next((p for p in ((target,) if include_self else ()) + tuple(target.parents)
                    if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise NotADirectoryError(f"cannot write {target}: {blocked} is a file, not a folder; choose another output")


_HELD: dict[str, list] = {}  # lock file -> [descriptor, depth, directories created for it]


def _real(target: str | os.PathLike) -> Path:
    """The output's real path: symlinks in its existing folders resolved (the output itself need not exist)."""
    return Path(os.path.realpath(Path(target).expanduser()))


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output: its hidden sibling ``.<name>.lock``, beside its real path."""
    target = _real(target)
    return target.parent / f".{target.name}.lock"


def _holder_text(raw: str) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def note(message: str) -> None:
    """One line on stderr, ``freqlab: <message>``: what a run tells its user without stopping."""
    print(f"freqlab: {message}", file=sys.stderr, flush=True)


def _acquire(path: Path, target: Path) -> int:
    """Open and lock ``path``; return its descriptor. Retries when the file was replaced while we waited."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = ""
            with contextlib.suppress(OSError):
                raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise OutputInUse(f"{target} is in use by another freqlab run ({_holder_text(raw)}); wait for it to "
                              "finish or choose another output") from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder between our open and our lock
            return fd
        os.close(fd)


def _release(path: Path) -> None:
    fd, _, created = _HELD.pop(str(path))
    with contextlib.suppress(OSError):
        path.unlink()  # while still locked: a waiter that opened the old file sees it replaced and retries
    os.close(fd)
    for folder in reversed(created):  # folders made only to hold the lock, left empty by a run that failed early
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def hold(target: str | os.PathLike | None, *, command: str | None = None) -> Iterator[None]:
    """Hold the advisory lock of the output ``target`` (results file or run directory) for the ``with`` block.

    Raises :class:`OutputInUse` (one line naming the holder) when a live run holds it. Takes over, with a note on
    stderr, a lock whose holder ended without releasing it, and removes that run's temporaries
    (:func:`clean_temporaries`). Re-entrant within a process; a no-op for ``None`` and on ranks other than 0.
    """
    if target is None or os.environ.get("RANK", "0") != "0" or fcntl is None:
        yield
        return
    target = _real(target)  # one lock per real output: a folder reached through a symlink is the same folder
    check_writable_under(target)
    path = lock_path(target)
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    created = [p for p in reversed(path.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, target)
    except OutputInUse:
        raise
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):  # read-only: say so before any work
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise PermissionError(f"cannot write into {target.parent} ({err.strerror}): choose an output on a "
                                  "writable file system") from None
        # a file system without locks
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        note(f"cannot lock {target} on this file system ({err.strerror}); running without a lock, so do not "
              "start a second run into it")
        yield
        return
    _HELD[key] = [fd, 1, created]
    try:
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if previous:
            note(f"a previous run into {target} ended without releasing its lock ({_holder_text(previous)}); "
                  "taking it over")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        removed = clean_temporaries(target)
        if removed:
            note(f"removed {len(removed)} temporary file(s) left in {target} by an interrupted run")
        yield
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            _release(path)


def holding(argument: str) -> Callable:
    """Decorator: hold the lock of the output named by the function's parameter ``argument`` during each call."""
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with hold(bound.arguments[argument]):
                return fn(*args, **kwargs)
        return wrapper
    return decorate
