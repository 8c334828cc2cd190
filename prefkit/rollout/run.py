"""``prefkit rollout``: a suite in, a run folder of trajectories out, resumable.

The run folder holds what any run holds (``manifest.json``, ``scenarios``, ``toolkits`` and, once
every trajectory is made, ``trajectories``), readable by ``prefkit inspect`` and the pairer, plus the
shards of finished trajectories in ``.rollout/`` (see ``prefkit.rollout.resume``). Running the same
command again on the same folder makes only the trajectories whose keys are not stored yet; a
killed run resumes where it stopped, and a finished one does no model call at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.backends import Backend, create_backend, parse_model_spec
from prefkit.errors import InputError
from prefkit.records import Trajectory
from prefkit.store import MANIFEST, RunStore

from .config import RolloutConfig
from .loop import Progress, RolloutItem, run_rollouts
from .resume import SHARD_DIR, TrajectoryShards, rollout_key
from .suite import Suite, load_scenario_suite

CREATED_BY = "prefkit rollout"


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


def open_rollout_run(out: str | Path, suite: Suite, config: RolloutConfig, *, force: bool = False) -> RunStore:
    """The run folder ``out``, created if needed, with the suite's tables and the config in its manifest.

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
    store.update_manifest(inputs={"suite": suite.sha256}, rollout={"config": config.model_dump(mode="json"),
                                                                    "suite": suite.name, "complete": False})
    return store


def make_backends(config: RolloutConfig) -> tuple[Backend, Backend]:
    """The agent's and the emulator's backends (with their ``options``); one shared backend when both
    have the same spec and options, so a model that plays both is loaded once."""
    agent = create_backend(config.agent.model, **config.agent.options)
    if (config.emulator.model, config.emulator.options) == (config.agent.model, config.agent.options):
        return agent, agent
    return agent, create_backend(config.emulator.model, **config.emulator.options)


def rollout_suite(suite: str | Path | Suite, out: str | Path, config: RolloutConfig, *,
                  scenario_ids: list[str] | None = None, backends: tuple[Backend, Backend] | None = None,
                  force: bool = False, progress: Progress | None = None,
                  on_finish: Callable[[list[tuple[str, Trajectory]]], None] | None = None) -> RolloutSummary:
    """Roll out ``config.samples`` trajectories per scenario of ``suite`` into the run folder ``out``.

    Args:
        suite: a ``Suite`` or anything ``load_scenario_suite`` accepts.
        out: the run folder; an existing rollout run there is resumed.
        config: agent, emulator, samples and limits.
        scenario_ids: only these scenarios (default: all).
        backends: ``(agent, emulator)`` to use instead of making them from the config's specs (they are
            then not closed here).
        force: replace a non-empty ``out`` that is not a rollout run, or start a rollout run over.

    Raises:
        InputError: a bad suite, an unknown scenario id, an unusable ``out`` or a bad model spec.
    """
    chosen = (suite if isinstance(suite, Suite) else load_scenario_suite(suite)).select(scenario_ids)
    if backends is None:  # a bad spec fails before the run folder is touched
        parse_model_spec(config.agent.model)
        parse_model_spec(config.emulator.model)
    store = open_rollout_run(out, chosen, config, force=force)
    shards = TrajectoryShards(store.path / SHARD_DIR)
    items = [RolloutItem(rollout_key(s, chosen.toolkits, config, i), s, i)
             for s in chosen.scenarios for i in range(config.samples)]
    stored = shards.load()
    missing = [item for item in items if item.key not in stored]
    if missing:
        made = backends or make_backends(config)

        def write(finished: list[tuple[str, Trajectory]]) -> None:
            shards.append(finished)
            if on_finish is not None:
                on_finish(finished)

        try:
            for item, trajectory in zip(missing, run_rollouts(missing, chosen.toolkits, config, agent=made[0],
                                                                emulator=made[1], on_finish=write,
                                                                progress=progress), strict=True):
                stored[item.key] = trajectory
        finally:
            if backends is None:
                for backend in {id(b): b for b in made}.values():
                    backend.close()
    trajectories = [stored[item.key] for item in items]
    store.write("trajectories", trajectories)
    store.update_manifest(rollout={"config": config.model_dump(mode="json"), "suite": chosen.name, "complete": True})
    reasons = (store.scan("trajectories").group_by("finish_reason").len().sort("finish_reason").collect())
    return RolloutSummary(out=store.path, trajectories=len(trajectories), generated=len(missing),
                          finish_reasons=dict(zip(reasons["finish_reason"], reasons["len"], strict=True)))


__all__ = ["RolloutSummary", "make_backends", "open_rollout_run", "rollout_suite"]
