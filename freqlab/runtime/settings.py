"""The settings of a study, written once: a dataclass whose fields carry their own doc (the help of their
command-line option), built from a config and keywords, validated in the dataclass alone. Imports no torch.

A study (``sweep``, ``layer_spectra``, ``data_spectra``, ``finetune``) takes ``config=`` (a ready dataclass) and/or
keywords that set single fields; :func:`configure` merges them and names an unknown keyword in one line. The
command line builds its options from the same fields (:mod:`freqlab.commands.options`), so a setting, its default
and its doc exist in one place.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["setting", "configure", "documented", "field_default", "require", "setting_names", "parse_floats",
           "parse_edges", "parse_window",
           "parse_optional_int"]

T = TypeVar("T")


def setting(default: Any, doc: str, *, parse: Callable[[str], Any] | None = None, choices=None,
            metavar: str | None = None, flag: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with its doc. ``parse`` turns the option's text into the value (default: the type of the
    default), ``choices`` limits it, ``flag`` names the option (default ``--field-name``); ``cli=False`` for a
    setting the command line does not offer (it still has its doc)."""
    meta = {"doc": doc, "parse": parse, "choices": choices, "metavar": metavar, "flag": flag, "cli": cli}
    meta = {k: v for k, v in meta.items() if v is not None}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def setting_names(cls) -> tuple[str, ...]:
    """The fields a caller may set."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def configure(cls: type[T], config: T | None = None, settings: Mapping[str, Any] | None = None, *,
              what: str = "") -> T:
    """``config`` (default: ``cls()``) with the fields of ``settings`` replaced; the dataclass validates the
    result. An unknown name, or a config of another class, is one ValueError that lists what is known."""
    settings = dict(settings or {})
    names = setting_names(cls)
    unknown = sorted(set(settings) - set(names))
    what = what or cls.__name__
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {', '.join(unknown)}; the settings are {', '.join(names)}")
    if config is None:
        return cls(**settings)
    if not isinstance(config, cls):
        raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    return dataclasses.replace(config, **settings) if settings else config


def require(config: Any, *, at_least: Mapping[str, int] | None = None, choices: Mapping[str, Any] | None = None,
            why: Mapping[str, str] | None = None) -> None:
    """Check a config's fields in one message shape, a ValueError naming the first that fails:

    * each field of ``at_least`` is a whole number (stored back as an ``int``) of at least its bound:
      ``"{name} must be a whole number of at least {least}, got {value!r}"``;
    * each field declared with ``setting(..., choices=...)``, and each field of ``choices`` (for a field whose
      option takes no choices, e.g. one that may be None), is one of its values:
      ``"{name} must be one of a, b, got {value!r}"``;

    ``why`` adds a reason to a field's message, in brackets."""
    def fail(name: str, text: str) -> None:
        reason = (why or {}).get(name)
        raise ValueError(f"{name} must be {text}{f' ({reason})' if reason else ''}, got {getattr(config, name)!r}")

    for name, least in (at_least or {}).items():
        value = getattr(config, name)
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or int(value) != value or value < least):
            fail(name, f"a whole number of at least {least}")
        setattr(config, name, int(value))
    declared = {f.name: f.metadata["choices"] for f in dataclasses.fields(config) if "choices" in f.metadata}
    for name, allowed in {**declared, **(choices or {})}.items():
        if getattr(config, name) not in tuple(allowed):
            fail(name, f"one of {', '.join(map(str, allowed))}")


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default (its factory's value; None for a field without one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def documented(cls: type[T]) -> type[T]:
    """Class decorator: append each field's doc and default to the class docstring (``help(cls)`` lists them)."""
    lines = ["", "Settings", "--------"]
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("doc")
        if doc is None:
            continue
        default = field_default(f)
        lines.append(f"{f.name} (default {default!r})")
        lines.append(f"    {doc}")
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join("    " + line if line else "" for line in lines)
    return cls


# --------------------------------------------------------------------------------------------------------------
# settings read from text (the command line)
# --------------------------------------------------------------------------------------------------------------
def parse_floats(text: str) -> list[float]:
    """Comma-separated numbers (``0.02,0.1,80``)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_edges(text: str) -> tuple[float, ...]:
    """Band edges in cycles/pixel, at least two (``0,0.125,0.25,0.5``)."""
    edges = parse_floats(text)
    if len(edges) < 2:
        raise ValueError("band edges need at least two numbers, e.g. 0,0.125,0.25,0.5")
    return tuple(edges)


def parse_window(text: str) -> str | None:
    """A window name; ``none`` is no window (the periodic spectrum)."""
    return None if text.strip().lower() == "none" else text.strip()


def parse_optional_int(text: str) -> int | None:
    """A whole number, or ``none``/``all``."""
    return None if text.strip().lower() in ("none", "all") else int(text)
