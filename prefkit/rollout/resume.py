"""Resuming rollouts: a key per trajectory to make, and finished trajectories written as they finish.

The key (``rollout_key``) hashes everything that decides a trajectory's content: the scenario and
the toolkits it uses, the agent's config (model spec, name, prompt format, sampling, per-call
limit), the run's limits, the sample index, the emulator's config (model spec, mode, sampling,
retries) and the version of the prompt templates and of this loop (``templates_version``); for a
sampled configuration also ``SEEDING_VERSION``, the way sampled calls are seeded. A re-run with the
same key reuses the stored trajectory; anything else is made anew.

Finished trajectories go to ``RUN/.rollout/part-NNNNNN.jsonl`` shards, one per flush, each written
atomically (a temporary file renamed into place), one ``{"key": ..., "trajectory": {...}}`` per line.
A killed rollout therefore loses only the trajectories that had not finished.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from prefkit.errors import InputError
from prefkit.records import Scenario, Toolkit, Trajectory, content_hash
from prefkit.render.prompts import scenario_toolkits
from prefkit.resources import data_dir
from prefkit.store import atomic_path, file_sha256

from .config import RolloutConfig

LOOP_VERSION = 1
"""Bump when the loop changes what it produces for the same inputs (so old shards are not reused)."""

SEEDING_VERSION = 2
"""Bump when the seeds of sampled calls change (``prefkit.rollout.seeds``). Part of sampled
configurations' keys only, so greedy keys never change with it. Version 1 (keyless) shared one seed per
round and batch; version 2 seeds each call from its place in its trajectory."""

SHARD_DIR = ".rollout"


@functools.cache
def templates_version() -> str:
    """A hash of every agent and emulator template file and of ``LOOP_VERSION``."""
    files = sorted(f for kind in ("agent", "emulator") for f in data_dir("generators", kind).glob("*.txt"))
    return content_hash({"loop": LOOP_VERSION, "files": {f"{f.parent.name}/{f.name}": file_sha256(f) for f in files}})


def rollout_key(scenario: Scenario, toolkits: Sequence[Toolkit], config: RolloutConfig, sample_index: int) -> str:
    """The resume key of sample ``sample_index`` of ``scenario`` under ``config``."""
    hashed = {
        "scenario": scenario.model_dump(mode="json"),
        "toolkits": [t.model_dump(mode="json") for t in scenario_toolkits(scenario, toolkits)],
        "agent": config.agent.model_dump(mode="json", exclude={"options"}),
        "limits": config.limits.model_dump(mode="json"),
        "emulator": config.emulator.model_dump(mode="json", exclude={"options"}),
        "sample_index": sample_index,
        "templates": templates_version(),
    }
    if config.agent.temperature or config.emulator.temperature:
        hashed["seeding"] = SEEDING_VERSION
    return content_hash(hashed, length=32)


class TrajectoryShards:
    """The finished trajectories of a rollout, as append-only JSONL shards in one folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.jsonl")) if self.folder.is_dir() else []

    def load(self) -> dict[str, Trajectory]:
        """Every stored trajectory by key (a key stored twice: the later shard wins).

        Raises:
            InputError: a line that is not a stored trajectory (naming the shard and the 1-based line).
        """
        found: dict[str, Trajectory] = {}
        for shard in self.shards():
            for number, line in enumerate(shard.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    record = json.loads(line)
                    found[record["key"]] = Trajectory.model_validate(record["trajectory"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise InputError(f"not a stored trajectory ({exc}); delete the shard to redo its trajectories",
                                     path=shard, line=number) from None
        return found

    def append(self, finished: Sequence[tuple[str, Trajectory]]) -> Path | None:
        """Write ``finished`` as one new shard (atomically); returns its path (``None`` if nothing to write)."""
        if not finished:
            return None
        existing = self.shards()
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        path = self.folder / f"part-{number:06d}.jsonl"
        lines = [json.dumps({"key": key, "trajectory": t.model_dump(mode="json")}, ensure_ascii=False)
                 for key, t in finished]
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
