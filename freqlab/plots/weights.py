"""The figure of :mod:`freqlab.inside.weight_change`: which layers a fine-tune moved, against what D2O-F freezes."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from freqlab.plots.style import palette, panels, themed

__all__ = ["weight_change_figure", "REL_LABEL"]

REL_LABEL = "relative change ‖ΔW‖ / ‖W‖ (dimensionless)"
WIDE = 30.0  # a log axis when the positive values span more than this factor


def _policy_name(ds: xr.Dataset) -> str:
    policy = str(ds.attrs.get("policy", "?"))
    return "D2O-F ('conv')" if policy == "conv" else f"policy {policy!r}"


def _colours() -> dict[str, tuple]:
    blue, orange, green = palette(3)
    return {"frozen": orange, "partly": green, "trainable": blue}


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else f"{n}"


def _group_of(name: str, depth: int) -> str:
    parts = name.split(".")
    if parts[0] in ("unet", "net", "model") and len(parts) > 2:  # the wrapper's attribute: no information
        parts = parts[1:]
    keep = depth + (1 if len(parts) > depth and parts[depth - 1].endswith(("blocks", "enc", "dec")) else 0)
    return ".".join(parts[:keep]) if len(parts) > keep else ".".join(parts[:-1]) or parts[0]


def _groups(names: list[str]) -> list[tuple[int, int, str]]:
    """Runs of consecutive tensors in one block, ``(start, stop, label)``; coarser when there would be too many."""
    for depth in (1, 0):
        keys = [_group_of(n, depth) if depth else n.split(".")[0] for n in names]
        runs, start = [], 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or keys[i] != keys[start]:
                runs.append((start, i, keys[start]))
                start = i
        if len(runs) <= 18:
            return runs
    return runs


def _types_panel(ax: plt.Axes, ds: xr.Dataset, other: xr.Dataset | None = None) -> None:
    colours = _colours()
    n = ds.type_n_params.values
    keep = n > 0
    kinds = [str(k) for k in ds.layer_type.values[keep]]
    rel, n, share = ds.type_rel_change.values[keep], n[keep], ds.type_frozen_share.values[keep]
    order = np.argsort(-np.where(np.isfinite(rel), rel, -1.0), kind="stable")  # largest at the top
    kinds, rel, n, share = [kinds[i] for i in order], rel[order], n[order], share[order]
    beside = None if other is None else other.type_rel_change.sel(layer_type=kinds).values
    positive = rel[np.isfinite(rel) & (rel > 0)]
    log = positive.size > 0 and positive.max() / positive.min() > WIDE
    y = np.arange(len(kinds))

    def state(s: float) -> str:
        return "frozen" if s >= 0.9 else "trainable" if s <= 0.1 else "partly"

    ax.barh(y, np.where(np.isfinite(rel) & ((rel > 0) | (not log)), rel, 0.0),
            color=[colours[state(s)] for s in share], height=0.7)
    if beside is not None:  # the other fine-tune, type by type (its frozen types did not move: no marker)
        shown = np.isfinite(beside) & (beside > 0)
        ax.plot(beside[shown], y[shown], "D", ms=5, mfc="white", mec="black", mew=1.0,
                label=f"{other.attrs.get('after', 'other run')}")
    if log:
        ax.set_xscale("log")
        lo, hi = positive.min() / 3, positive.max() * 12
    else:
        lo, hi = 0.0, (positive.max() if positive.size else 1.0) * 1.45
    ax.set_xlim(lo, hi)
    for yi, (r, count) in enumerate(zip(rel, n)):
        end = r if np.isfinite(r) and r > 0 else lo
        note = f"  {_count(int(count))} params" + ("" if np.isfinite(r) and r > 0 else
                                                   ("  (no change)" if r == 0 else "  (zero norm)"))
        ax.text(end, yi, note, va="center", fontsize=7.5)
    ax.set_yticks(y, kinds)
    ax.invert_yaxis()
    ax.set_xlabel(REL_LABEL)
    ax.set_title("per layer type", fontsize=10)
    policy = _policy_name(ds)
    labels = {"frozen": f"type ≥ 90 % frozen by {policy}", "partly": "type partly frozen",
              "trainable": f"type ≥ 90 % trainable under {policy}"}
    present = [k for k in labels if k in {state(s) for s in share}]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in present]
    names = [labels[k] for k in present]
    if beside is not None:
        handles.append(plt.Line2D([], [], ls="none", marker="D", mfc="white", mec="black"))
        names.append(f"the D2O-F fine-tune's change ({other.attrs.get('after', '?')})")
    ax.legend(handles, names, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    ax.grid(axis="y", visible=False)


def _tensors_panel(ax: plt.Axes, ds: xr.Dataset) -> None:
    colours = _colours()
    rel = ds.rel_change.values
    frozen = ds.frozen_by_policy.values.astype(bool)
    x = np.arange(rel.size)
    positive = rel[np.isfinite(rel) & (rel > 0)]
    policy = _policy_name(ds)
    if positive.size:
        ax.set_yscale("log")
        floor = positive.min() / 10
        if (rel == 0).any():  # exact zeros have no place on a log axis: drawn on a floor line, said so
            ax.axhline(floor, color="0.5", lw=0.8, ls=":")
            ax.text(0.005, floor / 1.3, " exactly 0 (drawn at this line)", transform=ax.get_yaxis_transform(),
                    va="top", fontsize=7, color="0.35")
            bottom = floor / 8
        else:
            bottom = positive.min() / 3
        shown = np.where(rel > 0, rel, floor)
        ax.set_ylim(bottom, bottom * (positive.max() / bottom) ** 1.45)  # headroom for the text box
    else:
        shown = np.where(np.isfinite(rel), rel, 0.0)
        ax.set_ylim(-0.5, 1)
        ax.text(0.5, 0.5, "no tensor changed: every relative change is exactly 0", transform=ax.transAxes,
                ha="center", fontsize=9)
    ok = np.isfinite(rel)
    ax.scatter(x[ok & frozen], shown[ok & frozen], s=14, color=colours["frozen"], edgecolor=colours["frozen"],
               label=f"frozen by {policy}", zorder=3)
    ax.scatter(x[ok & ~frozen], shown[ok & ~frozen], s=14, facecolor="none", edgecolor=colours["trainable"],
               linewidth=0.9, label=f"trainable under {policy}", zorder=3)
    runs = _groups([str(n) for n in ds.parameter.values])
    for start, _, _ in runs[1:]:
        ax.axvline(start - 0.5, color="0.8", lw=0.6, zorder=1)
    ticks, last = [], -math.inf
    for a, b, label in runs:  # a label too close to the previous one is left out
        if (a + b - 1) / 2 - last >= rel.size / 45:
            ticks.append(((a + b - 1) / 2, label))
            last = (a + b - 1) / 2
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-1, rel.size)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel(f"parameter tensor, in forward order ({rel.size} tensors; ticks: blocks)")
    ax.set_ylabel(REL_LABEL)
    ax.set_title("per parameter tensor", fontsize=10, loc="left")
    ax.legend(fontsize=7.5, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, borderaxespad=0.2)
    fc, fp = float(ds.frozen_share_of_change), float(ds.frozen_share_of_params)
    text = (f"share of the squared change ‖ΔW‖² on\nthe {policy} frozen set: "
            + ("undefined (nothing changed)" if not math.isfinite(fc) else f"{fc:.1%}")
            + f"\nits share of the parameters: {fp:.1%}")
    nan = int((~ok).sum())
    if nan:
        text += f"\n{nan} tensor(s) with ‖W‖ = 0 (relative change\nundefined) not drawn"
    ax.text(0.015, 0.97, text, transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})


@themed
def weight_change_figure(ds: xr.Dataset, other: xr.Dataset | None = None, *, axes=None) -> np.ndarray:
    """What a fine-tune moved (a :func:`freqlab.inside.weight_change.weight_change` Dataset), in two panels.

    Left: per layer type, the relative change ``sqrt(Σ‖ΔW‖²)/sqrt(Σ‖W‖²)`` (bars, log axis when the values span
    more than 30×), coloured by how much of the type the policy freezes (≥ 90 %, partly, ≤ 10 %), with the type's
    parameter count. Right: per parameter tensor in forward order, its relative change on a log axis (tensors that
    did not change sit on the dotted floor), filled for tensors the policy freezes, open for trainable ones, with
    the share of the squared change on the frozen set against its share of the parameters. ``other`` (the D2O-F
    fine-tune's weight change, when ``ds`` is an unfrozen D2O run's) adds its per-type change as diamonds on the
    left. ``axes``: two Axes (else a new figure). Returns the Axes drawn on, ``(1, 2)``.
    """
    fig, axes, owned = panels(axes, 1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.7]})
    left, right = axes[0]
    _types_panel(left, ds, other)
    _tensors_panel(right, ds)
    before, after = ds.attrs.get("before", "before"), ds.attrs.get("after", "after")
    if owned:
        fig.suptitle(f"What fine-tuning moved: {after} against {before}", fontsize=10.5)
        fig.tight_layout()
    return axes
