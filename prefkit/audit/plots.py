"""``write_audit``: ``audit.json`` and the audit's PNG plots, drawn from the report alone.

Plots use matplotlib's object API (``Figure`` rendered by the Agg canvas), never ``pyplot``: no global backend
or figure state, so the audit runs headless and inside other programs. Files::

    OUT/audit.json
    OUT/plots/<dataset>-score_gap.png             margin histograms (first metric, safety, helpfulness)
    OUT/plots/<dataset>-agent_matrix.png          chosen x rejected agent heatmap (all pairs)
    OUT/plots/<dataset>-pairs_per_scenario.png    how many scenarios hold how many pairs
    OUT/plots/<dataset>-metric_distributions.png  safety and helpfulness, chosen vs rejected (all pairs)

Plot names carry the dataset so that several datasets' plots can sit in one folder (the dataset card's).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefkit.audit.report import AuditReport, MetricDistribution
from prefkit.store import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

AUDIT_JSON = "audit.json"
PLOTS_DIR = "plots"
_SPLIT_COLORS = {"train": "#3b6ea8", "test": "#e08a2c", "all": "#5a5a5a"}
_SIDE_COLORS = {"chosen": "#2e8b57", "rejected": "#c0392b"}

FLOAT_BIN_WIDTH = 0.25
"""Width of the bins that float values (expected scores of a logprob judge, their margins) are counted in."""
MAX_INTEGER_BARS = 40
"""Integer values spanning more than this many units are binned too (e.g. pairs per scenario in a big run)."""
_EPS = 1e-9  # a value on a bin edge (2.75 / 0.25 = 10.999...) belongs to the bin it starts


@dataclass(frozen=True)
class Bars:
    """What a bar panel draws (``bar_groups``): one group of bars per position, one bar per series.

    ``edges`` is None when every value is an integer and each has its own bar (``positions`` are the values);
    otherwise values are counted in bins ``[edges[i], edges[i + 1])`` (the last bin closed) of width ``width``,
    drawn at the bins' centres ``positions``.
    """

    positions: tuple[float, ...]
    counts: dict[str, tuple[int, ...]]
    """Per series, the count at each position."""
    width: float
    edges: tuple[float, ...] | None = None


def bar_groups(series: Mapping[str, Mapping[str, int]], *, bin_width: float = FLOAT_BIN_WIDTH) -> Bars:
    """Histograms keyed by value text (``{"2": 5, "2.55": 3}``, as ``audit.json`` writes them) as bars.

    Integer values keep one bar per value unless they span more than ``MAX_INTEGER_BARS``; float values are
    counted in bins of ``bin_width`` aligned on its multiples (0, 0.25, 0.5...). Series share the bins.
    """
    values = {float(k) for hist in series.values() for k in hist}
    if not values:
        return Bars(positions=(), counts={name: () for name in series}, width=1.0)
    low, high = min(values), max(values)
    if all(v.is_integer() for v in values) and high - low <= MAX_INTEGER_BARS:
        positions = tuple(sorted(values))
        return Bars(positions=positions, width=1.0,
                    counts={name: tuple(sum(n for k, n in hist.items() if float(k) == x) for x in positions)
                            for name, hist in series.items()})
    width = bin_width if not all(v.is_integer() for v in values) else float(math.ceil((high - low) / 30))
    start = math.floor(low / width + _EPS) * width
    n_bins = max(1, math.ceil((high - start) / width - _EPS))  # a value on the last edge joins the last bin
    edges = tuple(start + i * width for i in range(n_bins + 1))

    def index(value: float) -> int:
        return min(int(math.floor((value - start) / width + _EPS)), n_bins - 1)

    counts = {}
    for name, hist in series.items():
        row = [0] * n_bins
        for key, n in hist.items():
            row[index(float(key))] += n
        counts[name] = tuple(row)
    return Bars(positions=tuple(e + width / 2 for e in edges[:-1]), counts=counts, width=width, edges=edges)


def _grouped_bars(ax: Axes, series: dict[str, dict[str, int]], colors: dict[str, str], *, xlabel: str,
                  ylabel: str, title: str) -> Bars:
    """Side-by-side bars, one group per value (or bin of values), one bar per named series; returns what was
    drawn. The count axis has integer ticks and headroom for the legend."""
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    bars = bar_groups(series)
    bar_width = 0.8 * bars.width / max(len(series), 1)
    for i, (name, counts) in enumerate(bars.counts.items()):
        xs = [x + (i - (len(series) - 1) / 2) * bar_width for x in bars.positions]
        ax.bar(xs, counts, width=bar_width, label=name, color=colors.get(name))
    if bars.edges is None and bars.positions:
        low, high = int(bars.positions[0]), int(bars.positions[-1])
        # every integer gets its tick when there are few (MaxNLocator falls back to fractions on a short range)
        if high - low <= 12:
            ax.set_xticks(range(low, high + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(low - 0.6, high + 0.6)
    elif bars.edges is not None:
        span = bars.edges[-1] - bars.edges[0]
        ax.xaxis.set_major_locator(MultipleLocator(0.5) if span <= 4 else MaxNLocator(integer=True))
        ax.set_xlim(bars.edges[0] - bars.width / 2, bars.edges[-1] + bars.width / 2)
        xlabel += f" (bins of {bars.width:g})"
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    top = max((n for counts in bars.counts.values() for n in counts), default=0)
    ax.set_ylim(0, max(top, 1) * 1.3)  # room above the bars for the legend
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not bars.positions:
        ax.text(0.5, 0.5, "no pairs", transform=ax.transAxes, ha="center", va="center")
    ax.legend(loc="upper right")
    return bars


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _score_gap(report: AuditReport) -> Figure:
    fig, axes = _figure(13, 4.2, 3)
    splits = {s: report.splits[s] for s in ("train", "test")}
    panels = (
        ("score_gap", f"first metric ({report.strategy or '?'})"),
        ("safety_gap", "safety"),
        ("helpfulness_gap", "helpfulness"),
    )
    for ax, (field, label) in zip(axes, panels, strict=True):
        _grouped_bars(ax, {s: getattr(a, field) for s, a in splits.items()}, _SPLIT_COLORS,
                      xlabel="chosen score - rejected score", ylabel="pairs", title=f"Score gap: {label}")
    fig.suptitle(f"{report.dataset}: score gaps of the pairs")
    return fig


def _pairs_per_scenario(report: AuditReport) -> Figure:
    fig, (ax,) = _figure(8, 4.5)
    hists = {s: report.splits[s].pairs_per_scenario.histogram for s in ("train", "test")}
    ginis = ", ".join(
        f"{s} Gini {report.splits[s].pairs_per_scenario.gini:.2f}"
        for s in ("train", "test") if report.splits[s].pairs_per_scenario.gini is not None
    )
    # The Gini values go in the title, clear of the bars and the legend.
    _grouped_bars(ax, hists, _SPLIT_COLORS, xlabel="pairs in a scenario", ylabel="scenarios",
                  title=f"{report.dataset}: pairs per scenario" + (f"\n{ginis}" if ginis else ""))
    return fig


def _metric_distributions(report: AuditReport) -> Figure:
    fig, axes = _figure(10, 4.2, 2)
    everything = report.splits["all"]
    for ax, metric in zip(axes, ("safety", "helpfulness"), strict=True):
        sides: dict[str, MetricDistribution] = {
            "chosen": getattr(everything.chosen, metric), "rejected": getattr(everything.rejected, metric)
        }
        _grouped_bars(ax, {side: d.histogram for side, d in sides.items()}, _SIDE_COLORS,
                      xlabel=f"{metric} score", ylabel="pairs", title=f"{metric}: chosen vs rejected")
    fig.suptitle(f"{report.dataset}: score distributions, all {everything.pairs} pairs")
    return fig


def _agent_matrix(report: AuditReport) -> Figure:
    matrix = report.splits["all"].agent_matrix
    agents = sorted({a for row in matrix.values() for a in row} | set(matrix))
    size = max(5.0, 1.0 + 0.7 * len(agents))
    fig, (ax,) = _figure(size + 2.5, size)
    values = [[matrix.get(c, {}).get(r, 0) for r in agents] for c in agents]
    image = ax.imshow(values or [[0]], cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(agents)), agents, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(agents)), agents, fontsize=8)
    ax.set_xlabel("rejected agent")
    ax.set_ylabel("chosen agent")
    ax.set_title(f"{report.dataset}: chosen x rejected agents (pairs)")
    top = max((v for row in values for v in row), default=0)
    for i, row in enumerate(values):  # annotate each cell with its count
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > top / 2 else "black")
    from matplotlib.ticker import MaxNLocator

    colorbar = fig.colorbar(image, ax=ax, label="pairs")
    colorbar.locator = MaxNLocator(integer=True)  # counts: no fractional ticks
    colorbar.update_ticks()
    return fig


PLOTS = {
    "score_gap": _score_gap,
    "agent_matrix": _agent_matrix,
    "pairs_per_scenario": _pairs_per_scenario,
    "metric_distributions": _metric_distributions,
}
"""Plot name -> function drawing it from the report."""


def plot_paths(report: AuditReport, out_dir: Path) -> list[Path]:
    """Where ``write_audit`` puts the plots of ``report`` under ``out_dir``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", report.dataset) or "dataset"
    return [out_dir / PLOTS_DIR / f"{stem}-{name}.png" for name in PLOTS]


def write_audit(report: AuditReport, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """Write ``audit.json`` (and the PNG plots unless ``plots`` is false) into ``out_dir``, each file atomically.

    Returns:
        The paths written: ``audit.json`` first, then the plots.
    """
    out = Path(out_dir)
    written = [out / AUDIT_JSON]
    with atomic_path(written[0]) as tmp:
        tmp.write_text(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    if not plots:
        return written
    paths: Sequence[Path] = plot_paths(report, out)
    for path, draw in zip(paths, PLOTS.values(), strict=True):
        figure = draw(report)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        written.append(path)
    return written
