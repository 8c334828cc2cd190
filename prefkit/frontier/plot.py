"""The frontier plot: each trained configuration's change in helpfulness (x) and safety (y) versus its
source model, labelled by configuration, with the least-squares line and its R²."""

from __future__ import annotations

from pathlib import Path

from prefkit.frontier.compute import FrontierReport
from prefkit.store import atomic_path

_MARKERS = "osD^vP*X"


def _title(report: FrontierReport, n_points: int) -> str:
    # Judges given as local model folders would fill the line: their last path part names them well enough.
    judges = [j.rstrip("/").rsplit("/", 1)[-1] for j in report.judges]
    judged = f"judge {', '.join(judges)}" if len(judges) <= 3 else f"{len(judges)} judges"
    seeds = ", ".join(str(s) for s in report.seeds)
    configs = "configuration" if n_points == 1 else "configurations"
    seed_word = "split seed" if len(report.seeds) == 1 else "split seeds"
    return f"Safety/helpfulness frontier ({n_points} {configs}; {judged}; {seed_word} {seeds})"


def plot_frontier(report: FrontierReport, out: str | Path, *, title: str | None = None) -> Path:
    """Write the plot of ``report`` as a PNG to ``out``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    points = [p for p in report.points if p.d_safety is not None and p.d_helpfulness is not None]
    sources = sorted({p.source for p in points})
    fig, ax = plt.subplots(figsize=(8, 6), dpi=150)
    ax.axhline(0, color="0.75", lw=0.8, zorder=0)
    ax.axvline(0, color="0.75", lw=0.8, zorder=0)
    if points:  # every change is measured from its source model, which sits at the origin
        ax.scatter([0], [0], marker="*", s=140, color="black", zorder=4, label="source model")
    for i, source in enumerate(sources):
        mine = [p for p in points if p.source == source]
        ax.scatter([p.d_helpfulness for p in mine], [p.d_safety for p in mine], s=46, zorder=3,
                   marker=_MARKERS[i % len(_MARKERS)], label=source)
        for p in mine:
            ax.annotate(p.config, (p.d_helpfulness, p.d_safety), textcoords="offset points", xytext=(5, 4),
                        fontsize=8.5)
    if report.slope is not None and report.intercept is not None and points:
        xs = [p.d_helpfulness for p in points]
        pad = 0.1 * (max(xs) - min(xs) or 1.0)
        x0, x1 = min(xs) - pad, max(xs) + pad
        ax.plot([x0, x1], [report.slope * x0 + report.intercept, report.slope * x1 + report.intercept],
                color="C3", lw=1.2, ls="--", zorder=2,
                label=f"least squares: R² = {report.r2:.2f}, slope {report.slope:.2f}")
    ax.set_xlabel("change in helpfulness vs source model (0-3 scale)")
    ax.set_ylabel("change in safety vs source model (0-3 scale)")
    ax.set_title(title or _title(report, len(points)), fontsize=10)
    if points:
        ax.legend(fontsize=8.5, loc="best")
    ax.grid(alpha=0.25)
    ax.margins(0.12)  # room for the labels of the outermost points
    fig.tight_layout()
    target = Path(out)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target
