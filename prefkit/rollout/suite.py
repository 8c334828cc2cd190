"""Scenario suites: what ``prefkit rollout SUITE`` accepts.

A suite is scenarios plus the toolkits they use, in ToolEmu's JSON schema (read with
``prefkit.sources.toolemu``). ``SUITE`` may be:

- a folder holding ``cases.json`` + ``toolkits.json`` (prefkit's names) or ``all_cases.json`` +
  ``all_toolkits.json`` (ToolEmu's names);
- a cases file, with the toolkits file of either name next to it;
- a run folder with ``scenarios`` and ``toolkits`` tables (e.g. from ``prefkit import toolemu-cases``);
- the name of a bundled suite in ``generators/scenarios/`` (``starter``: 12 scenarios, 4 toolkits).

The suite's name (``Scenario.suite``) is the folder's name, except for ToolEmu's own files ("toolemu").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefkit.errors import InputError
from prefkit.records import Scenario, Toolkit
from prefkit.resources import data_dir
from prefkit.sources.toolemu_suite import load_suite
from prefkit.store import RunStore, file_sha256, tree_sha256

_FILE_NAMES = (("cases.json", "toolkits.json"), ("all_cases.json", "all_toolkits.json"))


@dataclass(frozen=True)
class Suite:
    name: str
    scenarios: tuple[Scenario, ...]
    toolkits: tuple[Toolkit, ...]
    sha256: str
    """Hash of the suite's input files (or tables), for the run's manifest."""

    def select(self, ids: list[str] | None) -> Suite:
        """The suite restricted to scenarios ``ids`` (in the suite's order).

        Raises:
            InputError: an id the suite does not have.
        """
        if not ids:
            return self
        known = {s.id for s in self.scenarios}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise InputError(f"suite {self.name!r} has no scenario {', '.join(map(repr, unknown))}", field="scenarios")
        wanted = set(ids)
        return Suite(self.name, tuple(s for s in self.scenarios if s.id in wanted), self.toolkits, self.sha256)


def bundled_suites() -> list[str]:
    """Names of the suites shipped in ``generators/scenarios/``."""
    try:
        root = data_dir("generators", "scenarios")
    except FileNotFoundError:
        return []
    return sorted(p.name for p in root.iterdir() if (p / "cases.json").is_file())


def _pair_in(folder: Path) -> tuple[Path, Path] | None:
    for cases, toolkits in _FILE_NAMES:
        if (folder / cases).is_file() and (folder / toolkits).is_file():
            return folder / cases, folder / toolkits
    return None


def _from_files(cases: Path, toolkits: Path) -> Suite:
    scenarios, kits = load_suite(cases, toolkits)
    name = "toolemu" if cases.name == "all_cases.json" else cases.parent.resolve().name
    return Suite(
        name=name,
        scenarios=tuple(s.model_copy(update={"suite": name}) for s in scenarios),
        toolkits=tuple(kits),
        sha256=tree_sha256(cases.parent, [cases, toolkits]) if cases.parent == toolkits.parent
        else file_sha256(cases) + file_sha256(toolkits),
    )


def _from_run(folder: Path) -> Suite:
    store = RunStore(folder)
    scenarios = tuple(store.read("scenarios"))
    toolkits = tuple(store.read("toolkits"))
    if not scenarios:
        raise InputError("the run holds no scenarios", path=folder)
    files = [store.table_path("scenarios"), store.table_path("toolkits")]
    return Suite(scenarios[0].suite, scenarios, toolkits, tree_sha256(folder, files))  # type: ignore[arg-type]


def load_scenario_suite(spec: str | Path) -> Suite:
    """The suite ``spec`` names (see the module docstring for the accepted forms).

    Raises:
        InputError: nothing usable at ``spec``, or the files themselves are bad (naming file and field).
    """
    path = Path(spec)
    if path.is_dir():
        pair = _pair_in(path)
        if pair is not None:
            return _from_files(*pair)
        if (path / "scenarios.parquet").is_file() and (path / "toolkits.parquet").is_file():
            return _from_run(path)
    elif path.is_file():
        for cases, toolkits in _FILE_NAMES:
            if path.name == cases and (path.parent / toolkits).is_file():
                return _from_files(path, path.parent / toolkits)
        pair = _pair_in(path.parent)
        if pair is not None and pair[0] == path:
            return _from_files(*pair)
        raise InputError("a cases file needs its toolkits file beside it (toolkits.json or all_toolkits.json)",
                         path=path)
    elif str(spec) in bundled_suites():
        return _from_files(*(data_dir("generators", "scenarios", str(spec)) / name for name in _FILE_NAMES[0]))
    raise InputError(
        "not a scenario suite: expected a folder with cases.json + toolkits.json (or ToolEmu's all_cases.json + "
        "all_toolkits.json), a run folder with scenarios and toolkits tables, or a bundled suite name "
        f"({', '.join(bundled_suites()) or 'none installed'})",
        path=path,
    )
