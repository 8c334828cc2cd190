"""Agreement between two judges on the same trajectories and metric.

Each judge's replicates are first reduced to one integer score per trajectory (``int()`` of the median,
``prefkit.judges.replicates``); trajectories that only one judge scored, or that a judge failed on, are
left out. Then, over the ``n`` trajectories both scored:

* ``kappa``: Cohen's kappa with quadratic weights over the four scores 0-3,
  ``1 - sum(w * observed) / sum(w * expected)`` with ``w[i, j] = (i - j)^2 / 9`` and ``expected`` the
  outer product of the two judges' marginals (``None`` when the expected disagreement is 0, i.e. both
  judges gave one and the same score throughout);
* ``spearman``: Spearman's rho (Pearson correlation of average ranks; ``None`` when a judge's scores are
  constant);
* ``exact`` and ``within_one``: shares of trajectories with equal scores / scores at most 1 apart;
* ``confusion``: 4x4 counts, rows = judge A's score, columns = judge B's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from prefkit.errors import InputError
from prefkit.judges.replicates import replicate_stats

SCORES = (0, 1, 2, 3)


class AgreementReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    judge_a: str
    judge_b: str
    metric: str
    n: int
    """Trajectories both judges scored."""
    kappa: float | None
    spearman: float | None
    exact: float
    within_one: float
    confusion: tuple[tuple[int, ...], ...]
    """``confusion[i][j]``: trajectories judge A scored ``i`` and judge B scored ``j``."""


def judge_names(judgments: pl.LazyFrame, metric: str | None = None) -> list[str]:
    """The distinct judges of a judgments table as ``model@backend``, sorted."""
    frame = judgments if metric is None else judgments.filter(pl.col("metric") == metric)
    return (
        frame.select(_judge_name().unique().sort())
        .collect()
        .to_series()
        .to_list()
    )


def _judge_name() -> pl.Expr:
    judge = pl.col("judge")
    return pl.concat_str(judge.struct.field("model"), pl.lit("@"), judge.struct.field("backend")).alias("judge_name")


def judge_scores(judgments: pl.LazyFrame, ref: str, metric: str) -> pl.LazyFrame:
    """``trajectory_id`` and ``score`` (Int64) of judge ``ref`` on ``metric``, one row per scored trajectory.

    Raises:
        InputError: no such judge for ``metric`` (the message lists those present), or ``ref`` names
            several judges (one model under several backends or rubric versions).
    """
    on_metric = judgments.filter(pl.col("metric") == metric)
    mine = on_metric.filter((pl.col("judge").struct.field("model") == ref) | (_judge_name() == ref))
    identities = mine.select(pl.col("judge").unique()).collect().to_series().to_list()
    if not identities:
        present = judge_names(judgments, metric)
        raise InputError(f"judge {ref!r} has no {metric} judgments in this run; judges present: "
                         f"{', '.join(present) or 'none'}", field="judge")
    if len(identities) > 1:
        shown = ", ".join(sorted(f"{j['model']}@{j['backend']} ({j['rubric_version']})" for j in identities))
        raise InputError(f"{ref!r} names several judges of {metric}: {shown}; name one as model@backend, "
                         "or keep one rubric version per judge in a run", field="judge")
    return (
        replicate_stats(mine)
        .filter(pl.col("n") >= 1)
        .select("trajectory_id", pl.col("median_int").alias("score"))
    )


def quadratic_kappa(confusion: np.ndarray) -> float | None:
    """Quadratic-weighted Cohen's kappa of a square confusion matrix (``None`` if undefined)."""
    k = confusion.shape[0]
    total = confusion.sum()
    if total == 0:
        return None
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2 / (k - 1) ** 2
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / total
    denominator = (weights * expected).sum()
    if denominator == 0:
        return None
    return float(1.0 - (weights * confusion).sum() / denominator)


def spearman_rho(frame: pl.DataFrame, a: str, b: str) -> float | None:
    """Spearman's rho of two columns: Pearson's r of their average ranks (``None`` if a column is constant)."""
    ranks = frame.select(pl.col(a).rank("average").alias("ra"), pl.col(b).rank("average").alias("rb"))
    if ranks["ra"].n_unique() < 2 or ranks["rb"].n_unique() < 2:
        return None
    return float(ranks.select(pl.corr("ra", "rb")).item())


def judge_agreement(judgments: pl.LazyFrame, *, a: str, b: str, metric: str) -> AgreementReport:
    """Agreement of judges ``a`` and ``b`` on ``metric`` over the trajectories both scored.

    Raises:
        InputError: an unknown or ambiguous judge, or no trajectory scored by both.
    """
    both = (
        judge_scores(judgments, a, metric).rename({"score": "a"})
        .join(judge_scores(judgments, b, metric).rename({"score": "b"}), on="trajectory_id", how="inner")
        .collect()
    )
    if both.is_empty():
        raise InputError(f"judges {a!r} and {b!r} scored no trajectory in common on {metric}", field="judge")
    counts = (
        both.group_by("a", "b").len()
        .filter(pl.col("a").is_in(SCORES) & pl.col("b").is_in(SCORES))
    )
    confusion = np.zeros((len(SCORES), len(SCORES)), dtype=np.int64)
    confusion[counts["a"].to_numpy(), counts["b"].to_numpy()] = counts["len"].to_numpy()
    gap = (both["a"] - both["b"]).abs()
    return AgreementReport(
        judge_a=a,
        judge_b=b,
        metric=metric,
        n=both.height,
        kappa=quadratic_kappa(confusion),
        spearman=spearman_rho(both, "a", "b"),
        exact=float((gap == 0).mean()),
        within_one=float((gap <= 1).mean()),
        confusion=tuple(tuple(int(c) for c in row) for row in confusion),
    )


def run_agreement(run: str | Path, *, a: str, b: str, metric: str) -> AgreementReport:
    """``judge_agreement`` over the judgments of the run folder ``run``.

    Raises:
        InputError: not a prefkit run, or see ``judge_agreement``.
    """
    from prefkit.judges.judge import open_run

    return judge_agreement(open_run(run).scan("judgments"), a=a, b=b, metric=metric)
