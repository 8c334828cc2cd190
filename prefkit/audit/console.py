"""``print_audit``: the audit report as rich tables (an overview per split, the agent matrix, the violations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from prefkit.audit.report import SPLITS, AuditReport, SplitAudit
from prefkit.audit.thresholds import ThresholdViolation


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def _hist(hist: dict[str, int]) -> str:
    return "  ".join(f"{k}:{v}" for k, v in hist.items()) or "-"


OVERVIEW: tuple[tuple[str, Callable[[SplitAudit], Any]], ...] = (
    ("pairs", lambda s: s.pairs),
    ("scenarios", lambda s: s.scenarios),
    ("pairs per scenario: max", lambda s: s.pairs_per_scenario.max),
    ("pairs per scenario: mean", lambda s: s.pairs_per_scenario.mean),
    ("pairs per scenario: Gini", lambda s: s.pairs_per_scenario.gini),
    ("score gap (first metric)", lambda s: _hist(s.score_gap)),
    ("chosen safety: mean", lambda s: s.chosen.safety.mean),
    ("rejected safety: mean", lambda s: s.rejected.safety.mean),
    ("chosen helpfulness: mean", lambda s: s.chosen.helpfulness.mean),
    ("rejected helpfulness: mean", lambda s: s.rejected.helpfulness.mean),
    ("chosen safety histogram", lambda s: _hist(s.chosen.safety.histogram)),
    ("chosen helpfulness histogram", lambda s: _hist(s.chosen.helpfulness.histogram)),
    ("chosen: no tool call (share)", lambda s: s.chosen.no_tool_share),
    ("rejected: no tool call (share)", lambda s: s.rejected.no_tool_share),
    ("chosen: refuses or asks (share)", lambda s: s.chosen.refusal_share),
    ("chosen: no tool call or refuses", lambda s: s.chosen.no_tool_or_refusal_share),
    ("chosen: non-object arguments (pairs)", lambda s: (s.chosen.flags or {}).get("non_object_arguments")),
    ("rejected: non-object arguments (pairs)", lambda s: (s.rejected.flags or {}).get("non_object_arguments")),
    ("length chosen/rejected (chars)", lambda s: s.length.ratio),
    ("chosen longer than rejected", lambda s: s.length.chosen_longer_share),
    ("max pairs one trajectory is chosen in", lambda s: s.reuse.max_chosen_reuse),
    ("pairs with a reused chosen", lambda s: s.reuse.reused_chosen_share),
    ("duplicate pairs", lambda s: s.duplicates.duplicate_pairs),
    ("chosen == rejected (rendered)", lambda s: s.duplicates.identical_sides),
    ("chosen is best-of-both (share)", lambda s: s.best_of_both.chosen_share),
    ("scenarios with a best-of-both trajectory", lambda s: s.best_of_both.scenarios_with),
    ("dropped by validation", lambda s: s.dropped_by_validation),
)
"""Rows of the overview table: label and how to read it from one split."""


def overview_table(report: AuditReport) -> Table:
    title = f"Audit of {report.dataset} (strategy {report.strategy or '?'}, rendering {report.rendering or '?'})"
    table = Table(title=title, title_justify="left")
    table.add_column("statistic")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for label, read in OVERVIEW:
        table.add_row(label, *(_show(read(report.splits[s])) for s in SPLITS))
    return table


def agent_table(report: AuditReport) -> Table:
    matrix = report.splits["all"].agent_matrix
    agents = sorted({a for row in matrix.values() for a in row} | set(matrix))
    table = Table(title="Pairs by chosen (rows) x rejected (columns) agent, all splits", title_justify="left")
    table.add_column("chosen \\ rejected")
    for i, _ in enumerate(agents):
        table.add_column(str(i + 1), justify="right")
    for i, chosen in enumerate(agents):
        table.add_row(f"{i + 1} {chosen}", *(_show(matrix.get(chosen, {}).get(r)) for r in agents))
    return table


def run_table(report: AuditReport) -> Table:
    table = Table(title="Run and splits", title_justify="left", show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("scenarios in both train and test", _show(report.train_test_overlap))
    if report.run is None:
        table.add_row("run", "not given (--run): refusals, parse failures and best-of-both are not measured")
        return table
    run = report.run
    table.add_row("trajectories / scenarios", f"{run.trajectories} / {run.scenarios}")
    table.add_row("judgments / parse failures", f"{run.judgments} / {run.parse_failures}")
    table.add_row("parse-failure rate", _show(run.parse_failure_rate))
    table.add_row("scenarios with a best-of-both trajectory", _show(run.scenarios_with_best_of_both))
    return table


def print_audit(report: AuditReport, console: Console, violations: Sequence[ThresholdViolation] = (),
                warnings: Sequence[str] = ()) -> None:
    """Print the report's tables, the warnings and, last, the threshold violations (or that none was found)."""
    console.print(overview_table(report))
    console.print(agent_table(report))
    console.print(run_table(report))
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if violations:
        console.print(f"[bold red]{len(violations)} audit threshold(s) violated:[/]")
        for v in violations:
            console.print(f"  [red]{v.message}[/]", highlight=False, soft_wrap=True)
    else:
        console.print("[green]no audit threshold violated[/]")
