"""ToolEmu run files: the file-name grammar, finding trajectory files and their eval files, and the
rule that one agent configuration's case ranges never overlap.

A run is a trajectory file plus one eval file per evaluation type, side by side::

    <agent>_emu-<emulator>_eval-<evaluator>[_<quant>][_r<start>-<end>][_<DDMM_HHMMSS>].jsonl
    <same stem>_eval_agent_safe.jsonl                   safety          (required)
    <same stem>_eval_agent_help_ignore_safety.jsonl     helpfulness     (required)
    <same stem>_eval_agent_help.jsonl                   helpfulness_safe (optional)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from prefkit.errors import InputError
from prefkit.records import Metric


@dataclass(frozen=True)
class EvalType:
    """One kind of ToolEmu evaluation and how prefkit reads it."""

    name: str
    """ToolEmu's eval type, the file suffix after ``_eval_`` (``agent_safe``)."""
    metric: Metric
    score_key: str
    """The key of the score in the record's ``eval_scores``."""
    required: bool

    @property
    def suffix(self) -> str:
        return f"_eval_{self.name}.jsonl"

    @property
    def rubric_version(self) -> str:
        return f"toolemu:{self.name}"


EVAL_TYPES: tuple[EvalType, ...] = (
    EvalType("agent_safe", "safety", "ToolCallRisk", required=True),
    EvalType("agent_help_ignore_safety", "helpfulness", "Helpfulness", required=True),
    EvalType("agent_help", "helpfulness_safe", "Helpfulness", required=False),
)

QUANTIZATIONS = ("int4", "int8", "fp16")

# The evaluator part is lazy so that the optional suffixes (quant, range, timestamp) are taken by
# their own groups whenever they are present.
_RUN_FILE = re.compile(
    r"^(?P<agent>.+?)_emu-(?P<emulator>.+?)_eval-(?P<evaluator>.+?)"
    r"(?:_(?P<quant>" + "|".join(QUANTIZATIONS) + r"))?"
    r"(?:_r(?P<start>\d+)-(?P<end>\d+))?"
    r"(?:_(?P<timestamp>\d{4}_\d{6}))?"
    r"\.jsonl$"
)


@dataclass(frozen=True)
class RunFileName:
    """The parts of a trajectory file's name. ``start``/``end`` is the half-open case range."""

    agent: str
    emulator: str
    evaluator: str
    quantization: str | None
    start: int | None
    end: int | None
    timestamp: str | None

    @classmethod
    def parse(cls, name: str, *, shown_as: str | Path) -> RunFileName:
        """Parse a trajectory file name; ``shown_as`` is how an error names the file.

        Raises:
            InputError: the name does not follow the grammar, or its range is empty.
        """
        m = _RUN_FILE.match(name)
        if m is None:
            raise InputError(
                "file name does not follow <agent>_emu-<emulator>_eval-<evaluator>"
                "[_<int4|int8|fp16>][_r<start>-<end>][_<DDMM_HHMMSS>].jsonl",
                path=shown_as,
            )
        start = int(m["start"]) if m["start"] is not None else None
        end = int(m["end"]) if m["end"] is not None else None
        if start is not None and end is not None and start >= end:
            raise InputError(f"case range r{start}-{end} in the file name is empty", path=shown_as)
        return cls(m["agent"], m["emulator"], m["evaluator"], m["quant"], start, end, m["timestamp"])

    def covers(self, case_idx: int) -> bool:
        return (self.start is None or case_idx >= self.start) and (self.end is None or case_idx < self.end)

    @property
    def range_text(self) -> str:
        return "no range (all cases)" if self.start is None else f"r{self.start}-{self.end}"


@dataclass(frozen=True)
class RunFiles:
    """A trajectory file and its eval files, with paths relative to the runs folder."""

    root: Path
    trajectory: str
    """Posix path of the trajectory file relative to the runs folder."""
    name: RunFileName
    evals: tuple[tuple[EvalType, str], ...]
    """The eval files present, in ``EVAL_TYPES`` order, as relative posix paths."""

    @property
    def folder(self) -> str:
        """The agent folder (relative posix path); its last part is the agent configuration's name."""
        return Path(self.trajectory).parent.as_posix()

    @property
    def agent_name(self) -> str:
        return Path(self.trajectory).parent.name

    def path(self, relative: str) -> Path:
        """The path to open for a relative path of this run (as the user gave the runs folder)."""
        return self.root / relative


def _eval_type_of(name: str) -> EvalType | None:
    return next((e for e in EVAL_TYPES if name.endswith(e.suffix)), None)


def find_run_files(root: str | Path) -> list[RunFiles]:
    """Every run under ``root`` (searched recursively), in the study's order: sorted by the path's
    parts relative to ``root``, so ``gpt-5/`` comes before ``gpt-5-nano/`` (a plain string sort of the
    paths would put ``gpt-5-nano/`` first, because ``-`` sorts before ``/``).

    Raises:
        InputError: ``root`` is not a folder or holds no trajectory file; a trajectory file's name
            does not parse; a required eval file is missing; an eval file has no trajectory file;
            one agent configuration's case ranges overlap.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("runs folder not found (or not a folder)", path=root)
    files = sorted((p for p in root.rglob("*.jsonl") if p.is_file()), key=lambda p: p.relative_to(root).parts)
    rel = {p: p.relative_to(root).as_posix() for p in files}
    eval_files = {rel[p] for p in files if _eval_type_of(p.name) is not None}
    runs: list[RunFiles] = []
    claimed: set[str] = set()
    for p in files:
        if rel[p] in eval_files:
            continue
        name = RunFileName.parse(p.name, shown_as=p)
        evals: list[tuple[EvalType, str]] = []
        for etype in EVAL_TYPES:
            candidate = rel[p].removesuffix(".jsonl") + etype.suffix
            if candidate in eval_files:
                evals.append((etype, candidate))
                claimed.add(candidate)
            elif etype.required:
                raise InputError(
                    f"the {etype.metric} eval file {Path(candidate).name} is missing next to this trajectory file",
                    path=p,
                )
        runs.append(RunFiles(root=root, trajectory=rel[p], name=name, evals=tuple(evals)))
    orphans = sorted(eval_files - claimed)
    if orphans:
        raise InputError("eval file without its trajectory file (expected "
                         f"{_trajectory_name_for(orphans[0])})", path=root / orphans[0])
    if not runs:
        raise InputError("no ToolEmu trajectory files (*.jsonl) found", path=root)
    check_no_overlaps(runs)
    return runs


def _trajectory_name_for(eval_rel: str) -> str:
    etype = _eval_type_of(eval_rel)
    assert etype is not None
    return Path(eval_rel.removesuffix(etype.suffix) + ".jsonl").name


def check_no_overlaps(runs: list[RunFiles]) -> None:
    """One agent configuration (folder, agent, emulator, evaluator, quantization) must not cover a
    case twice: two files with overlapping ranges would give two trajectories for one case.

    Raises:
        InputError: naming both files and their ranges.
    """

    def config(r: RunFiles) -> tuple[str, str, str, str, str]:
        return (r.folder, r.name.agent, r.name.emulator, r.name.evaluator, r.name.quantization or "")

    for _, group in groupby(sorted(runs, key=config), key=config):
        ordered = sorted(group, key=lambda r: (r.name.start or 0, r.trajectory))
        for before, after in zip(ordered, ordered[1:], strict=False):
            before_end = before.name.end
            if before_end is None or (after.name.start or 0) < before_end:
                raise InputError(
                    f"case range {after.name.range_text} overlaps {before.name.range_text} of "
                    f"{before.trajectory} (same agent configuration)",
                    path=after.path(after.trajectory),
                )
