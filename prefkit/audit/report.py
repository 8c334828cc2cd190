"""The audit report: what a pairs folder is made of, per split, as one JSON-serialisable value.

``AuditReport.model_dump(mode="json")`` is ``audit.json``. Keys come out in the field order below (stable);
counts are ints, shares and means are floats rounded to ``DECIMALS`` places, and a statistic that could not
be measured (no run given, an empty split) is ``null``. Histograms are ``{value: count}`` objects with the
value written as text (``"2"``, ``"2.5"``) in ascending numeric order.

WARNING: this is an on-disk format read by the dataset card; bump ``AUDIT_FORMAT_VERSION`` when a field
changes (name, meaning or place).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

AUDIT_FORMAT_VERSION = 2
"""2: ``SideStats.flags`` added."""
DECIMALS = 6
"""Floats in the report are rounded to this many decimals so that ``audit.json`` is stable across runs."""

SplitName = Literal["train", "test", "all"]
SPLITS: tuple[SplitName, ...] = ("train", "test", "all")


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PairsPerScenario(_Part):
    """How pairs spread over scenarios (scenarios with at least one pair)."""

    max: int | None
    mean: float | None
    median: float | None
    gini: float | None
    """Gini coefficient of the pairs-per-scenario counts: 0 = every scenario has as many pairs, near 1 = a
    few scenarios hold most pairs."""
    histogram: dict[str, int]
    """``{pairs in a scenario: number of scenarios}``."""


class MetricDistribution(_Part):
    """One metric's scores on one side of the pairs (one value per pair)."""

    histogram: dict[str, int]
    mean: float | None
    missing: int
    """Pairs whose score on this metric is null."""


class SideStats(_Part):
    """The chosen (or rejected) side of every pair; shares are over pairs, so a trajectory chosen in five
    pairs counts five times: that is what DPO sees."""

    safety: MetricDistribution
    helpfulness: MetricDistribution
    mean_tool_calls: float | None
    """Tool calls per trajectory (the run's steps, or the rendered tool turns when no run is given)."""
    no_tool_share: float | None
    """Share of pairs whose trajectory on this side made no tool call."""
    refusal_share: float | None
    """Chosen side only (null on the rejected side and without a run): share of pairs whose chosen final
    answer declines or asks the user for confirmation or information (``prefkit.audit.refusal``)."""
    no_tool_or_refusal_share: float | None
    """Chosen side only: share of pairs whose chosen trajectory made no tool call or refused."""
    flags: dict[str, int] | None = None
    """``{flag: pairs}``: pairs whose trajectory on this side carries each trajectory flag
    (``prefkit.records.TRAJECTORY_FLAGS``, all listed; e.g. ``non_object_arguments``: an action input that is
    not a JSON object). From the rows' ``chosen_flags``/``rejected_flags``, else the run; null when neither
    has them."""


class LengthStats(_Part):
    """Length bias. Length = characters of the rendered chosen/rejected messages: every message's ``content``
    plus, for native tool calls, the JSON text of its ``tool_calls`` (the prompt is not counted)."""

    chosen_mean_chars: float | None
    rejected_mean_chars: float | None
    ratio: float | None
    """``chosen_mean_chars / rejected_mean_chars``: above 1, the data rewards longer answers."""
    median_pair_ratio: float | None
    """Median over pairs of ``chosen chars / rejected chars``."""
    chosen_longer_share: float | None
    """Share of pairs whose chosen side is longer than its rejected side."""


class ReuseStats(_Part):
    """How often one trajectory appears in several pairs."""

    distinct_chosen: int
    max_chosen_reuse: int | None
    """The most pairs any single trajectory is chosen in."""
    mean_chosen_reuse: float | None
    reused_chosen_share: float | None
    """Share of pairs whose chosen trajectory is chosen in at least one other pair too."""
    distinct_rejected: int
    max_rejected_reuse: int | None


class DuplicateStats(_Part):
    duplicate_pairs: int
    """Pairs whose rendered (prompt, chosen, rejected) repeats an earlier pair's exactly: DPO sees the same
    example twice (e.g. identical trajectories from two agent configurations)."""
    repeated_ids: int
    """Pairs whose (chosen id, rejected id) repeats an earlier pair's."""
    identical_sides: int
    """Pairs whose chosen and rejected render to the same messages (the judge scored one text twice)."""


class BestOfBoth(_Part):
    """Trajectories that are both safe and helpful: safety >= ``min_safety`` and helpfulness >=
    ``min_helpfulness`` (``AuditReport.best_of_both_min_*``)."""

    chosen_share: float | None
    """Share of pairs whose chosen side is best-of-both (from the pairs' own scores)."""
    scenarios_with: int | None
    """Scenarios of this split (those with pairs) for which the run holds a best-of-both trajectory; null
    without a run."""


class SplitAudit(_Part):
    """The statistics of one split ("train", "test", or "all" = both)."""

    pairs: int
    scenarios: int
    pairs_per_scenario: PairsPerScenario
    agent_matrix: dict[str, dict[str, int]]
    """``{chosen agent: {rejected agent: pairs}}``, non-zero cells only, agents sorted."""
    score_gap: dict[str, int]
    """Histogram of the first metric's margin (``chosen_score - rejected_score``)."""
    safety_gap: dict[str, int]
    helpfulness_gap: dict[str, int]
    chosen: SideStats
    rejected: SideStats
    length: LengthStats
    reuse: ReuseStats
    duplicates: DuplicateStats
    best_of_both: BestOfBoth
    dropped_by_validation: int | None
    """Rows of this split that validation dropped (as given to ``audit_pairs``); null if unknown."""


class RunStats(_Part):
    """The run the pairs came from (present only when ``audit_pairs`` was given the run)."""

    trajectories: int
    scenarios: int
    judgments: int
    parse_failures: int
    parse_failure_rate: float | None
    """Judgments whose answer could not be parsed (``parse_status == "failed"``) over all judgments."""
    parse_failure_rate_by_metric: dict[str, float]
    scenarios_with_best_of_both: int
    """Scenarios of the run (with or without pairs) that have a best-of-both trajectory."""


class AuditReport(_Part):
    """The audit of one pairs folder (one dataset). Written as ``audit.json`` by ``write_audit``."""

    format_version: int = AUDIT_FORMAT_VERSION
    dataset: str
    """The pairs folder's name."""
    strategy: str | None
    """The pairing strategy (the rows' ``pair_type``)."""
    rendering: str | None
    best_of_both_min_safety: float
    best_of_both_min_helpfulness: float
    splits: dict[SplitName, SplitAudit]
    """Keys ``train``, ``test``, ``all``, in that order."""
    train_test_overlap: int
    """Scenarios that have pairs in both train and test; must be 0."""
    overlapping_scenarios: list[str]
    """The first (up to 20, sorted) of those scenarios."""
    run: RunStats | None
