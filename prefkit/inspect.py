"""What a run holds: counts, agents, how runs ended, flags, and score histograms per metric and judge.

``summarize_run`` computes a plain, JSON-ready dict with polars queries over the run's tables;
``print_summary`` shows it as rich tables. The top level always has the integer keys ``scenarios``,
``trajectories`` and ``judgments`` (0 when the run lacks the table).
"""

from __future__ import annotations

from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from prefkit.errors import InputError
from prefkit.records import TRAJECTORY_FLAGS, arguments_object
from prefkit.store import TABLES, RunStore, StoreError
from prefkit.text import REPLACEMENT_CHARACTER

SCORE_BUCKETS = ("0", "1", "2", "3", "failed")
"""Histogram buckets: the scores 0-3, and judgments whose answer could not be parsed."""


def _counts(frame: pl.LazyFrame, column: str) -> dict[str, int]:
    """``value -> rows`` for one column, sorted by value."""
    rows = frame.group_by(column).len().sort(column).collect().rows()
    return {str(value): n for value, n in rows}


def _agents(store: RunStore) -> dict[str, int]:
    agents = store.scan("trajectories").select(pl.col("agent").struct.field("name").alias("agent"))
    return _counts(agents, "agent")


def _flags(store: RunStore) -> dict[str, int]:
    flags = store.scan("trajectories").select(pl.col("flags").explode().alias("flag")).drop_nulls()
    found = _counts(flags, "flag")
    # Known flags always appear (a zero is information); unknown ones from other sources follow.
    return {**{f: found.pop(f, 0) for f in TRAJECTORY_FLAGS}, **found}


def _judgment_flags(store: RunStore) -> dict[str, int]:
    """Judgments have no flags field (the on-disk format stays as it is): ``unencodable_text`` counts the
    judgments whose ``raw_output``, ``label`` or ``rationale`` holds U+FFFD (``prefkit.text.has_replacement``:
    text that could not be encoded, replaced where it entered prefkit), as the trajectory flag does."""
    texts = [pl.col(c).str.contains(REPLACEMENT_CHARACTER, literal=True).fill_null(False)
             for c in ("raw_output", "label", "rationale")]
    replaced = store.scan("judgments").select(pl.any_horizontal(texts).sum()).collect().item()
    return {"unencodable_text": int(replaced or 0)}


def _action_inputs(store: RunStore) -> dict[str, int]:
    """``total`` action inputs (tool steps) and how many are ``non_object`` (not a JSON object, by
    ``prefkit.records.arguments_object``: what the ``non_object_arguments`` flag marks)."""
    inputs = (
        store.scan("trajectories")
        .select(pl.col("steps").explode().struct.field("tool_input").alias("tool_input"))
        .drop_nulls()
        .collect()["tool_input"]
    )
    # the rule is Python's JSON decoder (json.loads), once per input: a few thousand per study run
    return {"total": inputs.len(), "non_object": sum(arguments_object(t) is None for t in inputs)}


def _steps(store: RunStore) -> dict[str, float | int]:
    stats = (
        store.scan("trajectories")
        .select(pl.col("steps").list.len().alias("n"))
        .select(pl.col("n").mean().alias("mean"), pl.col("n").max().alias("max"), (pl.col("n") == 0).sum().alias("none"))
        .collect()
        .row(0, named=True)
    )
    return {"mean": round(stats["mean"] or 0.0, 3), "max": int(stats["max"] or 0), "no_tool_calls": int(stats["none"])}


def _score_histograms(store: RunStore) -> dict[str, dict[str, dict[str, int]]]:
    """``metric -> judge model -> bucket -> judgments``, every bucket present."""
    buckets = (
        store.scan("judgments")
        .select(
            "metric",
            pl.col("judge").struct.field("model").alias("judge"),
            pl.when(pl.col("parse_status") == "failed")
            .then(pl.lit("failed"))
            .otherwise(pl.col("score").cast(pl.String))
            .alias("bucket"),
        )
        .group_by("metric", "judge", "bucket")
        .len()
        .sort("metric", "judge", "bucket")
        .collect()
    )
    out: dict[str, dict[str, dict[str, int]]] = {}
    for metric, judge, bucket, n in buckets.rows():
        out.setdefault(metric, {}).setdefault(judge, dict.fromkeys(SCORE_BUCKETS, 0))[bucket] = n
    return out


def summarize_run(store: RunStore) -> dict[str, Any]:
    """A JSON-ready summary of a run.

    Keys: ``run``, ``created_by``, one integer per table (``scenarios``, ``toolkits``,
    ``trajectories``, ``judgments``, ``pairs``), ``agents`` (trajectories per agent),
    ``finish_reasons``, ``flags`` (trajectories carrying each flag), ``action_inputs`` (``total`` tool
    steps and how many inputs are ``non_object``, the steps behind ``non_object_arguments``), ``judgment_flags`` (judgments whose
    text shows ``unencodable_text``; see ``_judgment_flags``), ``steps`` (tool calls per
    trajectory: mean, max, how many have none), ``scores`` (metric -> judge model -> histogram over
    0..3 and ``failed``) and ``parse_statuses``.

    Raises:
        InputError: the folder is not a prefkit run.
    """
    try:
        manifest = store.manifest()
    except StoreError as exc:
        raise InputError(str(exc)) from exc
    counts = {name: 0 for name in TABLES} | store.counts()
    return {
        "run": str(store.path),
        "created_by": manifest.get("created_by"),
        **counts,
        "agents": _agents(store),
        "finish_reasons": _counts(store.scan("trajectories"), "finish_reason"),
        "flags": _flags(store),
        "action_inputs": _action_inputs(store),
        "judgment_flags": _judgment_flags(store),
        "steps": _steps(store),
        "scores": _score_histograms(store),
        "parse_statuses": _counts(store.scan("judgments"), "parse_status"),
    }


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    table = Table(*header, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Show a ``summarize_run`` result as rich tables."""
    console.print(f"[bold]{summary['run']}[/] (made by {summary['created_by']})", highlight=False)
    console.print(_table("tables", ("table", "rows"), [(name, summary[name]) for name in TABLES]))
    if summary["trajectories"]:
        console.print(_table("trajectories per agent", ("agent", "trajectories"), list(summary["agents"].items())))
        console.print(_table("finish reasons", ("finish reason", "trajectories"), list(summary["finish_reasons"].items())))
        console.print(_table("flags", ("flag", "trajectories"), list(summary["flags"].items())))
        inputs = summary["action_inputs"]
        console.print(f"action inputs: {inputs['total']:,}, of which {inputs['non_object']:,} are not a JSON object "
                      "(non_object_arguments)", highlight=False)
        steps = summary["steps"]
        console.print(f"tool calls per trajectory: mean {steps['mean']}, max {steps['max']}, "
                      f"{steps['no_tool_calls']} without any", highlight=False)
    if summary["judgments"]:
        rows = [(metric, judge, *hist.values()) for metric, judges in summary["scores"].items()
                for judge, hist in judges.items()]
        console.print(_table("scores", ("metric", "judge", *SCORE_BUCKETS), rows))
        console.print(_table("parse status", ("status", "judgments"), list(summary["parse_statuses"].items())))
        console.print(_table("judgment flags", ("flag", "judgments"), list(summary["judgment_flags"].items())))
