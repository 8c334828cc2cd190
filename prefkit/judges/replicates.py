"""Replicates: several answers of one judge about one trajectory and metric, and how they agree.

A judge asked ``n`` times about the same trajectory gives ``n`` judgments (``replicate`` 0..n-1). This
module reduces them to one row per (trajectory, metric, judge) with the aggregate scores and the
agreement statistics the study computed (``compute_eval_consistency``, paper-reference.md §1.3):

* ``median`` (the study's default, a float: 2.5 is possible), ``median_int`` (``int()`` of the median,
  what the study paired on), ``mean``, and ``expected``: the mean of the replicates' expected scores
  (``sum(k * p_k)`` of a logprob judgment's ``distribution``; a judgment without one counts its score),
  which keeps what a logprob judge is unsure about instead of rounding it away;
* ``exact``: every scored replicate agrees; ``within_one``: the scores span at most 1;
  ``all_but_one``: n >= 2 and the most common score covers at least n - 1 replicates;
  ``majority``: the most common score covers more than half.

Failed replicates (no score) are counted in ``n_failed`` and left out of everything else.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Aggregation = Literal["median", "mean", "expected"]

KEYS = ("trajectory_id", "metric", "judge")


def replicate_stats(judgments: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (trajectory_id, metric, judge) of a judgments table, with the columns above and
    ``n`` (scored replicates), ``n_failed`` and ``scores`` (the scored replicates in replicate order).
    A table without a ``distribution`` column has ``expected`` equal to ``mean``."""
    score = pl.col("score").sort_by("replicate").drop_nulls()
    if "distribution" not in judgments.collect_schema().names():
        judgments = judgments.with_columns(distribution=pl.lit(None, pl.List(pl.Float64)))
    n, top = pl.col("n"), pl.col("top")
    return (
        judgments.group_by(*KEYS, maintain_order=True)
        .agg(
            n=score.count().cast(pl.Int64),
            n_failed=pl.col("score").null_count().cast(pl.Int64),
            scores=score,
            median=score.median(),
            mean=score.mean(),
            expected=judgment_expected_score().mean(),  # failed replicates are null, which mean() skips
            top=score.unique_counts().max(),
            spread=score.max() - score.min(),
        )
        .with_columns(
            median_int=pl.col("median").floor().cast(pl.Int64),  # int() of a non-negative median
            exact=(n >= 1) & (pl.col("spread") == 0),
            within_one=(n >= 1) & (pl.col("spread") <= 1),
            all_but_one=(n >= 2) & (top >= n - 1),
            majority=(n >= 1) & (top > n / 2),
        )
        .drop("top", "spread")
    )


def judgment_expected_score() -> pl.Expr:
    """Per judgment: the expected score of its ``distribution`` (probabilities of 0..3), or its ``score``
    when it has none; null for a failed judgment."""
    expected = pl.col("distribution").list.eval(pl.element() * pl.int_range(pl.len())).list.sum()
    return (pl.when(pl.col("score").is_null()).then(None)
            .when(pl.col("distribution").is_not_null()).then(expected)
            .otherwise(pl.col("score").cast(pl.Float64)))


def aggregate_column(method: Aggregation) -> pl.Expr:
    """The column of ``replicate_stats`` that ``method`` reads, as Float64."""
    return {"median": pl.col("median_int").cast(pl.Float64), "mean": pl.col("mean"),
            "expected": pl.col("expected")}[method]


def aggregate_scores(judgments: pl.LazyFrame, *, method: Aggregation = "median") -> pl.LazyFrame:
    """Columns ``trajectory_id``, ``metric``, ``judge``, ``score``: the replicates' ``int()`` median
    (as the study paired), their mean or their mean expected score; null where every replicate failed."""
    return replicate_stats(judgments).select(*KEYS, aggregate_column(method).alias("score"))


def agreement_summary(stats: pl.DataFrame) -> dict[str, float | int | None]:
    """Shares of (trajectory, metric, judge) groups with at least two scored replicates that agree
    exactly, within one, all but one, or by majority; ``None`` when no group has two replicates."""
    multi = stats.filter(pl.col("n") >= 2)
    shares: dict[str, float | int | None] = {"groups": stats.height, "groups_with_replicates": multi.height}
    for name in ("exact", "within_one", "all_but_one", "majority"):
        shares[name] = None if multi.is_empty() else float(multi[name].mean())
    return shares
