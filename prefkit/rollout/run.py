"""``prefkit rollout``: a suite and one or more agent configurations in, a run folder of trajectories
out, resumable. Also the build's ``generate`` source stage (``generate_source_key``/``generate_source_run``).

The run folder holds what any run holds (``manifest.json``, ``scenarios``, ``toolkits`` and, once
every trajectory is made, ``trajectories``), readable by ``prefkit inspect`` and the pairer, plus the
shards of finished trajectories in ``.rollout/`` (see ``prefkit.rollout.resume``). Running the same
command again on the same folder makes only the trajectories whose keys are not stored yet; a
killed run resumes where it stopped, and a finished one does no model call at all. Sampled
trajectories are seeded per call (``prefkit.rollout.seeds``), so the resumed run's result is the
uninterrupted run's, byte for byte.

Progress: task ``rollout`` (``prefkit.progress``), its total every trajectory of the run, the ones found
in the shards counted as done from the start.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.backends import Backend, create_backend
from prefkit.backends.registry import check_model_spec
from prefkit.errors import InputError
from prefkit.faults import fault_point
from prefkit.progress import NullProgress, Progress
from prefkit.records import Trajectory
from prefkit.store import MANIFEST, RunStore

from .config import GenerateSource, RolloutConfig
from .loop import RolloutItem, run_rollouts
from .resume import SHARD_DIR, TrajectoryShards, rollout_key, templates_version
from .suite import Suite, load_scenario_suite

CREATED_BY = "prefkit rollout"
ROLLOUT_TASK = "rollout"
"""The progress task of a rollout (unit: trajectories), advanced as soon as finished ones are written."""


@dataclass(frozen=True)
class RolloutSummary:
    out: Path
    trajectories: int
    generated: int
    """Trajectories made by this call (the others were found in the shards)."""
    finish_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "trajectories": self.trajectories, "generated": self.generated,
                "reused": self.trajectories - self.generated, "finish_reasons": self.finish_reasons}


def open_rollout_run(out: str | Path, suite: Suite, configs: Sequence[RolloutConfig], *, force: bool = False
                     ) -> RunStore:
    """The run folder ``out``, created if needed, with the suite's tables and the configs in its manifest.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder that is not a rollout run (and not ``force``).
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError("the output path exists and is not a folder", path=target)
    store = RunStore(target)
    resuming = (target / MANIFEST).is_file() and store.manifest().get("created_by") == CREATED_BY
    if target.exists() and any(target.iterdir()) and (force or not resuming):
        if not force:
            raise InputError("the output folder exists, is not empty and is not a rollout run; choose another "
                             "--out or pass --force", path=target)
        shutil.rmtree(target)
        resuming = False
    target.mkdir(parents=True, exist_ok=True)
    if not resuming:
        store.init_manifest(created_by=CREATED_BY, inputs={"suite": suite.sha256})
    store.write("scenarios", suite.scenarios)
    store.write("toolkits", suite.toolkits)
    store.update_manifest(inputs={"suite": suite.sha256}, rollout=_manifest_entry(suite, configs, complete=False))
    return store


def _manifest_entry(suite: Suite, configs: Sequence[RolloutConfig], *, complete: bool) -> dict[str, Any]:
    return {"configs": [c.model_dump(mode="json") for c in configs], "suite": suite.name, "complete": complete}


class BackendPool:
    """Backends made from specs on first use, one per (spec, options), all closed together; so a model
    that plays the agent and the emulator, or the emulator of several agents, is loaded once."""

    def __init__(self) -> None:
        self._made: dict[str, Backend] = {}

    def get(self, spec: str, options: dict[str, Any]) -> Backend:
        key = json.dumps([spec, options], sort_keys=True, default=str)
        if key not in self._made:
            self._made[key] = create_backend(spec, **options)
        return self._made[key]

    def pair(self, config: RolloutConfig) -> tuple[Backend, Backend]:
        """The agent's and the emulator's backends of ``config``."""
        return (self.get(config.agent.model, config.agent.options),
                self.get(config.emulator.model, config.emulator.options))

    def close(self) -> None:
        for backend in self._made.values():
            backend.close()
        self._made.clear()


def _check_configs(configs: Sequence[RolloutConfig], *, check_specs: bool) -> None:
    names = [c.agent.identity().name for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"agent name(s) {', '.join(map(repr, repeated))} used by more than one agent configuration; "
                         "give each configuration its own name", field="agent.name")
    if check_specs:  # a bad spec fails before the run folder is touched
        for config in configs:
            check_model_spec(config.agent.model, config.agent.options, field="agent", options_field="agent-option")
            check_model_spec(config.emulator.model, config.emulator.options, field="emulator",
                             options_field="emulator-option")


def rollout_suite(suite: str | Path | Suite, out: str | Path, config: RolloutConfig | Sequence[RolloutConfig], *,
                  scenario_ids: list[str] | None = None, backends: tuple[Backend, Backend] | None = None,
                  force: bool = False, progress: Progress | None = None,
                  on_finish: Callable[[list[tuple[str, Trajectory]]], None] | None = None) -> RolloutSummary:
    """Roll out ``samples`` trajectories per scenario of ``suite``, for each agent configuration, into
    the run folder ``out`` (one agent after the other; each agent's trajectories step-synchronously).

    Args:
        suite: a ``Suite`` or anything ``load_scenario_suite`` accepts.
        out: the run folder; an existing rollout run there is resumed.
        config: one configuration, or several (e.g. several agents, to pair their trajectories later);
            their agent names must differ.
        scenario_ids: only these scenarios (default: all).
        backends: ``(agent, emulator)`` to use for every configuration instead of making them from the
            specs (they are then not closed here).
        force: replace a non-empty ``out`` that is not a rollout run, or start a rollout run over.
        progress: told ``start("rollout", total, done=...)``, ``advance`` as trajectories are written,
            ``finish``.
        on_finish: called with each wave's finished ``(key, trajectory)`` pairs once they are written.

    Returns:
        A summary; the run's ``trajectories`` table holds exactly the trajectories of ``config``, in
        configuration, scenario and sample order.

    Raises:
        InputError: a bad suite, an unknown scenario id, an unusable ``out``, a bad model spec or two
            configurations with the same agent name.
    """
    configs = [config] if isinstance(config, RolloutConfig) else list(config)
    chosen = (suite if isinstance(suite, Suite) else load_scenario_suite(suite)).select(scenario_ids)
    _check_configs(configs, check_specs=backends is None)
    store = open_rollout_run(out, chosen, configs, force=force)
    shards = TrajectoryShards(store.path / SHARD_DIR)
    stored = shards.load()
    plan = [(c, [RolloutItem(rollout_key(s, chosen.toolkits, c, i), s, i)
                 for s in chosen.scenarios for i in range(c.samples)]) for c in configs]
    progress = progress or NullProgress()
    planned = [item.key for _, items in plan for item in items]
    progress.start(ROLLOUT_TASK, len(planned), done=sum(key in stored for key in planned), unit="trajectories")

    def write(finished: list[tuple[str, Trajectory]]) -> None:
        shards.append(finished)
        progress.advance(ROLLOUT_TASK, len(finished))  # counted once written: the count is what is kept
        fault_point("rollout")
        if on_finish is not None:
            on_finish(finished)

    pool = BackendPool()
    generated = 0
    try:
        for cfg, items in plan:
            missing = [item for item in items if item.key not in stored]
            if not missing:
                continue
            agent, emulator = backends or pool.pair(cfg)
            made = run_rollouts(missing, chosen.toolkits, cfg, agent=agent, emulator=emulator, on_finish=write)
            stored.update((item.key, t) for item, t in zip(missing, made, strict=True))
            generated += len(missing)
    finally:
        pool.close()
    trajectories = [stored[item.key] for _, items in plan for item in items]
    store.write("trajectories", trajectories)
    store.update_manifest(rollout=_manifest_entry(chosen, configs, complete=True))
    progress.finish(ROLLOUT_TASK)
    reasons = store.scan("trajectories").group_by("finish_reason").len().sort("finish_reason").collect()
    return RolloutSummary(out=store.path, trajectories=len(trajectories), generated=generated,
                          finish_reasons=dict(zip(reasons["finish_reason"], reasons["len"], strict=True)))


def generate_source_key(section: GenerateSource) -> dict[str, Any]:
    """What the build's ``source`` stage is keyed by for generated trajectories: the suite's content and
    the section without backend options (they do not change what is generated)."""
    suite = load_scenario_suite(section.suite)
    return {"suite": suite.sha256, "templates": templates_version(),
            "section": section.model_dump(mode="json", exclude={"suite": True, "emulator": {"options"},
                                                                "agents": {"__all__": {"options"}}})}


def generate_source_run(section: GenerateSource, run_dir: str | Path, *, progress: Progress | None = None
                        ) -> RolloutSummary:
    """The build's ``source`` stage for generated trajectories: ``rollout_suite`` into ``run_dir``.

    A rollout run already there is resumed (a killed stage redoes only unfinished trajectories); any
    other content (e.g. an earlier import) is replaced.
    """
    target = Path(run_dir)
    manifest = target / MANIFEST
    is_rollout = manifest.is_file() and RunStore(target).manifest().get("created_by") == CREATED_BY
    return rollout_suite(section.suite, target, section.rollout_configs(),
                         scenario_ids=list(section.scenarios) if section.scenarios else None,
                         force=target.exists() and not is_rollout, progress=progress)


__all__ = ["BackendPool", "RolloutSummary", "generate_source_key", "generate_source_run", "open_rollout_run",
           "rollout_suite"]
