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
    assert RunStore(out).manifest()["rollout"]["configs"][0]["agent"]["name"] == "renamed"
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


def test_several_agents_in_one_run(spec, mini_suite_dir, tmp_path):
    """Two agent configurations (here the same model under two names) share one run and one loaded
    model; each agent's trajectories are its own, and a re-run of both does nothing."""
    base = scripted_config("react", model=spec)
    configs = [base.model_copy(update={"agent": base.agent.model_copy(update={"name": name})}) for name in ("a", "b")]
    summary = rollout_suite(mini_suite_dir, tmp_path / "run", configs)
    assert summary.generated == summary.trajectories == 4
    frame = RunStore(tmp_path / "run").frame("trajectories")
    assert frame.select(pl.col("agent").struct.field("name"), "scenario_id").rows() == [
        ("a", "mini_0"), ("a", "mini_1"), ("b", "mini_0"), ("b", "mini_1")]
    a, b = frame.head(2), frame.tail(2)
    assert a["steps"].to_list() == b["steps"].to_list() and a["final_log"].to_list() == b["final_log"].to_list()
    assert rollout_suite(mini_suite_dir, tmp_path / "run", configs).generated == 0
    with pytest.raises(InputError, match="'a' used by more than one"):
        rollout_suite(mini_suite_dir, tmp_path / "run", [configs[0], configs[0]])


def test_generate_source_for_the_build(spec, mini_suite_dir, tmp_path, toolemu_cases_path, toolemu_toolkits_path):
    from prefkit.rollout import GenerateSource, generate_source_key, generate_source_run
    from prefkit.sources.toolemu import import_toolemu_cases, write_toolemu_import

    section = GenerateSource.model_validate({
        "suite": str(mini_suite_dir), "scenarios": ["mini_0"], "samples": 2,
        "agents": [{"model": spec, "name": "tiny"}, {"model": spec, "name": "tiny-native", "prompt_format": "native"}],
        "emulator": {"model": spec, "mode": "standard"},
    })
    run_dir = tmp_path / "run"
    # An earlier source of another kind in the build's run folder is replaced...
    write_toolemu_import(import_toolemu_cases(toolemu_cases_path, toolemu_toolkits_path), run_dir)
    summary = generate_source_run(section, run_dir)
    assert summary.generated == 4 and summary.finish_reasons == {"final_answer": 4}
    store = RunStore(run_dir)
    assert store.counts()["scenarios"] == 1 and store.manifest()["created_by"] == "prefkit rollout"
    # ... while a rollout run there is resumed.
    assert generate_source_run(section, run_dir).generated == 0
    # The stage key follows what changes the output, not the backend options.
    key = generate_source_key(section)
    with_options = section.model_copy(update={"agents": tuple(
        a.model_copy(update={"options": {"batch_size": 2}}) for a in section.agents)})
    assert generate_source_key(with_options) == key
    assert generate_source_key(section.model_copy(update={"samples": 3})) != key
