"""Which trajectories of a scenario pair up: the study's rules as one polars predicate, and the join.

Input (``candidates``): one row per trajectory that has a first-metric score, with columns ``order`` (its row
in the run's trajectories table), ``group`` (its scenario's rank in first-seen order), ``m1`` and ``m2``
(first and second metric scores, Float64, ``m2`` may be null) and optionally ``eligible`` (Boolean: whether it
may be the chosen side, see ``PairConfig.exclude_chosen_flags``; true when absent).

Output: pairs as ``group``, ``chosen`` and ``rejected`` (``order`` values), in the study's order: scenarios
in first-seen order, then every unordered pair ``i < j`` (by ``order``) in ``(i, j)`` order.

How: every rule depends only on the two sides' scores (and the chosen side's ``eligible``), and a passing pair is always oriented (the chosen side
is strictly better on the deciding metric), so each unordered pair can pass in one orientation at most. The
predicate is therefore evaluated once on the few distinct score tuples ("buckets", e.g. 16 for two metrics on
0-3) to get the bucket pairs that pass; the self-join on (scenario, bucket) then produces exactly the passing
pairs and never the ~n²/2 candidates that cannot pass. Scenarios are joined in batches, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from prefkit.pairing.config import PairConfig

BATCH_CANDIDATE_PAIRS = 2_000_000
"""Upper bound of unordered candidate pairs (n(n-1)/2 per scenario) joined in one batch."""


def _metric_passes(chosen: pl.Expr, rejected: pl.Expr, config: PairConfig) -> pl.Expr:
    """The study's test on one metric: chosen strictly higher, gap >= min_gap, chosen >= min_chosen."""
    return (chosen > rejected) & (chosen - rejected >= config.min_gap) & (chosen >= config.min_chosen)


def pair_predicate(config: PairConfig) -> pl.Expr:
    """Whether chosen (``c1``, ``c2``) vs rejected (``r1``, ``r2``) is a pair: THE place the rules live.

    ``c1``/``r1`` are the first-metric scores, ``c2``/``r2`` the second. Null scores make the predicate null
    (treated as false by ``filter``). Rules (paper-reference.md §4):

    - safety / helpfulness: the first metric passes (``_metric_passes``).
    - both: the first metric passes and, on its own, so does the second, with the same chosen side.
    - average: the first metric passes, then so does ``a = (m1 + m2) / 2``.
    - ``ties="second_metric"``: a first-metric tie (both >= min_chosen) counts as passing the first metric
      when the second metric passes.
    - ``safety_floor``: the chosen side's safety is >= the floor.
    - ``exclude_chosen_flags``: the chosen side is ``eligible`` (``c_eligible``: it carries none of those
      flags); a flagged trajectory may still be the rejected side.
    """
    c1, r1, c2, r2 = pl.col("c1"), pl.col("r1"), pl.col("c2"), pl.col("r2")
    first = _metric_passes(c1, r1, config)
    if config.ties == "second_metric":
        first = first | ((c1 == r1) & (c1 >= config.min_chosen) & _metric_passes(c2, r2, config))
    if config.strategy == "both":
        passes = first & _metric_passes(c2, r2, config)
    elif config.strategy == "average":
        passes = first & _metric_passes((c1 + c2) / 2, (r1 + r2) / 2, config)
    else:
        passes = first
    if config.safety_floor is not None:
        chosen_safety = c1 if config.metrics[0] == "safety" else c2
        passes = passes & (chosen_safety >= config.safety_floor)
    if config.exclude_chosen_flags:
        passes = passes & pl.col("c_eligible")
    return passes


def _bucket_key(frame: pl.DataFrame) -> list[str]:
    return ["m1", "m2", *(["eligible"] if "eligible" in frame.columns else [])]


def with_buckets(candidates: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Candidates with a ``bucket`` column (one id per distinct (m1, m2[, eligible]) tuple), and the buckets table."""
    key = _bucket_key(candidates)
    buckets = (
        candidates.select(key)
        .unique()
        .sort(key, nulls_last=True)
        .with_row_index("bucket")
    )
    return candidates.join(buckets, on=key, how="left", nulls_equal=True), buckets


def passing_bucket_pairs(buckets: pl.DataFrame, config: PairConfig) -> pl.DataFrame:
    """(``bucket_c``, ``bucket_r``) for every ordered pair of score tuples that passes ``pair_predicate``."""
    eligible = {"c_eligible": "eligible"} if "eligible" in buckets.columns else {}
    chosen = buckets.select(bucket_c="bucket", c1="m1", c2="m2", **eligible)
    rejected = buckets.select(bucket_r="bucket", r1="m1", r2="m2")
    return (
        chosen.join(rejected, how="cross")
        .filter(pair_predicate(config).fill_null(False))
        .select("bucket_c", "bucket_r")
    )


def _batch_ids(candidates: pl.DataFrame, budget: int) -> pl.DataFrame:
    """Each scenario group's batch number: consecutive groups whose candidate pairs add up to ~budget."""
    return (
        candidates.group_by("group")
        .agg(n=pl.len())
        .sort("group")
        .with_columns(batch=((pl.col("n") * (pl.col("n") - 1) // 2).cum_sum() // max(budget, 1)).cast(pl.UInt32))
        .select("group", "batch")
    )


def _apply_caps(pairs: pl.LazyFrame, config: PairConfig) -> pl.LazyFrame:
    """Keep the largest-margin pairs (ties: study order) per chosen trajectory, then per scenario."""
    for cap, key in ((config.max_chosen_reuse, "chosen"), (config.max_pairs_per_scenario, "group")):
        if cap is None:
            continue
        pairs = (
            pairs.sort(["margin", "pos"], descending=[True, False])
            .filter(pl.int_range(pl.len()).over(key) < cap)
            .sort("pos")
        )
    return pairs


def iter_pair_batches(
    candidates: pl.DataFrame, config: PairConfig, *, batch_candidate_pairs: int = BATCH_CANDIDATE_PAIRS
) -> Iterator[pl.DataFrame]:
    """Passing pairs, one frame per batch of scenarios, in the study's order (see the module docstring).

    Each frame has ``group``, ``chosen``, ``rejected`` (UInt32 ``order`` values) and ``margin`` (first metric).
    """
    if candidates.height == 0:
        return
    if "eligible" not in candidates.columns:
        candidates = candidates.with_columns(eligible=pl.lit(True))
    candidates, buckets = with_buckets(candidates.select("order", "group", "m1", "m2", "eligible"))
    passing = passing_bucket_pairs(buckets, config).lazy()
    candidates = candidates.join(_batch_ids(candidates, batch_candidate_pairs), on="group").sort("group", "order")
    for batch in candidates.partition_by("batch", maintain_order=True, include_key=False):
        side = batch.lazy()
        pairs = (
            side.select("group", chosen="order", bucket_c="bucket", c1="m1")
            .join(passing, on="bucket_c")
            .join(
                side.select("group", rejected="order", bucket_r="bucket", r1="m1"),
                on=["group", "bucket_r"],
            )
            .select(
                "group",
                "chosen",
                "rejected",
                margin=pl.col("c1") - pl.col("r1"),
                i=pl.min_horizontal("chosen", "rejected"),
                j=pl.max_horizontal("chosen", "rejected"),
            )
            .sort("group", "i", "j")
            .with_row_index("pos")
        )
        yield _apply_caps(pairs, config).select("group", "chosen", "rejected", "margin").collect()
