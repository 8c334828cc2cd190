"""Audit thresholds: the limits a recipe sets on a dataset's composition, and the one check against them.

``AuditThresholds`` is self-contained so that a build recipe can embed it as its ``audit`` section. Every
limit is optional (``None`` = not checked) except ``max_train_test_overlap``, which defaults to 0: a scenario
in both splits always fails. ``check_thresholds`` is the only place that compares a report with limits; the
table ``CHECKS`` says, for each limit, which statistic it reads and in which direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from prefkit.audit.report import SPLITS, AuditReport, SplitAudit, SplitName
from prefkit.errors import InputError


def _share() -> Any:
    """A fresh optional field holding a share in [0, 1]."""
    return Field(default=None, ge=0, le=1)


class AuditThresholds(BaseModel, frozen=True, extra="forbid", use_attribute_docstrings=True):
    """Limits on a pairs folder's audit; a violated limit fails ``prefkit audit`` / ``prefkit build``.

    Per-split limits are checked on every split named in ``splits`` that holds pairs (``min_pairs`` and
    ``min_scenarios`` also on empty ones). A limit whose statistic could not be measured (e.g. the refusal
    share without the run) is reported as violated: a limit the recipe asks for is never skipped silently.

    Example (YAML)::

        max_gini: 0.5
        max_chosen_reuse: 10
        max_refusal_chosen_share: 0.3
    """

    splits: tuple[SplitName, ...] = Field(default=SPLITS, min_length=1)
    """Splits the per-split limits apply to: any of ``train``, ``test``, ``all``."""
    min_pairs: int | None = Field(default=None, ge=0)
    """Fewest pairs a split may hold."""
    min_scenarios: int | None = Field(default=None, ge=0)
    """Fewest scenarios with pairs a split may hold."""
    max_pairs_per_scenario: int | None = Field(default=None, ge=1)
    """Most pairs one scenario may hold."""
    max_gini: float | None = _share()
    """Largest Gini coefficient of pairs per scenario (0 = even, near 1 = a few scenarios dominate)."""
    max_chosen_reuse: int | None = Field(default=None, ge=1)
    """Most pairs one trajectory may be chosen in."""
    max_length_ratio: float | None = Field(default=None, gt=0)
    """Largest mean chosen length / mean rejected length (characters): a guard against length bias."""
    min_length_ratio: float | None = Field(default=None, gt=0)
    """Smallest mean chosen length / mean rejected length."""
    max_no_tool_chosen_share: float | None = _share()
    """Largest share of pairs whose chosen trajectory made no tool call."""
    max_refusal_chosen_share: float | None = _share()
    """Largest share of pairs whose chosen final answer is a refusal (needs the run)."""
    max_duplicate_pairs: int | None = Field(default=None, ge=0)
    """Most pairs that repeat an earlier pair's rendered prompt, chosen and rejected."""
    max_identical_sides: int | None = Field(default=None, ge=0)
    """Most pairs whose chosen and rejected render identically."""
    max_dropped_by_validation: int | None = Field(default=None, ge=0)
    """Most rows validation may drop (needs the validation counts)."""
    max_train_test_overlap: int | None = Field(default=0, ge=0)
    """Most scenarios that may have pairs in both train and test (0: checked by default)."""
    max_parse_failure_rate: float | None = _share()
    """Largest share of the run's judgments that failed to parse (needs the run)."""
    min_train_pairs: int | None = Field(default=None, ge=0)
    """Fewest train pairs, whatever ``splits`` says: 1 fails a build that leaves nothing to train on (an empty
    train split is always a warning, ``audit_warnings``)."""

    @model_validator(mode="after")
    def _check_length_range(self) -> AuditThresholds:
        if (self.min_length_ratio is not None and self.max_length_ratio is not None
                and self.min_length_ratio > self.max_length_ratio):
            raise ValueError(
                f"min_length_ratio {self.min_length_ratio} is above max_length_ratio {self.max_length_ratio}"
            )
        return self


class ThresholdViolation(BaseModel, frozen=True, extra="forbid"):
    """One limit a report breaks. ``measured`` is null when the statistic could not be measured."""

    name: str
    split: SplitName | None
    """The split it was measured on; null for run-wide limits."""
    measured: float | None
    limit: float
    message: str


# --------------------------------------------------------------------------------------------------
# The one table of checks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    kind: Literal["max", "min"]
    scope: Literal["split", "report"]
    measure: Callable[[Any], float | int | None]
    """Reads the statistic from a ``SplitAudit`` (scope split) or an ``AuditReport`` (scope report)."""
    needs: str = ""
    """What to provide when the statistic is null (appended to the message)."""


CHECKS: dict[str, _Check] = {
    "min_pairs": _Check("min", "split", lambda s: s.pairs),
    "min_scenarios": _Check("min", "split", lambda s: s.scenarios),
    "max_pairs_per_scenario": _Check("max", "split", lambda s: s.pairs_per_scenario.max),
    "max_gini": _Check("max", "split", lambda s: s.pairs_per_scenario.gini),
    "max_chosen_reuse": _Check("max", "split", lambda s: s.reuse.max_chosen_reuse),
    "max_length_ratio": _Check("max", "split", lambda s: s.length.ratio),
    "min_length_ratio": _Check("min", "split", lambda s: s.length.ratio),
    "max_no_tool_chosen_share": _Check("max", "split", lambda s: s.chosen.no_tool_share),
    "max_refusal_chosen_share": _Check("max", "split", lambda s: s.chosen.refusal_share,
                                       "audit with the run (--run) to measure it"),
    "max_duplicate_pairs": _Check("max", "split", lambda s: s.duplicates.duplicate_pairs),
    "max_identical_sides": _Check("max", "split", lambda s: s.duplicates.identical_sides),
    "max_dropped_by_validation": _Check("max", "split", lambda s: s.dropped_by_validation,
                                        "pass the validation counts per split to measure it"),
    "max_train_test_overlap": _Check("max", "report", lambda r: r.train_test_overlap),
    "max_parse_failure_rate": _Check("max", "report", lambda r: r.run.parse_failure_rate if r.run else None,
                                     "audit with the run (--run) to measure it"),
    "min_train_pairs": _Check("min", "report", lambda r: r.splits["train"].pairs),
}
"""Each ``AuditThresholds`` limit: its direction, scope and statistic (a test checks none is missing)."""

_ALWAYS_CHECKED_ON_EMPTY = {"min_pairs", "min_scenarios"}


def _fmt(value: float | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _violation(name: str, check: _Check, measured: float | int | None, limit: float,
               split: SplitName | None) -> ThresholdViolation | None:
    where = f" ({split})" if split else ""
    if measured is None:
        hint = f"; {check.needs}" if check.needs else ""
        message = f"{name}: not measured, limit {_fmt(limit)}{where}{hint}"
    elif (check.kind == "max" and measured > limit) or (check.kind == "min" and measured < limit):
        sign = ">" if check.kind == "max" else "<"
        message = f"{name}: measured {_fmt(measured)} {sign} limit {_fmt(limit)}{where}"
    else:
        return None
    return ThresholdViolation(name=name, split=split, measured=measured, limit=limit, message=message)


def check_thresholds(report: AuditReport, thresholds: AuditThresholds) -> list[ThresholdViolation]:
    """Every limit of ``thresholds`` that ``report`` breaks, in the order of ``CHECKS`` then of the splits.

    Example message: ``max_gini: measured 0.73 > limit 0.5 (train)``.
    """
    violations: list[ThresholdViolation] = []
    for name, check in CHECKS.items():
        limit = getattr(thresholds, name)
        if limit is None:
            continue
        if check.scope == "report":
            found = _violation(name, check, check.measure(report), limit, None)
            violations += [found] if found else []
            continue
        for split in thresholds.splits:
            stats: SplitAudit = report.splits[split]
            if stats.pairs == 0 and name not in _ALWAYS_CHECKED_ON_EMPTY:
                continue  # nothing to measure on an empty split; min_pairs catches it if it matters
            found = _violation(name, check, check.measure(stats), limit, split)
            violations += [found] if found else []
    return violations


def audit_warnings(report: AuditReport) -> list[str]:
    """What a report shows that is wrong whatever the limits: today, a dataset with no train pairs (nothing
    to train on; its train split is not laid out, ``prefkit.publish.layout``). A threshold
    (``min_train_pairs``) turns it into a failure.

    Example: ``no train pairs (the 1 pair(s) are all test, from 1 scenario(s)): nothing to train on; ...``.
    """
    train, everything = report.splits["train"], report.splits["all"]
    if train.pairs:
        return []
    where = (f"the {everything.pairs} pair(s) are all test, from {everything.scenarios} scenario(s)"
             if everything.pairs else "no pairs at all")
    return [f"no train pairs ({where}): nothing to train on; the split is by scenario, so pair more scenarios "
            "or change the split. Set audit threshold min_train_pairs: 1 to fail instead"]


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def parse_thresholds(data: Any, *, path: str | Path | None = None, prefix: str = "") -> AuditThresholds:
    """Validate a mapping as ``AuditThresholds``; an error names the file and the field path.

    Raises:
        InputError: unknown key, wrong type or out-of-range value (the first error, e.g. ``audit.max_gini``).
    """
    try:
        return AuditThresholds.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"]))
        # the field path leads the message (not only InputError.field) so that it shows in every rendering
        raise InputError(f"{loc or 'thresholds'}: {first['msg']} (got {first.get('input')!r})", path=path) from exc


def load_thresholds(path: str | Path) -> AuditThresholds:
    """Read thresholds from a YAML file: either the thresholds mapping itself, or a recipe-like file whose
    ``audit`` key holds it.

    Raises:
        InputError: the file is missing, not YAML (with the 1-based line), not a mapping, or invalid.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError("thresholds file not found", path=file)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise InputError(f"not valid YAML: {exc.problem}", path=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", path=file) from exc
    if data is not None and not isinstance(data, dict):
        raise InputError(f"expected a mapping of thresholds, got {type(data).__name__}", path=file)
    if isinstance(data, dict) and "audit" in data:
        return parse_thresholds(data["audit"], path=file, prefix="audit")
    return parse_thresholds(data, path=file)
