"""The pairer's one config: which pairs to build, how to read the scores, how to split, how to render.

Defaults reproduce the study (``prepare_dpo_data.py``: min gap 2, min chosen 2, no dedup, ties skipped,
median of replicates truncated with ``int()``, ``both``/``average`` built with helpfulness first).
Every option beyond the study is off by default and named explicitly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from prefkit.judges.replicates import Aggregation
from prefkit.records import TRAJECTORY_FLAGS, PairStrategy

ScoreMetric = Literal["safety", "helpfulness"]
Agreement = Literal["none", "all_but_one", "majority", "exact"]
Ties = Literal["skip", "second_metric"]
SplitRule = Literal["study", "fraction"]
Rendering = Literal["react", "native"]


class PairConfig(BaseModel, frozen=True, extra="forbid", validate_default=True):
    """How ``build_pairs`` turns judged trajectories into preference pairs.

    Example: the study's best-of-both dataset is ``PairConfig(strategy="both", study_compatible=True)``.
    """

    strategy: PairStrategy
    """``safety`` or ``helpfulness``: pair on that metric alone. ``both``: the same chosen/rejected must pass
    on the first metric and, on its own, on the second. ``average``: the first metric must pass, then the
    mean of the two metrics must pass too."""
    min_gap: float = Field(default=2, ge=0)
    """Smallest allowed ``chosen - rejected`` score difference (the study's ``--min-score-difference``)."""
    min_chosen: float = Field(default=2, ge=0, le=3)
    """Smallest allowed score of the chosen trajectory (the study's ``--min-chosen-score``)."""
    first_metric: ScoreMetric = "helpfulness"
    """For ``both``/``average``: the metric that decides which side is chosen; the other metric is second.
    The study built both datasets with helpfulness first. Ignored by ``safety``/``helpfulness``."""
    aggregation: Aggregation = "median"
    """How a trajectory's judgments (one per replicate) become one score: ``median`` (then truncated to an
    integer with ``int()``, as the study does, so 2.5 becomes 2), ``mean`` (kept as a float) or ``expected``
    (the mean of the logprob judgments' expected scores, ``sum(k * p_k)``: a float that keeps the judge's
    uncertainty; judgments without a distribution count their score)."""
    agreement: Agreement = "none"
    """Drop a trajectory's score on a metric unless its replicates agree: ``all_but_one`` (n >= 2 and the most
    common score occurs at least n-1 times), ``majority`` (the most common score occurs more than n/2 times),
    ``exact`` (all equal). Needs multi-replicate judgments."""
    judge: str | None = None
    """Judge model whose judgments to use when the run holds several judges (required then)."""
    study_compatible: bool = False
    """Guarantee the study's exact output: rejects every beyond-the-study option below and a non-study split."""

    # Beyond the study (all off by default) --------------------------------------------------------
    dedup: bool = False
    """Before pairing, drop trajectories of a scenario whose rendered agent side (the messages of ``rendering``)
    repeats an earlier one in run order; the first occurrence (and its scores) is kept."""
    max_pairs_per_scenario: int | None = Field(default=None, ge=1)
    """Keep at most this many pairs per scenario: those with the largest first-metric margin (ties: run order)."""
    max_chosen_reuse: int | None = Field(default=None, ge=1)
    """Keep at most this many pairs in which one trajectory is chosen: those with the largest first-metric
    margin (ties: run order). Applied before ``max_pairs_per_scenario``."""
    ties: Ties = "skip"
    """``skip`` (the study): pairs with equal first-metric scores never pair. ``second_metric``: such a pair is
    decided by the second metric instead (gap and min-chosen rules applied to it), provided the shared
    first-metric score is itself >= ``min_chosen``; its first-metric margin is then 0. The second metric of
    ``safety`` is helpfulness and vice versa."""
    safety_floor: float | None = Field(default=None, ge=0, le=3)
    """The chosen trajectory's safety score must also be >= this (meant for ``both``/``average``/``helpfulness``;
    a missing safety score fails)."""
    exclude_chosen_flags: tuple[str, ...] = ()
    """Trajectory flags (``prefkit.records.TRAJECTORY_FLAGS``) that keep a trajectory out of the chosen side: a
    pair whose chosen trajectory carries one is not made (the trajectory may still be rejected). E.g.
    ``("non_object_arguments",)``: the model is never trained towards a cut-off or non-JSON action input."""

    # Split and rendering --------------------------------------------------------------------------
    split_rule: SplitRule = "study"
    """``study``: the study's seeded shuffle of scenario indices, second half is test. ``fraction``: seeded
    shuffle of the sorted scenario ids, the last ``round(test_fraction * N)`` are test."""
    split_seed: int = 0
    """Seed of the split (the study's ``--train-test-split-seed``: 0, 1, 2)."""
    test_fraction: float = Field(default=0.5, ge=0, le=1)
    """Share of scenarios in the test split for ``split_rule="fraction"`` (the study rule always uses half)."""
    rendering: Rendering = "react"
    """How TRL rows render a trajectory: ``react`` (the study's text turns) or ``native`` (tool calls, with a
    ``tools`` column)."""

    @property
    def metrics(self) -> tuple[ScoreMetric, ScoreMetric]:
        """(first metric, second metric): the first decides the chosen side and the recorded scores."""
        if self.strategy in ("safety", "helpfulness"):
            first: ScoreMetric = self.strategy  # type: ignore[assignment]
        else:
            first = self.first_metric
        return first, ("helpfulness" if first == "safety" else "safety")

    def beyond_study(self) -> list[str]:
        """Names of the options that make the output differ from the study's."""
        changed = [
            name
            for name in ("dedup", "max_pairs_per_scenario", "max_chosen_reuse", "safety_floor")
            if getattr(self, name) not in (None, False)
        ]
        if self.ties != "skip":
            changed.append("ties")
        if self.aggregation == "expected":
            changed.append("aggregation")
        if self.split_rule != "study":
            changed.append("split_rule")
        if self.exclude_chosen_flags:
            changed.append("exclude_chosen_flags")
        return changed

    @field_validator("exclude_chosen_flags")
    @classmethod
    def _known_flags(cls, flags: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in flags if f not in TRAJECTORY_FLAGS]
        if unknown:
            raise ValueError(f"unknown trajectory flag(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(TRAJECTORY_FLAGS)}")
        return tuple(dict.fromkeys(flags))

    @model_validator(mode="after")
    def _check_study_compatible(self) -> PairConfig:
        if self.study_compatible and self.beyond_study():
            raise ValueError(
                "study_compatible forbids the beyond-the-study options "
                f"{', '.join(self.beyond_study())}; drop them or drop study_compatible"
            )
        return self
