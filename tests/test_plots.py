"""The audit's plots for integer and float scores.

With a logprob judge's expected scores (``aggregation: expected``) the values are floats: each distinct value
used to get its own bar and tick label (overlapping labels, bars hidden behind them). Floats are now counted in
bins of ``FLOAT_BIN_WIDTH`` on a numeric axis, integer scores keep one bar per score, count axes have integer
ticks, and the Gini text sits in the title, clear of the bars. Checked on what the plot functions return.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prefkit.audit import audit_pairs, write_audit
from prefkit.audit.plots import FLOAT_BIN_WIDTH, PLOTS, bar_groups


def _bars(ax) -> list[tuple[float, float, float]]:
    """(left, width, height) of every bar drawn on ``ax``."""
    from matplotlib.patches import Rectangle

    return [(p.get_x(), p.get_width(), p.get_height()) for p in ax.patches if isinstance(p, Rectangle)]


def _visible_ticks(axis) -> list[float]:
    low, high = sorted(axis.get_view_interval())
    return [float(t) for t in axis.get_ticklocs() if low <= t <= high]


def _integer_ticks(axis) -> bool:
    ticks = _visible_ticks(axis)
    return bool(ticks) and all(t.is_integer() for t in ticks)


def test_bar_groups_keeps_integers_and_bins_floats() -> None:
    ints = bar_groups({"chosen": {"2": 5, "3": 7}, "rejected": {"0": 4, "1": 8}})
    assert ints.edges is None and ints.positions == (0, 1, 2, 3)
    assert ints.counts == {"chosen": (0, 0, 5, 7), "rejected": (4, 8, 0, 0)}
    # floats: bins of 0.25 aligned on multiples of it; 2.75 opens its bin, 3.0 closes the last one
    floats = bar_groups({"chosen": {"2.55": 1, "2.75": 2, "3": 4}, "rejected": {"0.1": 3, "1.05": 1}})
    assert FLOAT_BIN_WIDTH == 0.25 and floats.width == 0.25
    assert floats.edges == pytest.approx([0.25 * i for i in range(13)])
    assert floats.counts["chosen"][10:] == (1, 6) and sum(floats.counts["chosen"]) == 7
    assert floats.counts["rejected"][0] == 3 and floats.counts["rejected"][4] == 1
    # margins may be negative; a single float value still gets one bin of its own
    assert bar_groups({"train": {"-1.3": 2, "0.6": 1}}).edges[0] == pytest.approx(-1.5)
    assert bar_groups({"train": {"2.5": 1}}).edges == pytest.approx([2.5, 2.75])
    # many integer values (pairs per scenario in a big run) are binned too, with an integer width
    wide = bar_groups({"train": {str(i): 1 for i in range(1, 200)}})
    assert wide.edges is not None and wide.width == 7 and sum(wide.counts["train"]) == 199
    assert bar_groups({"train": {}, "test": {}}).positions == ()


@pytest.fixture(scope="module")
def expected_score_pairs(tmp_path_factory: pytest.TempPathFactory, q32_run) -> tuple[Path, object]:
    """The study's trajectories with logprob-style judgments (each recorded score gets probability 0.55-0.95,
    the rest on its neighbours), paired on the expected score: float scores and margins."""
    from prefkit.pairing import PairConfig, build_pairs, write_pairs
    from prefkit.store import new_run

    judgments = []
    for j in q32_run.read("judgments"):
        p = [0.0] * 4
        p[j.score] = 0.55 + 0.1 * (int(j.id[:4], 16) % 5)
        neighbours = [k for k in (j.score - 1, j.score + 1) if 0 <= k <= 3]
        for k in neighbours:
            p[k] += (1 - p[j.score]) / len(neighbours)
        judgments.append(j.model_copy(update={"distribution": tuple(p)}))
    root = tmp_path_factory.mktemp("expected-scores")
    with new_run(root / "run", created_by="test") as store:
        for table in ("scenarios", "toolkits", "trajectories"):
            store.write(table, q32_run.read(table))
        store.write("judgments", judgments)
    config = PairConfig(strategy="safety", aggregation="expected", min_gap=1.0, min_chosen=1.5)
    write_pairs(build_pairs(store, config), store, config, root / "pairs")
    return root / "pairs", store


def test_float_scores_are_binned_with_integer_count_ticks(expected_score_pairs) -> None:
    pairs, store = expected_score_pairs
    report = audit_pairs(pairs, run=store)
    everything = report.splits["all"]
    assert len(everything.chosen.safety.histogram) > 4, "the scores are floats"
    figure = PLOTS["metric_distributions"](report)
    for ax, metric in zip(figure.axes, ("safety", "helpfulness"), strict=True):
        bars = _bars(ax)
        # two series (chosen, rejected) over the same bins of 0.25 in [0, 3]: at most 12 bars each
        assert len(bars) % 2 == 0 and len(bars) // 2 <= 12
        assert all(w == pytest.approx(0.8 * FLOAT_BIN_WIDTH / 2) for _, w, _ in bars)
        assert all(-0.01 <= x and x + w <= 3.01 for x, w, _ in bars)
        missing = getattr(everything.chosen, metric).missing + getattr(everything.rejected, metric).missing
        assert sum(h for _, _, h in bars) == 2 * everything.pairs - missing
        assert _integer_ticks(ax.yaxis)
        assert "bins of 0.25" in ax.get_xlabel()
        # ticks every 0.5 at most: the labels cannot overlap
        assert _visible_ticks(ax.xaxis) == [0.5 * i for i in range(7)]
    gaps = PLOTS["score_gap"](report)
    assert all(_integer_ticks(ax.yaxis) for ax in gaps.axes)
    assert all(len(_bars(ax)) <= 2 * 24 for ax in gaps.axes)  # margins in [-3, 3]


def test_integer_scores_keep_one_bar_per_score(q32_pairs) -> None:
    report = audit_pairs(q32_pairs(strategy="safety"))
    figure = PLOTS["metric_distributions"](report)
    ax = figure.axes[0]
    safety = report.splits["all"]
    scores = {float(k) for k in (*safety.chosen.safety.histogram, *safety.rejected.safety.histogram)}
    bars = _bars(ax)
    assert len(bars) == 2 * len(scores)  # one bar per score and side, side by side around the score
    assert all(min(abs(x + w / 2 - s) for s in scores) == pytest.approx(0.2) for x, w, _ in bars)
    assert _visible_ticks(ax.xaxis) == [0, 1, 2, 3]
    assert _integer_ticks(ax.yaxis)
    per_scenario = PLOTS["pairs_per_scenario"](report)
    (ax,) = per_scenario.axes
    assert "Gini" in ax.get_title() and not any("Gini" in t.get_text() for t in ax.texts)
    top = max(h for _, _, h in _bars(ax))
    assert ax.get_ylim()[1] >= 1.2 * top  # headroom: the legend sits above the bars
    assert _integer_ticks(ax.yaxis) and _integer_ticks(ax.xaxis)
    matrix = PLOTS["agent_matrix"](report)
    colorbar_axis = matrix.axes[1].yaxis
    assert _integer_ticks(colorbar_axis)


def test_every_plot_renders_for_float_and_integer_audits(expected_score_pairs, q32_pairs, tmp_path: Path) -> None:
    pairs, store = expected_score_pairs
    for name, report in (("float", audit_pairs(pairs, run=store)), ("int", audit_pairs(q32_pairs(strategy="both")))):
        written = write_audit(report, tmp_path / name)
        assert len(written) == 1 + len(PLOTS)
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in written[1:])
