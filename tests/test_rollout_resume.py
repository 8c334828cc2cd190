"""Resuming a killed rollout: finished trajectories are written as they finish, a re-run makes only
what is missing (proved by counting the backend's calls and requests), and the result equals an
uninterrupted run's. Real transformers backend, overfit tiny model, greedy decoding."""

from __future__ import annotations

import json

import polars as pl
import pytest
from test_rollout import Counting
from tiny_model_agent import MINI_CASES, scripted_config

from prefkit.backends import create_backend
from prefkit.errors import InputError
from prefkit.rollout import TrajectoryShards, rollout_suite
from prefkit.store import RunStore

INSTRUCTIONS = {case["name"]: case["User Instruction"] for case in MINI_CASES}


def scenarios_asked(calls) -> set[str]:
    """The scenarios whose instructions appear in the requests of ``calls``."""
    return {sid for _, _, requests in calls for r in requests for sid, text in INSTRUCTIONS.items()
            if text in "\n".join(m.content for m in r.messages[:2])}


@pytest.fixture(scope="module")
def backend(agent_model_dir):
    return create_backend(f"{agent_model_dir}@transformers")


@pytest.fixture(scope="module")
def spec(agent_model_dir) -> str:
    return f"{agent_model_dir}@transformers"


@pytest.fixture(scope="module")
def uninterrupted(backend, spec, mini_suite_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    counting = Counting(backend)
    rollout_suite(mini_suite_dir, out, scripted_config("react", model=spec, samples=2), backends=(counting, counting))
    return out, counting.calls


def test_killed_rollout_resumes_with_only_the_missing_work(backend, spec, mini_suite_dir, tmp_path, uninterrupted):
    full_out, full_calls = uninterrupted
    config = scripted_config("react", model=spec, samples=2)
    out = tmp_path / "run"

    # Round 1: agent (4) + emulator (2); round 2: agent (4, mini_0 finishes) + emulator (2); the
    # process dies at its 5th call, round 3's agent wave, before mini_1 finishes.
    dying = Counting(backend, fail_at=5)
    with pytest.raises(RuntimeError, match="killed"):
        rollout_suite(mini_suite_dir, out, config, backends=(dying, dying))
    assert len(dying.calls) == 4
    assert not (out / "trajectories.parquet").exists()
    kept = TrajectoryShards(out / ".rollout").load()
    assert sorted((t.scenario_id, t.sample_index) for t in kept.values()) == [("mini_0", 0), ("mini_0", 1)]

    resumed = Counting(backend)
    summary = rollout_suite(mini_suite_dir, out, config, backends=(resumed, resumed))
    assert summary.generated == 2 and summary.trajectories == 4
    # Only mini_1's two samples are redone: 3 agent waves and 1 emulator wave (its first call is
    # invalid and never reaches the emulator), each of 2 requests, and nothing asks about mini_0.
    assert [(kind, size) for kind, size, _ in resumed.calls] == [("agent", 2), ("agent", 2), ("emulator", 2),
                                                               ("agent", 2)]
    assert scenarios_asked(resumed.calls) == {"mini_1"}
    # ... exactly as many requests as mini_1 needed in the uninterrupted run (batched with mini_0's there).
    mini_1_requests = sum(1 for _, _, requests in full_calls for r in requests
                          if INSTRUCTIONS["mini_1"] in "\n".join(m.content for m in r.messages[:2]))
    assert sum(size for _, size, _ in resumed.calls) == mini_1_requests == 8

    # The result is the uninterrupted run's, row for row.
    assert RunStore(out).frame("trajectories").equals(RunStore(full_out).frame("trajectories"))
    assert RunStore(out).manifest()["rollout"]["complete"] is True

    # A third run finds everything and calls no model at all.
    idle = Counting(backend)
    assert rollout_suite(mini_suite_dir, out, config, backends=(idle, idle)).generated == 0
    assert idle.calls == []


def test_more_samples_only_adds_the_new_ones(backend, spec, mini_suite_dir, tmp_path, uninterrupted):
    full_out, _ = uninterrupted
    out = tmp_path / "run"
    one = Counting(backend)
    rollout_suite(mini_suite_dir, out, scripted_config("react", model=spec, samples=1), backends=(one, one))
    three = Counting(backend)
    summary = rollout_suite(mini_suite_dir, out, scripted_config("react", model=spec, samples=3),
                            backends=(three, three))
    assert summary.generated == 4 and summary.trajectories == 6
    assert [size for _, size, _ in three.calls] == [4, 2, 4, 2, 2]  # samples 1 and 2 of both scenarios
    frame = RunStore(out).frame("trajectories")
    assert frame.select("scenario_id", "sample_index").rows() == [("mini_0", i) for i in range(3)] + \
        [("mini_1", i) for i in range(3)]
    # Samples 0 and 1 are the same trajectories as in the two-sample run.
    full = RunStore(full_out).frame("trajectories")
    assert set(full["id"]) <= set(frame["id"])


def test_a_changed_agent_config_is_made_anew(backend, spec, mini_suite_dir, tmp_path):
    out = tmp_path / "run"
    first = Counting(backend)
    config = scripted_config("react", model=spec)
    rollout_suite(mini_suite_dir, out, config, scenario_ids=["mini_0"], backends=(first, first))
    renamed = config.model_copy(update={"agent": config.agent.model_copy(update={"name": "renamed"})})
    second = Counting(backend)
    rollout_suite(mini_suite_dir, out, renamed, scenario_ids=["mini_0"], backends=(second, second))
    assert [size for _, size, _ in second.calls] == [1, 1, 1]  # a new key: agent, emulator, agent again
    assert RunStore(out).manifest()["rollout"]["config"]["agent"]["name"] == "renamed"
    [t] = RunStore(out).read("trajectories")  # the table holds the current config's trajectories only
    assert t.agent.name == "renamed"


def test_a_damaged_shard_is_named(backend, spec, mini_suite_dir, tmp_path):
    out = tmp_path / "run"
    config = scripted_config("react", model=spec)
    counting = Counting(backend)
    rollout_suite(mini_suite_dir, out, config, scenario_ids=["mini_0"], backends=(counting, counting))
    [shard] = TrajectoryShards(out / ".rollout").shards()
    shard.write_text(shard.read_text() + json.dumps({"key": "k", "trajectory": {"id": 1}}) + "\n")
    with pytest.raises(InputError, match=r"part-000000\.jsonl:2: not a stored trajectory"):
        rollout_suite(mini_suite_dir, out, config, scenario_ids=["mini_0"], backends=(counting, counting))


def test_force_starts_over(backend, spec, mini_suite_dir, tmp_path):
    out = tmp_path / "run"
    config = scripted_config("react", model=spec)
    counting = Counting(backend)
    rollout_suite(mini_suite_dir, out, config, scenario_ids=["mini_0"], backends=(counting, counting))
    again = Counting(backend)
    rollout_suite(mini_suite_dir, out, config, scenario_ids=["mini_0"], backends=(again, again), force=True)
    assert [size for _, size, _ in again.calls] == [1, 1, 1]
    assert pl.read_parquet(out / "trajectories.parquet").height == 1
