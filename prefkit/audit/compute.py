"""``audit_pairs``: the composition statistics of a pairs folder, per split, as an ``AuditReport``.

The audit reads what will be trained on: the TRL rows in ``train.parquet`` and ``test.parquet`` (a row's split
is the file it is in). Their metadata columns carry the pair's ids, agents and both metrics' scores; the
message columns give lengths, tool turns and duplicates. With the run the pairs came from, it also reads the
trajectories (tool-call counts, final answers for the refusal heuristic) and the judgments (parse failures,
which scenarios have a best-of-both trajectory). Without the run those statistics are null, except the
tool-call count, which then comes from the rendered tool turns (``tool`` or ``user`` "Observation" messages
inside chosen/rejected, one per tool step in both renderings).

All table logic is polars expressions: one lazy query enriches every pair, then each split is a handful of
aggregations over that narrow frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prefkit.audit.refusal import refusal_expr
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
from prefkit.errors import InputError
from prefkit.store import RunStore

ROW_FILES: dict[SplitName, str] = {"train": "train.parquet", "test": "test.parquet"}
MESSAGE_COLUMNS = ("prompt", "chosen", "rejected")
META_COLUMNS: dict[str, pl.DataType] = {
    "scenario_id": pl.String(),
    "chosen_id": pl.String(),
    "rejected_id": pl.String(),
    "chosen_agent": pl.String(),
    "rejected_agent": pl.String(),
    "chosen_safety": pl.Float64(),
    "chosen_helpfulness": pl.Float64(),
    "rejected_safety": pl.Float64(),
    "rejected_helpfulness": pl.Float64(),
    "margin": pl.Float64(),
    "margin_safety": pl.Float64(),
    "margin_helpfulness": pl.Float64(),
    "pair_type": pl.String(),
    "rendering": pl.String(),
}
"""The row columns the audit reads (the pairer's TRL row contract), cast to these types."""

OVERLAP_SHOWN = 20


# --------------------------------------------------------------------------------------------------
# Reading the rows
# --------------------------------------------------------------------------------------------------


def _message_texts(name: str, dtype: pl.DataType) -> pl.Expr:
    """A message-list column as ``List(String)`` of each message's JSON text, whatever Arrow type holds it
    (``datasets``' Json feature is an ``arrow.json`` extension type; plain strings and structs also work)."""
    inner = getattr(dtype, "inner", None)
    if inner is None:
        raise TypeError(f"column {name!r} is {dtype}, expected a list of messages")
    if inner == pl.String:
        return pl.col(name)
    if isinstance(inner, pl.Struct):
        return pl.col(name).list.eval(pl.element().struct.json_encode())
    return pl.col(name).list.eval(pl.element().ext.storage().cast(pl.String))


def scan_pair_rows(pairs_dir: Path) -> pl.LazyFrame:
    """The rows of ``train.parquet`` and ``test.parquet`` with a ``split`` column from the file name, the
    metadata columns of ``META_COLUMNS`` and the message columns as JSON texts.

    Raises:
        InputError: a file is missing, unreadable, or lacks a column (named).
    """
    frames = []
    for split, file_name in ROW_FILES.items():
        path = pairs_dir / file_name
        if not path.is_file():
            raise InputError(f"{file_name} is missing: not a pairs folder written by `prefkit pair`", path=path)
        try:
            lazy = pl.scan_parquet(path)
            schema = lazy.collect_schema()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=path) from exc
        missing = [c for c in (*MESSAGE_COLUMNS, *META_COLUMNS) if c not in schema]
        if missing:
            raise InputError(f"the rows lack column(s) {', '.join(missing)}", path=path, field=missing[0])
        try:
            texts = [_message_texts(c, schema[c]).alias(c) for c in MESSAGE_COLUMNS]
        except TypeError as exc:
            raise InputError(str(exc), path=path) from exc
        frames.append(
            lazy.select(
                pl.lit(split).alias("split"),
                *(pl.col(c).cast(t) for c, t in META_COLUMNS.items()),
                *texts,
            )
        )
    return pl.concat(frames, how="vertical")


def _chars(messages: pl.Expr) -> pl.Expr:
    """Characters of a rendered side: each message's content plus its tool calls' JSON text."""
    element = pl.element()
    per_message = (element.str.json_path_match("$.content").str.len_chars().fill_null(0)
                   + element.str.json_path_match("$.tool_calls").str.len_chars().fill_null(0))
    return messages.list.eval(per_message).list.sum().cast(pl.Int64)


def _tool_turns(messages: pl.Expr) -> pl.Expr:
    """Rendered tool steps of a side: ``tool`` messages (native) or ``user`` "Observation:" turns (react)."""
    roles = pl.element().str.json_path_match("$.role")
    return messages.list.eval(roles.is_in(["tool", "user"])).list.sum().cast(pl.Int64)


def _enrich(rows: pl.LazyFrame, run: RunStore | None) -> pl.LazyFrame:
    """One narrow row per pair: metadata plus lengths, tool calls, refusal and duplicate keys."""
    joined = pl.col("prompt").list.join("\x1f")
    chosen, rejected = pl.col("chosen").list.join("\x1f"), pl.col("rejected").list.join("\x1f")
    frame = rows.with_columns(
        chosen_chars=_chars(pl.col("chosen")),
        rejected_chars=_chars(pl.col("rejected")),
        chosen_tool_calls=_tool_turns(pl.col("chosen")),
        rejected_tool_calls=_tool_turns(pl.col("rejected")),
        # 64-bit hash of the whole example; a collision among a dataset's pairs is vanishingly unlikely
        example_key=pl.concat_str(joined, chosen, rejected, separator="\x1e").hash(seed=0),
        identical_sides=chosen == rejected,
        chosen_refusal=pl.lit(None, dtype=pl.Boolean),
    ).drop(*MESSAGE_COLUMNS)
    if run is None:
        return frame
    trajectories = run.scan("trajectories").select(
        "id", tool_calls=pl.col("steps").list.len().cast(pl.Int64), final_answer="final_answer"
    )
    return (
        frame.join(trajectories.rename(lambda c: f"c_{c}"), left_on="chosen_id", right_on="c_id", how="left",
                   maintain_order="left")
        .join(trajectories.rename(lambda c: f"r_{c}"), left_on="rejected_id", right_on="r_id", how="left",
              maintain_order="left")
        .with_columns(
            # the run's steps are the truth about what the agent did; the rendered turns are a fallback
            chosen_tool_calls=pl.col("c_tool_calls"),
            rejected_tool_calls=pl.col("r_tool_calls"),
            chosen_refusal=refusal_expr(pl.col("c_final_answer")),
            known=pl.col("c_tool_calls").is_not_null() & pl.col("r_tool_calls").is_not_null(),
        )
        .drop("c_tool_calls", "r_tool_calls", "c_final_answer", "r_final_answer")
    )


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


def _pair_config(pairing: Mapping[str, Any], strategy: str | None) -> Any:
    """The pairer's config from ``pairing.json`` (its own score rules), else the defaults for ``strategy``."""
    from prefkit.pairing.config import PairConfig

    if isinstance(pairing.get("config"), dict):
        return PairConfig.model_validate(pairing["config"])
    return PairConfig(strategy=strategy or "safety")  # type: ignore[arg-type]


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
    dropped_by_validation: Mapping[str, int] | None = None,
    best_of_both_min_safety: float = 2,
    best_of_both_min_helpfulness: float = 2,
) -> AuditReport:
    """Audit the composition of a pairs folder written by ``prefkit pair``.

    Args:
        pairs_dir: the folder with ``train.parquet``, ``test.parquet`` and ``pairing.json``.
        run: the run the pairs came from; without it the refusal share, the best-of-both scenario counts and
            the parse-failure rate are null, and tool calls are counted from the rendered turns.
        dropped_by_validation: rows validation dropped, per split (``{"train": 3, "test": 1}``); the ``all``
            split gets their sum.
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
    df = _enrich(scan_pair_rows(folder), run).collect()
    if run is not None and not df["known"].all():
        unknown = df.filter(~pl.col("known"))
        raise InputError(
            f"{unknown.height} pair(s) name trajectories that are not in this run, e.g. pair "
            f"{unknown['chosen_id'][0]} -> {unknown['rejected_id'][0]}; audit with the run the pairs came from",
            path=run.path,
        )
    strategy, rendering = _single(df, "pair_type"), _single(df, "rendering")
    thresholds = (best_of_both_min_safety, best_of_both_min_helpfulness)
    run_stats, bob = (_run_stats(run, _pair_config(pairing, strategy), thresholds) if run is not None
                      else (None, None))

    dropped: dict[str, int | None] = {"train": None, "test": None, "all": None}
    if dropped_by_validation is not None:
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
