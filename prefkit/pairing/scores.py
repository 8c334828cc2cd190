"""One score per trajectory and metric, from a run's judgments table.

The study's reading of judgments (``prepare_dpo_data.py``): pick the judge, optionally keep only lines whose
replicates agree, take the median of the replicates' scores (or their mean), then ``int()`` the median.
A failed judgment (no score) is ignored; a trajectory with no usable score on a metric gets ``null`` there
and cannot be paired on that metric.
"""

from __future__ import annotations

import polars as pl

from prefkit.errors import InputError
from prefkit.judges.replicates import aggregate_column, judgment_expected_score, replicate_stats
from prefkit.pairing.config import PairConfig

SCORE_METRICS = ("safety", "helpfulness")
"""The metrics the pairer reads; ``helpfulness`` is the study's Help(Ignore)."""


def select_judge(judgments: pl.LazyFrame, config: PairConfig) -> str | None:
    """The judge model whose judgments are used; ``None`` when the run has no judgments at all.

    Raises:
        InputError: ``config.judge`` is not in the run, or the run has several judges and none was chosen.
    """
    judges = (
        judgments.filter(pl.col("metric").is_in(SCORE_METRICS))
        .select(pl.col("judge").struct.field("model").unique().sort())
        .collect()
        .to_series()
        .to_list()
    )
    if config.judge is not None:
        if config.judge not in judges:
            raise InputError(
                f"judge {config.judge!r} has no safety/helpfulness judgments in this run; "
                f"judges present: {', '.join(judges) or 'none'}",
                field="judge",
            )
        return config.judge
    if len(judges) > 1:
        raise InputError(
            f"the run holds judgments from several judges ({', '.join(judges)}); choose one with --judge",
            field="judge",
        )
    return judges[0] if judges else None


def _replicate_scores(judged: pl.LazyFrame, config: PairConfig) -> pl.LazyFrame:
    """``trajectory_id``, ``metric``, ``value``: the replicates of each (trajectory, metric) aggregated and
    filtered by ``config.agreement`` (null when they disagree). The aggregates and agreement flags are the
    judges' own (``prefkit.judges.replicates``), so pairing and judging read replicates by one rule."""
    stats = replicate_stats(judged)
    if config.agreement != "none":
        most = stats.select(pl.col("n").max()).collect().item()
        if most is None or most < 2:
            raise InputError(
                f"agreement {config.agreement!r} needs multi-replicate judgments, but every trajectory has at most "
                "one scored replicate per metric",
                field="agreement",
            )
    value = aggregate_column(config.aggregation)
    keep = pl.lit(True) if config.agreement == "none" else pl.col(config.agreement)
    return stats.select("trajectory_id", "metric", value=pl.when(keep).then(value).otherwise(None))


def trajectory_scores(judgments: pl.LazyFrame, config: PairConfig) -> pl.LazyFrame:
    """Columns ``trajectory_id``, ``safety``, ``helpfulness`` (Float64, null where unusable).

    Raises:
        InputError: see ``select_judge``; or an agreement filter on a run without multi-replicate judgments.
    """
    judge = select_judge(judgments, config)
    # No judge (no judgments at all) matches nothing; comparing with None would make polars warn.
    by_judge = pl.lit(False) if judge is None else pl.col("judge").struct.field("model") == judge
    judged = judgments.filter(
        pl.col("metric").is_in(SCORE_METRICS) & by_judge
    ).select("trajectory_id", "metric", "judge", "replicate", "score", "distribution")
    single = judged.select((pl.col("replicate") == 0).all()).collect().item() is not False
    if single and config.agreement == "none":
        # One replicate each (the common case, and the study's data): the score is the value, so skip the
        # group_by, whose median alone costs seconds per million judgments. A judgment imported twice counts once.
        value = judgment_expected_score() if config.aggregation == "expected" else pl.col("score").cast(pl.Float64)
        values = judged.unique(["trajectory_id", "metric"], keep="first").select("trajectory_id", "metric", value=value)
    else:
        values = _replicate_scores(judged, config)
    safety, helpfulness = (
        values.filter(pl.col("metric") == m).select("trajectory_id", pl.col("value").alias(m)) for m in SCORE_METRICS
    )
    return safety.join(helpfulness, on="trajectory_id", how="full", coalesce=True)
