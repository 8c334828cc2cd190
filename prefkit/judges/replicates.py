"""Replicates: several answers of one judge about one trajectory and metric, and how they agree.

A judge asked ``n`` times about the same trajectory gives ``n`` judgments (``replicate`` 0..n-1). This
module reduces them to one row per (trajectory, metric, judge) with the aggregate scores and the
agreement statistics the study computed (``compute_eval_consistency``, paper-reference.md §1.3):

* ``median`` (the study's default, a float: 2.5 is possible), ``median_int`` (``int()`` of the median,
  what the study paired on) and ``mean``;
* ``exact``: every scored replicate agrees; ``within_one``: the scores span at most 1;
  ``all_but_one``: n >= 2 and the most common score covers at least n - 1 replicates;
  ``majority``: the most common score covers more than half.

Failed replicates (no score) are counted in ``n_failed`` and left out of everything else.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Aggregation = Literal["median", "mean"]

KEYS = ("trajectory_id", "metric", "judge")


def replicate_stats(judgments: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (trajectory_id, metric, judge) of a judgments table, with the columns above and
    ``n`` (scored replicates), ``n_failed`` and ``scores`` (the scored replicates in replicate order)."""
    score = pl.col("score").sort_by("replicate").drop_nulls()
    n, top = pl.col("n"), pl.col("top")
    return (
        judgments.group_by(*KEYS, maintain_order=True)
        .agg(
            n=score.count().cast(pl.Int64),
            n_failed=pl.col("score").null_count().cast(pl.Int64),
            scores=score,
            median=score.median(),
            mean=score.mean(),
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


def aggregate_scores(judgments: pl.LazyFrame, *, method: Aggregation = "median") -> pl.LazyFrame:
    """Columns ``trajectory_id``, ``metric``, ``judge``, ``score``: the replicates' ``int()`` median
    (as the study paired) or their mean; null where every replicate failed."""
    column = {"median": pl.col("median_int").cast(pl.Float64), "mean": pl.col("mean")}[method]
    return replicate_stats(judgments).select(*KEYS, column.alias("score"))


def agreement_summary(stats: pl.DataFrame) -> dict[str, float | int | None]:
    """Shares of (trajectory, metric, judge) groups with at least two scored replicates that agree
    exactly, within one, all but one, or by majority; ``None`` when no group has two replicates."""
    multi = stats.filter(pl.col("n") >= 2)
    shares: dict[str, float | int | None] = {"groups": stats.height, "groups_with_replicates": multi.height}
    for name in ("exact", "within_one", "all_but_one", "majority"):
        shares[name] = None if multi.is_empty() else float(multi[name].mean())
    return shares
