"""Import ToolEmu data: the scenario suite (cases + toolkits) and judged run files.

``import_toolemu_runs`` reads everything and checks it before anything is written;
``write_toolemu_import`` then writes one run directory all at once (``prefkit.store.new_run``), so bad
input never leaves a partial run behind.

Order: trajectories come in the study's order — run files sorted by their path parts relative to
the runs folder, then line order — because the pairer's study-compatible mode reproduces the order
in which the study's script met them. Judgments follow their trajectory files' order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prefkit.errors import InputError
from prefkit.records import JudgeIdentity, Judgment, Scenario, Toolkit, Trajectory
from prefkit.sources.reading import read_jsonl
from prefkit.sources.toolemu_files import RunFiles, find_run_files
from prefkit.sources.toolemu_records import agent_identity, judgments_from_record, trajectory_from_record
from prefkit.sources.toolemu_suite import load_cases, load_suite, load_toolkits
from prefkit.store import RunStore, file_sha256, new_run, tree_sha256

__all__ = [
    "ToolEmuImport",
    "import_toolemu_cases",
    "import_toolemu_runs",
    "load_cases",
    "load_toolkits",
    "write_toolemu_import",
]


@dataclass(frozen=True)
class ToolEmuImport:
    """What an import read, ready to be written as a run.

    ``trajectories``/``judgments`` are ``None`` for a suite-only import (cases and toolkits alone),
    whose run then holds just the ``scenarios`` and ``toolkits`` tables.
    """

    scenarios: tuple[Scenario, ...]
    toolkits: tuple[Toolkit, ...]
    trajectories: tuple[Trajectory, ...] | None = None
    judgments: tuple[Judgment, ...] | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    """SHA-256 of each input by role: ``cases``, ``toolkits`` and (for runs) ``runs``."""
    created_by: str = "prefkit import toolemu"

    def counts(self) -> dict[str, int]:
        tables = {"scenarios": self.scenarios, "toolkits": self.toolkits,
                  "trajectories": self.trajectories, "judgments": self.judgments}
        return {name: len(rows) for name, rows in tables.items() if rows is not None}


def import_toolemu_cases(cases_path: str | Path, toolkits_path: str | Path) -> ToolEmuImport:
    """A scenario suite alone: ToolEmu's cases and toolkits, checked against each other.

    Raises:
        InputError: see ``load_cases``, ``load_toolkits`` and ``check_scenario_toolkits``.
    """
    scenarios, toolkits = load_suite(cases_path, toolkits_path)
    return ToolEmuImport(
        scenarios=tuple(scenarios),
        toolkits=tuple(toolkits),
        inputs={"cases": file_sha256(Path(cases_path)), "toolkits": file_sha256(Path(toolkits_path))},
        created_by="prefkit import toolemu-cases",
    )


def import_toolemu_runs(runs_dir: str | Path, *, cases_path: str | Path, toolkits_path: str | Path) -> ToolEmuImport:
    """Read ToolEmu's judged run files under ``runs_dir`` (recursively) with the suite they ran on.

    Each trajectory file's lines become ``Trajectory`` records (agent = the file's folder name, source
    = its path relative to ``runs_dir`` and 0-based line); each eval file's line ``i`` judges line
    ``i`` of its trajectory file. A rollout found twice (the same trajectory id, e.g. one run judged
    in two judges' folders) is kept once, the first time, and gets the judgments of both; a judgment
    read twice (same id) is kept once too.

    Raises:
        InputError: naming the file and the 1-based line (see ``find_run_files``,
            ``trajectory_from_record`` and ``judgments_from_record``), or an eval file whose line
            count differs from its trajectory file's.
    """
    suite = import_toolemu_cases(cases_path, toolkits_path)
    runs = find_run_files(runs_dir)
    trajectories: dict[str, Trajectory] = {}
    judgments: dict[str, Judgment] = {}
    for run in runs:
        run_trajectories = _read_trajectories(run, suite.scenarios)
        for t in run_trajectories:
            trajectories.setdefault(t.id, t)
        for j in _read_judgments(run, [t.id for t in run_trajectories]):
            judgments.setdefault(j.id, j)
    return ToolEmuImport(
        scenarios=suite.scenarios,
        toolkits=suite.toolkits,
        trajectories=tuple(trajectories.values()),
        judgments=tuple(judgments.values()),
        inputs={**suite.inputs, "runs": _runs_sha256(Path(runs_dir), runs)},
        created_by="prefkit import toolemu",
    )


def _read_trajectories(run: RunFiles, scenarios: tuple[Scenario, ...]) -> list[Trajectory]:
    shown = str(run.path(run.trajectory))
    agent = agent_identity(run.agent_name, run.name)
    out: list[Trajectory] = []
    previous: int | None = None
    for line, (_, record) in enumerate(read_jsonl(run.path(run.trajectory), shown_as=shown)):
        t = trajectory_from_record(record, line=line, file=run.trajectory, shown_as=shown, name=run.name,
                                   agent=agent, scenarios=scenarios)
        index = record["case_idx"]  # checked by trajectory_from_record
        if previous is not None and index <= previous:
            # Eval records carry no case index: they line up by position, which needs a fixed order.
            raise InputError(f"case_idx {index} does not follow case_idx {previous} (cases must be strictly increasing)",
                             path=shown, line=line + 1, field="case_idx")
        previous = index
        out.append(t)
    return out


def _read_judgments(run: RunFiles, trajectory_ids: list[str]) -> list[Judgment]:
    out: list[Judgment] = []
    for etype, rel in run.evals:
        shown = str(run.path(rel))
        lines = read_jsonl(run.path(rel), shown_as=shown)
        if len(lines) != len(trajectory_ids):
            first_unmatched = min(len(lines), len(trajectory_ids)) + 1
            raise InputError(
                f"{len(lines)} eval records for {len(trajectory_ids)} trajectories in {Path(run.trajectory).name} "
                f"(line {first_unmatched} has no partner)",
                path=shown,
                line=first_unmatched,
            )
        judge = JudgeIdentity(model=run.name.evaluator, backend="toolemu", rubric_version=etype.rubric_version)
        for line, ((raw, record), trajectory_id) in enumerate(zip(lines, trajectory_ids, strict=True)):
            out.extend(judgments_from_record(record, raw, line=line, file=rel, shown_as=shown, etype=etype,
                                             judge=judge, trajectory_id=trajectory_id))
    return out


def write_toolemu_import(result: ToolEmuImport, out: str | Path, *, force: bool = False) -> RunStore:
    """Write ``result`` as a new run directory ``out`` (all or nothing) and return its store.

    Raises:
        StoreError: ``out`` is a file, or a non-empty folder and ``force`` is false (see ``new_run``).
    """
    with new_run(Path(out), created_by=result.created_by, inputs=dict(result.inputs), overwrite=force) as store:
        store.write("scenarios", result.scenarios)
        store.write("toolkits", result.toolkits)
        if result.trajectories is not None:
            store.write("trajectories", result.trajectories)
        if result.judgments is not None:
            store.write("judgments", result.judgments)
    return store


def _runs_sha256(root: Path, runs: Sequence[RunFiles]) -> str:
    files = [run.path(p) for run in runs for p in (run.trajectory, *(e for _, e in run.evals))]
    return tree_sha256(root, files)


def runs_sha256(runs_dir: str | Path) -> str:
    """The hash of a runs folder's run files (trajectory and eval files), as an import's manifest records it
    under ``inputs["runs"]``: what ``prefkit build`` keys its import stage by.

    Raises:
        InputError: as ``find_run_files``.
    """
    root = Path(runs_dir)
    return _runs_sha256(root, find_run_files(root))
