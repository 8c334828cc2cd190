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
import re
from collections.abc import Sequence
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


def _sorted_keys(*histograms: dict[str, int]) -> list[str]:
    return sorted({k for h in histograms for k in h}, key=float)


def _grouped_bars(ax: Axes, series: dict[str, dict[str, int]], colors: dict[str, str], *, xlabel: str,
                  ylabel: str, title: str) -> None:
    """Side-by-side bars, one group per histogram key, one bar per named series."""
    keys = _sorted_keys(*series.values())
    width = 0.8 / max(len(series), 1)
    for i, (name, hist) in enumerate(series.items()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(keys))]
        ax.bar(xs, [hist.get(k, 0) for k in keys], width=width, label=name, color=colors.get(name))
    ax.set_xticks(range(len(keys)), keys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not keys:
        ax.text(0.5, 0.5, "no pairs", transform=ax.transAxes, ha="center", va="center")
    ax.legend()


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
    _grouped_bars(ax, hists, _SPLIT_COLORS, xlabel="pairs in a scenario", ylabel="scenarios",
                  title=f"{report.dataset}: pairs per scenario")
    ginis = ", ".join(
        f"{s} Gini {report.splits[s].pairs_per_scenario.gini:.2f}"
        for s in ("train", "test") if report.splits[s].pairs_per_scenario.gini is not None
    )
    if ginis:
        ax.text(0.01, 0.97, ginis, transform=ax.transAxes, va="top", fontsize=9)
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
    fig.colorbar(image, ax=ax, label="pairs")
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
