"""The pair-composition audit: what a preference dataset is made of, and limits on it.

Public API: ``audit_pairs(pairs_dir, *, run=None, dropped_by_validation=None) -> AuditReport``,
``AuditThresholds``, ``check_thresholds(report, thresholds) -> list[ThresholdViolation]``, ``audit_warnings(report)``,
``load_thresholds(path)``, ``write_audit(report, out_dir) -> list[Path]`` (``audit.json`` and PNG plots),
``print_audit(report, console, violations)`` (rich tables), ``run_audit(...) -> AuditOutcome`` (all of it,
for the CLI and ``prefkit build``), and the refusal heuristic ``refusal_expr`` / ``is_refusal``.

Modules: ``report`` (the report model = ``audit.json``), ``rows`` (reading the pairs' rows), ``compute``
(the statistics), ``refusal``,
``thresholds``, ``plots``, ``console``, ``stage``.
"""

from prefkit.audit.compute import audit_pairs
from prefkit.audit.console import print_audit
from prefkit.audit.plots import write_audit
from prefkit.audit.refusal import is_refusal, refusal_expr
from prefkit.audit.report import AuditReport, SplitAudit
from prefkit.audit.stage import AuditOutcome, run_audit
from prefkit.audit.thresholds import (
    AuditThresholds,
    ThresholdViolation,
    audit_warnings,
    check_thresholds,
    load_thresholds,
)

__all__ = [
    "AuditOutcome",
    "AuditReport",
    "AuditThresholds",
    "SplitAudit",
    "ThresholdViolation",
    "audit_pairs",
    "audit_warnings",
    "check_thresholds",
    "is_refusal",
    "load_thresholds",
    "print_audit",
    "refusal_expr",
    "run_audit",
    "write_audit",
]
