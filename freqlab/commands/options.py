"""Command-line options generated from a study's settings (:mod:`freqlab.runtime.settings`): one ``--field-name``
per field, its help the field's doc with the actual default, its value parsed and checked as the field says."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from freqlab.runtime.settings import field_default

__all__ = ["add_setting_options", "setting_values", "shown"]


def shown(value: Any) -> str:
    """A default as a user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def argument_type(parse):
    """``parse`` whose ValueError argparse prints as it is (not as "invalid parse value")."""

    def read(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    read.__name__ = getattr(parse, "__name__", "value")
    return read


def add_setting_options(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (), title: str | None = None,
                        presets: dict[str, Any] | None = None) -> None:
    """An option for every field of ``cls`` that the command line offers, in field order; ``skip`` leaves out
    fields another option already sets (``--seed``: :func:`freqlab.commands.common.add_common`).

    ``presets`` (``{name: an instance of cls}``): every option defaults to None (the preset's value, which the
    command applies) and its help gives each preset's value."""
    target = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "doc" not in meta or not meta.get("cli", True) or f.name in skip:
            continue
        default = field_default(f)
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None if presets else default}
        if isinstance(default, bool) and "parse" not in meta:
            kwargs["action"] = argparse.BooleanOptionalAction if (default or presets) else "store_true"
        else:
            kwargs["type"] = argument_type(meta["parse"]) if "parse" in meta else (
                type(default) if default is not None else str)
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
            kwargs["metavar"] = meta.get("metavar") or (None if "choices" in meta else f.name.upper())
        kwargs["help"] = f"{meta['doc']} ({_defaults_text(f.name, default, presets)})"
        target.add_argument(flag, **kwargs)


def _defaults_text(name: str, default: Any, presets: dict[str, Any] | None) -> str:
    if not presets:
        return f"default: {shown(default)}"
    values = {preset: shown(getattr(config, name)) for preset, config in presets.items()}
    if len(set(values.values())) == 1:
        return f"default: {next(iter(values.values()))}"
    return "default: " + "; ".join(f"{preset} {value}" for preset, value in values.items())


def setting_values(cls, args: argparse.Namespace) -> dict:
    """The fields of ``cls`` that ``args`` holds (by their own names), to build the config with."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return {k: v for k, v in vars(args).items() if k in names}
