"""The safety/helpfulness frontier: trained configurations' changes versus their source models, the
least-squares line through them with R², and persistence with bootstrap intervals (paper-reference §6).

``frontier(paths)`` reads the study's results folders and prefkit runs (``prefkit.frontier.read``) and
computes the report (``prefkit.frontier.compute``); ``plot_frontier(report, "out.png")`` draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prefkit.errors import InputError
from prefkit.frontier.compute import FrontierPoint, FrontierReport, SourcePoint, compute_frontier
from prefkit.frontier.persistence import PersistenceEstimate, persistence
from prefkit.frontier.plot import plot_frontier
from prefkit.frontier.read import TOOLEMU_SUITE_SIZE, read_case_scores


def frontier(paths: Sequence[str | Path], *, sources: Mapping[str, str] | None = None, n_bootstrap: int = 10_000,
             suite_size: int = TOOLEMU_SUITE_SIZE) -> FrontierReport:
    """Read ``paths`` (results folders or prefkit runs) and compute the frontier.

    Args:
        sources: source model name → nickname, for source models whose names do not give it.
        n_bootstrap: bootstrap draws for the persistence intervals (0: none).
        suite_size: scenarios in the suite of ToolEmu run files (144).

    Raises:
        InputError: unreadable inputs, or no trained model among them.
    """
    return compute_frontier(read_case_scores(paths, suite_size=suite_size), sources=sources, n_bootstrap=n_bootstrap)


def parse_sources(items: Sequence[str]) -> dict[str, str]:
    """``["Qwen_Qwen2.5-7B-Instruct=Qwen2.5-7B", ...]`` (``--source NAME=NICK``) as a dict.

    Raises:
        InputError: an item without ``=``.
    """
    pairs = [item.partition("=") for item in items]
    bad = [item for item, (_, sep, nick) in zip(items, pairs, strict=True) if not sep or not nick]
    if bad:
        raise InputError(f"--source expects NAME=NICK, got {bad[0]!r}", field="source")
    return {name: nick for name, _, nick in pairs}


def report_json(report: FrontierReport) -> dict:
    """The ``--json`` object: ``r2``, ``slope``, ``intercept``, ``points`` (``source``, ``config``, ``safety``,
    ``helpfulness``, ``d_safety``, ``d_helpfulness``, ...), ``persistence`` (per beta: ``safety``,
    ``helpfulness``), then ``sources``, ``judges``, ``seeds``, ``n_bootstrap``."""
    return report.model_dump(mode="json")


__all__ = [
    "FrontierPoint",
    "FrontierReport",
    "PersistenceEstimate",
    "SourcePoint",
    "compute_frontier",
    "frontier",
    "parse_sources",
    "persistence",
    "plot_frontier",
    "read_case_scores",
    "report_json",
]
