"""The Pareto front of a sweep, per board: front.json and front.png.

A point is *deployable* on a board when it trained, is bit-exact, its firmware fits the board
(flash, SRAM, stack) and it meets the board's constraints from the space (``flash <= 16384``,
...). Among the deployable points, the front holds those no other point beats on every
objective (default: higher accuracy, fewer instructions per inference) and equals on none
it loses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .space import MAXIMISED, Space


def measurements(row: dict[str, Any], board: str) -> dict[str, Any]:
    b = row.get("boards", {}).get(board) or {}
    return {"accuracy": row.get("accuracy"), "instructions": b.get("instructions"),
            "flash": b.get("flash"), "sram": b.get("sram")}


def assess(row: dict[str, Any], board: str, space: Space) -> tuple[bool, list[str]]:
    """(deployable on ``board``, the reasons it is not)."""
    b = row.get("boards", {}).get(board) or {}
    m = measurements(row, board)
    why = []
    if m["accuracy"] is None:
        why.append(row.get("reason") or "not measured")
    if row.get("mismatches"):
        why.append(f"not bit-exact ({row['mismatches']} mismatches)")
    if not b.get("fits"):
        why.append(b.get("reason") or "does not fit")
    elif m["instructions"] is None:
        why.append(b.get("reason") or "not benched")
    if row.get("status") != "ok" and not why:
        why.append(row.get("reason") or "failed")
    for c in space.board_spec(board).constraints:
        if not c.holds(m[c.metric]):
            why.append(f"violates {c} ({m[c.metric]})")
    return not why, list(dict.fromkeys(why))


def pareto(values: list[tuple[float, ...]], maximise: list[bool]) -> list[int]:
    """Indices of the non-dominated tuples (objectives maximised where ``maximise``)."""
    signed = [tuple(v if mx else -v for v, mx in zip(t, maximise)) for t in values]

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, a in enumerate(signed) if not any(dominates(b, a) for j, b in enumerate(signed) if j != i)]


def limits(space: Space, board: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The board's budgets (from its builds) and the space's constraints on it."""
    budgets = {"flash": None, "sram": None}
    for r in rows:
        b = r.get("boards", {}).get(board) or {}
        budgets["flash"] = budgets["flash"] or b.get("flash_budget")
        budgets["sram"] = budgets["sram"] or b.get("sram_budget")
    return {"flash_budget": budgets["flash"], "sram_budget": budgets["sram"],
            "constraints": [str(c) for c in space.board_spec(board).constraints]}


def front_data(rows: list[dict[str, Any]], space: Space, png: str | None = None) -> dict[str, Any]:
    maximise = [o in MAXIMISED for o in space.objectives]
    boards = {}
    for board in (b.name for b in space.boards):
        points = []
        for r in rows:
            ok, why = assess(r, board, space)
            b = r.get("boards", {}).get(board) or {}
            points.append({"id": r["id"], "params": r.get("params", {}), **measurements(r, board),
                           "fits": b.get("fits"), "kernels": b.get("kernels"), "deployable": ok,
                           # not deployable for what it is, not for a limit: it did not train or is not bit-exact
                           "failed": r.get("accuracy") is None or bool(r.get("mismatches")),
                           "not_deployable_because": why, "on_front": False, "model": r.get("model")})
        ok = [p for p in points if p["deployable"]]
        for i in pareto([tuple(p[o] for o in space.objectives) for p in ok], maximise):
            ok[i]["on_front"] = True
        front = sorted((p for p in ok if p["on_front"]), key=lambda p: p["instructions"])
        boards[board] = {"limits": limits(space, board, rows), "points": points,
                         "front": [p["id"] for p in front]}
    return {"objectives": [f"{o} ({'max' if mx else 'min'})" for o, mx in zip(space.objectives, maximise)],
            "boards": boards, "png": png}


def write(rows: list[dict[str, Any]], space: Space, out: Path) -> dict[str, Any]:
    """front.json and front.png in ``out``; returns front.json's content."""
    png = out / "front.png"
    data = front_data(rows, space, str(png))
    draw(data, png)
    (out / "front.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


# ------------------------------------------------------------------------------ the picture
def _label(params: dict[str, Any]) -> str:
    return "  ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in params.values())


def _kib(n: float) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n:.0f} B"


def _place_numbers(ax, points: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """An offset (in points) for each front number, away from the numbers already placed, so
    that a cluster of front points stays readable."""
    ax.autoscale_view()
    xy = ax.transData.transform(points) if points else []
    offsets = [(0, 9), (12, -3), (0, -15), (-12, -3), (12, 9), (-12, 9), (12, -15), (-12, -15)]
    placed: list[tuple[float, float]] = []
    chosen = []
    for (x, y) in xy:
        best = offsets[0]
        for dx, dy in offsets:  # display units are pixels at the figure's dpi: ~1.5 per point
            cx, cy = x + 1.5 * dx, y + 1.5 * dy
            if all(abs(cx - px) > 14 or abs(cy - py) > 14 for px, py in placed):
                best = (dx, dy)
                break
        placed.append((x + 1.5 * best[0], y + 1.5 * best[1]))
        chosen.append(best)
    return chosen


def draw(data: dict[str, Any], path: Path) -> None:
    """Per board: accuracy against instructions per inference (area by flash, the front joined
    as a staircase, points over the board's memory or a constraint hollow red, points that
    failed or are not bit-exact hollow grey), and below it flash and SRAM of each point against
    the board's limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator

    boards = data["boards"]
    # one board: a wider figure, so that the legend below it has room
    fig, axes = plt.subplots(2, len(boards), figsize=(max(9.6, 7.2 * len(boards)), 9.4), squeeze=False,
                             gridspec_kw={"height_ratios": [2.3, 1]}, sharex="col")
    flashes = [p["flash"] for b in boards.values() for p in b["points"] if p["flash"]]
    biggest = max(flashes, default=1)

    def area(flash):
        return 25 + 400 * (flash or 0) / biggest

    for col, (board, b) in enumerate(boards.items()):
        top, bottom = axes[0][col], axes[1][col]
        pts = [p for p in b["points"] if p["instructions"] is not None and p["accuracy"] is not None]
        lim = b["limits"]
        ok = [p for p in pts if p["deployable"] and not p["on_front"]]
        over = [p for p in pts if not p["deployable"] and not p["failed"]]  # over the memory or a constraint
        bad = [p for p in pts if p["failed"]]
        front = [p for p in pts if p["on_front"]]
        front.sort(key=lambda p: p["instructions"])
        # a few points far below the rest (a recipe that did not train) would squash the
        # interesting band: they are drawn on the bottom edge as triangles, their value in the key
        accs = sorted(100 * p["accuracy"] for p in pts)
        floor = None
        if accs and accs[-1] - accs[0] > 20:
            floor = max(accs[0], accs[-1] - 20)
            top.set_ylim(floor - 1, accs[-1] + 1)

        def y(p):
            return max(100 * p["accuracy"], floor - 0.5) if floor is not None else 100 * p["accuracy"]

        top.scatter([p["instructions"] for p in bad], [y(p) for p in bad],
                    s=[area(p["flash"]) for p in bad], facecolors="none", edgecolors="0.55", linewidths=1.2)
        top.scatter([p["instructions"] for p in over], [y(p) for p in over],
                    s=[area(p["flash"]) for p in over], facecolors="none", edgecolors="tab:red", linewidths=1.2)
        top.scatter([p["instructions"] for p in ok], [y(p) for p in ok],
                    s=[area(p["flash"]) for p in ok], color="tab:blue", alpha=0.55, edgecolors="tab:blue")
        below = [p for p in pts if floor is not None and 100 * p["accuracy"] < floor - 0.5]
        top.scatter([p["instructions"] for p in below], [y(p) for p in below], marker="v", s=30, color="black",
                    zorder=4)
        groups: list[list[dict[str, Any]]] = []  # their accuracy, which the axis does not show; one
        for p in sorted(below, key=lambda p: p["instructions"]):  # label for points side by side
            if groups and p["instructions"] <= 1.05 * groups[-1][-1]["instructions"]:
                groups[-1].append(p)
            else:
                groups.append([p])
        for g in groups:
            top.annotate(", ".join(f"{100 * p['accuracy']:.0f} %" for p in sorted(g, key=lambda p: p["accuracy"])),
                         (g[0]["instructions"], y(g[0])), textcoords="offset points", xytext=(8, 4), fontsize=7,
                         color="0.25", zorder=5)
        if front:
            xs = [p["instructions"] for p in front]
            ys = [y(p) for p in front]
            top.step(xs, ys, where="post", color="tab:orange", lw=1.6, zorder=2)
            top.scatter(xs, ys, s=[area(p["flash"]) for p in front], color="tab:orange", edgecolors="black",
                        linewidths=0.8, zorder=3)
            key = []
            xs_all = [p["instructions"] for p in pts]
            if xs_all and max(xs_all) > 8 * min(xs_all):  # the scale the numbers are placed on
                top.set_xscale("log")
            offsets = _place_numbers(top, list(zip(xs, ys)))
            for k, (p, x, yy, off) in enumerate(zip(front, xs, ys, offsets), 1):  # numbered, named in the key
                top.annotate(str(k), (x, yy), textcoords="offset points", xytext=off, ha="center", va="center",
                             fontsize=8, fontweight="bold", color="0.1", zorder=5)
                key.append(f"{k:>2}  {100 * p['accuracy']:5.1f} %  {p['instructions']:>9,.0f}  {_label(p['params'])}")
            names = list(dict.fromkeys(k for p in front for k in p["params"]))
            top.text(0.99, 0.02, f"Pareto front: accuracy, instructions, {'  '.join(names)}\n" + "\n".join(key),
                     transform=top.transAxes, ha="right", va="bottom", multialignment="left", fontsize=7,
                     family="monospace",
                     bbox=dict(boxstyle="round", facecolor="white", alpha=0.9, edgecolor="0.7"), zorder=6)
        for c in lim["constraints"]:  # limits on the plotted axes
            metric, op, bound = c.split()
            if metric == "instructions":
                for ax in (top, bottom):
                    ax.axvline(float(bound), color="tab:red", ls="--", lw=1)
            elif metric == "accuracy":
                top.axhline(100 * float(bound), color="tab:red", ls="--", lw=1)
        top.set_ylabel("accuracy on the test set (%)" + ("" if floor is None else " (▼: below the axis)"))
        n_bad = len([p for p in b["points"] if not p["deployable"]])
        top.set_title(f"{board}: {len(front)} on the front, {len(ok) + len(front)} deployable, "
                      f"{n_bad} not", fontsize=11)
        top.grid(alpha=0.3)

        # flash and SRAM of every point, against the board's limits
        for key, marker, color in (("flash", "o", "tab:blue"), ("sram", "s", "tab:green")):
            xs = [p["instructions"] for p in pts if p[key]]
            ys = [p[key] for p in pts if p[key]]
            fill = [color if p["deployable"] else "none" for p in pts if p[key]]
            bottom.scatter(xs, ys, marker=marker, s=28, facecolors=fill, edgecolors=color, linewidths=1)
            limit = _limit(lim, key)
            if limit is not None:
                bottom.axhline(limit, color=color, ls="--", lw=1.2)
                bottom.annotate(f"{'flash' if key == 'flash' else 'SRAM'} limit {_kib(limit)}", (0.01, limit),
                                xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(2, 3),
                                fontsize=8, color=color)
        bottom.set_yscale("log")
        bottom.yaxis.set_major_locator(LogLocator(base=2))  # 1 KB, 2 KB, 4 KB, ...: how parts are sized
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _kib(v)))
        bottom.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        bottom.set_ylabel("firmware image")
        bottom.set_xlabel("instructions per inference (median, emulated board)")
        bottom.grid(alpha=0.3, which="both")
        xs = [p["instructions"] for p in pts]
        if xs and max(xs) > 8 * min(xs):
            top.set_xscale("log")
        counts = FuncFormatter(lambda v, _pos: f"{v:,.0f}")  # 20,000 rather than 2x10^4
        bottom.xaxis.set_major_formatter(counts)
        log = top.get_xscale() == "log"
        bottom.xaxis.set_minor_formatter(FuncFormatter(  # on a log axis: 20,000, 30,000, 50,000; not every tick
            lambda v, _pos, log=log: f"{v:,.0f}" if log and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5)
            else ""))

    sizes = sorted({2 ** round(math.log2(f)) for f in (min(flashes, default=1), biggest)})
    handles = [
        Line2D([], [], ls="-", marker="o", color="tab:orange", markeredgecolor="black", ms=8,
               label="Pareto front (deployable, none better on both)"),
        Line2D([], [], ls="", marker="o", color="tab:blue", alpha=0.55, ms=8, label="deployable"),
        Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="tab:red", ms=8,
               label="over the board's memory or a constraint\n(over the memory: counted on an emulator with more)"),
        Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="0.55", ms=8,
               label="not bit-exact or failed"),
        *[Line2D([], [], ls="", marker="o", color="0.7", ms=math.sqrt(area(s)), label=f"flash {_kib(s)}")
          for s in sizes],
        Line2D([], [], ls="", marker="o", color="tab:blue", ms=5, label="flash (lower panels)"),
        Line2D([], [], ls="", marker="s", color="tab:green", ms=5, label="SRAM (lower panels)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.suptitle("Accuracy against instructions per inference; point area by flash", fontsize=12)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _limit(lim: dict[str, Any], key: str) -> float | None:
    bounds = [lim[f"{key}_budget"]] if lim.get(f"{key}_budget") else []
    for c in lim["constraints"]:
        metric, op, bound = c.split()
        if metric == key and op in ("<=", "<"):
            bounds.append(float(bound))
    return min(bounds) if bounds else None
