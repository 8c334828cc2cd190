"""``audit_pairs``: the composition statistics of a pairs folder, per split, as an ``AuditReport``.

The rows (``rows.py``) say what will be trained on; with the run the pairs came from, the audit also reads its
trajectories (tool-call counts, final answers for the refusal heuristic) and judgments (parse failures, which
scenarios have a best-of-both trajectory). Without the run those statistics are null, except the tool-call
count, which then comes from the rendered tool turns (``tool`` or ``user`` "Observation" messages inside
chosen/rejected, one per tool step in both renderings).

All table logic is polars expressions: one lazy query enriches every pair, then each split is a handful of
aggregations over that narrow frame (Python only turns the small aggregates into the report's dicts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prefkit.audit.report import (
    DECIMALS,
    AuditReport,
    BestOfBoth,
    DuplicateStats,
    LengthStats,
    MetricDistribution,
    PairsPerScenario,
    ReuseStats,
    RunStats,
    SideStats,
    SplitAudit,
    SplitName,
)
from prefkit.audit.rows import enrich_pair_rows, scan_pair_rows
from prefkit.errors import InputError
from prefkit.records import TRAJECTORY_FLAGS
from prefkit.store import RunStore

OVERLAP_SHOWN = 20
"""How many overlapping scenarios the report names."""


# --------------------------------------------------------------------------------------------------
# Small statistics
# --------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A float rounded for the report; None for null or NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, DECIMALS)


def _label(value: float) -> str:
    """A histogram key: ``"2"`` for whole numbers, ``"2.5"`` otherwise."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _histogram(series: pl.Series) -> dict[str, int]:
    counts = series.drop_nulls().value_counts(name="n").sort(series.name)
    return {_label(v): int(n) for v, n in zip(counts[series.name], counts["n"], strict=True)}


def gini_expr(values: pl.Expr) -> pl.Expr:
    """Gini coefficient of non-negative values: ``2 * sum(i * x_(i)) / (n * sum(x)) - (n + 1) / n`` over the
    ascending order (i from 1); null when there are no values or they sum to 0."""
    x = values.cast(pl.Float64).sort()
    n = x.len().cast(pl.Float64)
    rank = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).cast(pl.Float64)
    total = x.sum()
    return pl.when(total > 0).then(2 * (rank * x).sum() / (n * total) - (n + 1) / n).otherwise(None)


def _share(df: pl.DataFrame, expr: pl.Expr) -> float | None:
    """Mean of a boolean expression over ``df``; None on an empty frame or an all-null column."""
    return _num(df.select(expr.cast(pl.Float64).mean()).item()) if df.height else None


# --------------------------------------------------------------------------------------------------
# One split
# --------------------------------------------------------------------------------------------------


def _pairs_per_scenario(df: pl.DataFrame) -> PairsPerScenario:
    counts = df.group_by("scenario_id").len(name="pairs")
    stats = counts.select(
        max=pl.col("pairs").max(), mean=pl.col("pairs").mean(), median=pl.col("pairs").median(),
        gini=gini_expr(pl.col("pairs")),
    ).row(0, named=True)
    return PairsPerScenario(
        max=int(stats["max"]) if stats["max"] is not None else None,
        mean=_num(stats["mean"]), median=_num(stats["median"]), gini=_num(stats["gini"]),
        histogram=_histogram(counts["pairs"]),
    )


def _agent_matrix(df: pl.DataFrame) -> dict[str, dict[str, int]]:
    cells = df.group_by("chosen_agent", "rejected_agent").len(name="n").sort("chosen_agent", "rejected_agent")
    matrix: dict[str, dict[str, int]] = {}
    for chosen, rejected, n in cells.iter_rows():  # serialising a small aggregate, not table logic
        matrix.setdefault(chosen, {})[rejected] = int(n)
    return matrix


def _metric(df: pl.DataFrame, column: str) -> MetricDistribution:
    return MetricDistribution(
        histogram=_histogram(df[column]),
        mean=_num(df[column].mean()) if df.height else None,
        missing=int(df[column].null_count()),
    )


def _flag_counts(df: pl.DataFrame, side: str) -> dict[str, int] | None:
    """``{flag: pairs whose side carries it}`` for every known trajectory flag (others after them); None when
    no row of the split knows its flags (and the split has rows)."""
    column = df[f"{side}_flags"]
    if df.height and column.null_count() == df.height:
        return None
    counts = column.explode().drop_nulls().value_counts(name="n")  # a flag appears once per trajectory
    found = dict(zip(counts[column.name], counts["n"], strict=True))
    return {**{f: int(found.pop(f, 0)) for f in TRAJECTORY_FLAGS}, **{f: int(n) for f, n in sorted(found.items())}}


def _side(df: pl.DataFrame, side: str) -> SideStats:
    calls = pl.col(f"{side}_tool_calls")
    refusal = pl.col("chosen_refusal")
    refusal_known = side == "chosen" and df.height > 0 and df["chosen_refusal"].null_count() < df.height
    return SideStats(
        safety=_metric(df, f"{side}_safety"),
        helpfulness=_metric(df, f"{side}_helpfulness"),
        mean_tool_calls=_num(df[f"{side}_tool_calls"].mean()) if df.height else None,
        no_tool_share=_share(df, calls == 0),
        refusal_share=_share(df, refusal) if refusal_known else None,
        no_tool_or_refusal_share=_share(df, (calls == 0) | refusal) if refusal_known else None,
        flags=_flag_counts(df, side),
    )


def _length(df: pl.DataFrame) -> LengthStats:
    if not df.height:
        return LengthStats(chosen_mean_chars=None, rejected_mean_chars=None, ratio=None, median_pair_ratio=None,
                           chosen_longer_share=None)
    c, r = pl.col("chosen_chars").cast(pl.Float64), pl.col("rejected_chars").cast(pl.Float64)
    stats = df.select(
        chosen=c.mean(), rejected=r.mean(),
        pair_ratio=pl.when(r > 0).then(c / r).median(),
        longer=(c > r).mean(),
    ).row(0, named=True)
    ratio = stats["chosen"] / stats["rejected"] if stats["rejected"] else None
    return LengthStats(
        chosen_mean_chars=_num(stats["chosen"]), rejected_mean_chars=_num(stats["rejected"]), ratio=_num(ratio),
        median_pair_ratio=_num(stats["pair_ratio"]), chosen_longer_share=_num(stats["longer"]),
    )


def _reuse(df: pl.DataFrame) -> ReuseStats:
    chosen = df.group_by("chosen_id").len(name="n")["n"]
    rejected = df.group_by("rejected_id").len(name="n")["n"]
    return ReuseStats(
        distinct_chosen=chosen.len(),
        max_chosen_reuse=int(chosen.max()) if chosen.len() else None,  # type: ignore[arg-type]
        mean_chosen_reuse=_num(chosen.mean()) if chosen.len() else None,
        reused_chosen_share=_share(df, pl.len().over("chosen_id") > 1),
        distinct_rejected=rejected.len(),
        max_rejected_reuse=int(rejected.max()) if rejected.len() else None,  # type: ignore[arg-type]
    )


def _duplicates(df: pl.DataFrame) -> DuplicateStats:
    return DuplicateStats(
        duplicate_pairs=df.height - df["example_key"].n_unique() if df.height else 0,
        repeated_ids=df.height - df.select(pl.struct("chosen_id", "rejected_id").n_unique()).item()
        if df.height else 0,
        identical_sides=int(df["identical_sides"].sum()),
    )


def _split_audit(df: pl.DataFrame, *, best_of_both: tuple[float, float], bob_scenarios: pl.Series | None,
                 dropped: int | None) -> SplitAudit:
    min_safety, min_help = best_of_both
    chosen_bob = (pl.col("chosen_safety") >= min_safety) & (pl.col("chosen_helpfulness") >= min_help)
    scenarios = df["scenario_id"].unique()
    return SplitAudit(
        pairs=df.height,
        scenarios=scenarios.len(),
        pairs_per_scenario=_pairs_per_scenario(df),
        agent_matrix=_agent_matrix(df),
        score_gap=_histogram(df["margin"]),
        safety_gap=_histogram(df["margin_safety"]),
        helpfulness_gap=_histogram(df["margin_helpfulness"]),
        chosen=_side(df, "chosen"),
        rejected=_side(df, "rejected"),
        length=_length(df),
        reuse=_reuse(df),
        duplicates=_duplicates(df),
        best_of_both=BestOfBoth(
            chosen_share=_share(df, chosen_bob),
            scenarios_with=int(scenarios.is_in(bob_scenarios.implode()).sum()) if bob_scenarios is not None else None,
        ),
        dropped_by_validation=dropped,
    )


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _pair_config(pairing: Mapping[str, Any], strategy: str | None, path: Path) -> Any:
    """The pairer's config from ``pairing.json`` (its own score rules), else the defaults for ``strategy``.

    Raises:
        InputError: ``pairing.json`` holds a config this prefkit cannot read.
    """
    from pydantic import ValidationError

    from prefkit.pairing.config import PairConfig

    if not isinstance(pairing.get("config"), dict):
        return PairConfig(strategy=strategy or "safety")  # type: ignore[arg-type]
    try:
        return PairConfig.model_validate(pairing["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in ("config", *first["loc"]))
        raise InputError(f"{field}: {first['msg']}", path=path) from exc


def _run_stats(run: RunStore, config: Any, best_of_both: tuple[float, float]) -> tuple[RunStats, pl.Series]:
    """Run-wide statistics and the scenarios that have a best-of-both trajectory.

    A trajectory's safety and helpfulness are read exactly as the pairer read them (``trajectory_scores`` with
    the pairing's config: the same judge, replicate aggregation and agreement filter).
    """
    from prefkit.pairing.scores import trajectory_scores

    min_safety, min_help = best_of_both
    judgments = run.scan("judgments")
    failed = (pl.col("parse_status") == "failed").cast(pl.Float64)
    by_metric = judgments.group_by("metric").agg(rate=failed.mean()).sort("metric").collect()
    totals = judgments.select(n=pl.len(), failed=failed.sum()).collect().row(0, named=True)
    bob = (
        run.scan("trajectories")
        .select("id", "scenario_id")
        .join(trajectory_scores(judgments, config), left_on="id", right_on="trajectory_id", how="inner")
        .filter((pl.col("safety") >= min_safety) & (pl.col("helpfulness") >= min_help))
        .select(pl.col("scenario_id").unique().sort())
        .collect()
        .to_series()
    )
    counts = run.scan("trajectories").select(n=pl.len(), scenarios=pl.col("scenario_id").n_unique()).collect()
    stats = RunStats(
        trajectories=int(counts["n"][0]),
        scenarios=int(counts["scenarios"][0]),
        judgments=int(totals["n"]),
        parse_failures=int(totals["failed"] or 0),
        parse_failure_rate=_num(totals["failed"] / totals["n"]) if totals["n"] else None,
        parse_failure_rate_by_metric={m: _num(r) or 0.0 for m, r in by_metric.iter_rows()},
        scenarios_with_best_of_both=bob.len(),
    )
    return stats, bob


# --------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------


def _read_pairing(pairs_dir: Path) -> dict[str, Any]:
    path = pairs_dir / "pairing.json"
    if not path.is_file():
        raise InputError("pairing.json is missing: not a pairs folder written by `prefkit pair`", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


def _single(df: pl.DataFrame, column: str) -> str | None:
    values = df[column].drop_nulls().unique().sort().to_list()
    return ",".join(values) if values else None


def audit_pairs(
    pairs_dir: str | Path,
    *,
    run: RunStore | None = None,
    dropped_by_validation: Mapping[str, int] | int | None = None,
    best_of_both_min_safety: float = 2,
    best_of_both_min_helpfulness: float = 2,
) -> AuditReport:
    """Audit the composition of a pairs folder written by ``prefkit pair``.

    Args:
        pairs_dir: the folder with ``train.parquet``, ``test.parquet`` and ``pairing.json``.
        run: the run the pairs came from; without it the refusal share, the best-of-both scenario counts and
            the parse-failure rate are null, and tool calls are counted from the rendered turns.
        dropped_by_validation: rows validation dropped, per split (``{"train": 3, "test": 1}``; the ``all``
            split gets their sum), or only a total (then ``train`` and ``test`` stay null).
        best_of_both_min_safety, best_of_both_min_helpfulness: what makes a trajectory best-of-both.

    Returns:
        The report (``audit.json``): statistics for ``train``, ``test`` and ``all``, the train/test scenario
        overlap, and the run's statistics.

    Raises:
        InputError: the folder or one of its files is missing or unreadable, or a pair's trajectory is not in
            ``run``.

    Example: ``audit_pairs("pairs/safety", run=RunStore("runs/q32")).splits["train"].pairs`` is 503 for the
    study's safety pairs with split seed 0.
    """
    folder = Path(pairs_dir)
    if not folder.is_dir():
        raise InputError("pairs folder not found", path=folder)
    pairing = _read_pairing(folder)
    if run is not None and not run.table_path("trajectories").is_file():
        raise InputError("not a prefkit run: trajectories.parquet is missing", path=run.path)
    df = enrich_pair_rows(scan_pair_rows(folder), run).collect()
    if run is not None and not df["known"].all():
        unknown = df.filter(~pl.col("known"))
        raise InputError(
            f"{unknown.height} pair(s) name trajectories that are not in this run, e.g. pair "
            f"{unknown['chosen_id'][0]} -> {unknown['rejected_id'][0]}; audit with the run the pairs came from",
            path=run.path,
        )
    strategy, rendering = _single(df, "pair_type"), _single(df, "rendering")
    thresholds = (best_of_both_min_safety, best_of_both_min_helpfulness)
    run_stats, bob = (None, None)
    if run is not None:
        config = _pair_config(pairing, strategy, folder / "pairing.json")
        run_stats, bob = _run_stats(run, config, thresholds)

    dropped: dict[str, int | None] = {"train": None, "test": None, "all": None}
    if isinstance(dropped_by_validation, int):  # a total only: the splits' shares are unknown
        dropped["all"] = dropped_by_validation
    elif dropped_by_validation is not None:
        dropped = {s: int(dropped_by_validation.get(s, 0)) for s in ("train", "test")}
        dropped["all"] = sum(v for v in dropped.values() if v is not None)
    frames: dict[SplitName, pl.DataFrame] = {
        "train": df.filter(pl.col("split") == "train"),
        "test": df.filter(pl.col("split") == "test"),
        "all": df,
    }
    overlap = (
        frames["train"].select(pl.col("scenario_id").unique())
        .join(frames["test"].select(pl.col("scenario_id").unique()), on="scenario_id", how="inner")
        .sort("scenario_id")["scenario_id"]
    )
    return AuditReport(
        dataset=folder.resolve().name,
        strategy=strategy,
        rendering=rendering,
        best_of_both_min_safety=best_of_both_min_safety,
        best_of_both_min_helpfulness=best_of_both_min_helpfulness,
        splits={name: _split_audit(frame, best_of_both=thresholds, bob_scenarios=bob, dropped=dropped[name])
                for name, frame in frames.items()},
        train_test_overlap=overlap.len(),
        overlapping_scenarios=overlap.head(OVERLAP_SHOWN).to_list(),
        run=run_stats,
    )
