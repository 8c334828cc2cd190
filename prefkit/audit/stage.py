"""``run_audit``: the whole audit of one pairs folder, as ``prefkit audit`` and ``prefkit build`` run it.

Audit the rows (with the run when given), write ``audit.json`` and the plots, check the thresholds. The
caller decides what a violation means (the CLI exits with code 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prefkit.audit.compute import audit_pairs
from prefkit.audit.plots import write_audit
from prefkit.audit.report import AuditReport
from prefkit.audit.thresholds import (
    AuditThresholds,
    ThresholdViolation,
    audit_warnings,
    check_thresholds,
    load_thresholds,
)
from prefkit.errors import InputError
from prefkit.store import RunStore, StoreError


@dataclass(frozen=True)
class AuditOutcome:
    report: AuditReport
    violations: list[ThresholdViolation]
    written: list[Path]
    """``audit.json`` first, then the plots."""
    warnings: tuple[str, ...] = ()
    """``audit_warnings``: what is wrong whatever the limits (e.g. no train pairs)."""


def open_run(path: str | Path) -> RunStore:
    """A run directory, checked to be one (its manifest reads).

    Raises:
        InputError: the folder is missing or is not a prefkit run.
    """
    store = RunStore(path)
    if not store.path.is_dir():
        raise InputError("run folder not found", path=store.path)
    try:
        store.manifest()
    except StoreError as exc:
        raise InputError(str(exc), path=store.path) from exc
    return store


def run_audit(
    pairs_dir: str | Path,
    *,
    run: str | Path | RunStore | None = None,
    out_dir: str | Path | None = None,
    thresholds: AuditThresholds | str | Path | None = None,
    dropped_by_validation: Mapping[str, int] | int | None = None,
    plots: bool = True,
) -> AuditOutcome:
    """Audit ``pairs_dir``, write ``audit.json`` and plots to ``out_dir`` (default ``pairs_dir``), and check
    ``thresholds`` (a model, or a YAML file read by ``load_thresholds``; default: ``AuditThresholds()``, which
    checks only that no scenario is in both splits).

    Raises:
        InputError: a missing or unreadable pairs folder, run or thresholds file.
    """
    limits = thresholds if isinstance(thresholds, AuditThresholds) else (
        load_thresholds(thresholds) if thresholds is not None else AuditThresholds()
    )
    store = run if isinstance(run, RunStore) or run is None else open_run(run)
    report = audit_pairs(pairs_dir, run=store, dropped_by_validation=dropped_by_validation)
    written = write_audit(report, Path(out_dir) if out_dir is not None else Path(pairs_dir), plots=plots)
    return AuditOutcome(report=report, violations=check_thresholds(report, limits), written=written,
                        warnings=tuple(audit_warnings(report)))
