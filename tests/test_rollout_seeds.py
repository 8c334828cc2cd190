"""Per-trajectory sampling: every sampled request of a rollout carries the seed of its place in its
trajectory (``prefkit.rollout.seeds.call_seed``), the transformers backend draws each row of a batch with
its own generator, and so a sampled rollout killed midway (SIGINT or SIGKILL) and run again ends byte for
byte where an uninterrupted one does. Real transformers backend and tiny models; a scripted backend where
only the requests matter."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
from test_rollout import EMULATOR_OK, ScriptBackend, is_emulator_request

from prefkit.backends import ChatRequest, GenerateConfig, create_backend, generate_sync
from prefkit.backends.base import run_blocking
from prefkit.cli import main
from prefkit.records import Message
from prefkit.rollout import (
    AgentConfig,
    EmulatorConfig,
    RolloutConfig,
    RolloutItem,
    TrajectoryShards,
    load_scenario_suite,
    rollout_key,
    run_rollouts,
)
from prefkit.rollout import resume as resume_module
from prefkit.rollout.seeds import SEED_RANGE, call_seed
from prefkit.store import RunStore

# Seeds of calls --------------------------------------------------------------------------------------


def test_call_seed_depends_on_every_part_of_the_place_and_nothing_else():
    place = {"scenario_id": "s", "agent": "a", "sample_index": 0, "step": 0, "call": "agent", "attempt": 0}
    seed = call_seed(7, **place)
    assert seed == call_seed(7, **place) and 0 <= seed < SEED_RANGE
    changes = [{"scenario_id": "t"}, {"agent": "b"}, {"sample_index": 1}, {"step": 1}, {"call": "reprompt"},
               {"call": "emulator"}, {"call": "emulator_retry"}, {"attempt": 1}]
    others = {call_seed(7, **{**place, **change}) for change in changes} | {call_seed(8, **place)}
    assert seed not in others and len(others) == len(changes) + 1


def _answer(request: ChatRequest) -> str:
    """Each trajectory: an unusable agent reply (re-prompt), a tool call, an emulator reply that is not
    JSON (retry), a good one, a final answer."""
    if is_emulator_request(request):
        return EMULATOR_OK if any(m.role == "assistant" for m in request.messages) else "not json"
    if request.messages[-1].content.startswith("Observation:"):
        return "Final Answer: done"
    if any(m.role == "assistant" for m in request.messages):  # re-prompted
        return "Action: HomeHubListDevices\nAction Input: {}"
    return "no idea"


def _sampled(temperature: float = 0.8) -> RolloutConfig:
    return RolloutConfig(agent=AgentConfig(model="s@s", temperature=temperature, seed=7),
                         emulator=EmulatorConfig(model="s@s", temperature=temperature, retries=1))


def _seeds(scenario_ids: list[str], config: RolloutConfig, samples: int = 2) -> dict[str, list[int | None]]:
    """Scenario id -> the seeds of every request about it, sorted (``None`` for greedy ones)."""
    chosen = load_scenario_suite("starter").select(scenario_ids)
    backend = ScriptBackend(_answer)
    items = [RolloutItem(f"{s.id}/{i}", s, i) for s in chosen.scenarios for i in range(samples)]
    run_rollouts(items, chosen.toolkits, config, agent=backend, emulator=backend)
    found: dict[str, list[int | None]] = {s.id: [] for s in chosen.scenarios}
    for call in backend.calls:
        for request in call:
            text = "\n".join(m.content for m in request.messages)
            [sid] = [s.id for s in chosen.scenarios if s.instruction in text]
            found[sid].append(request.config.seed)
    return {sid: sorted(seeds, key=lambda s: (s is None, s or 0)) for sid, seeds in found.items()}


def test_every_sampled_request_carries_the_seed_of_its_place():
    alone = _seeds(["starter_9"], _sampled())
    expected = sorted(call_seed(7, scenario_id="starter_9", agent="s", sample_index=i, step=step, call=call,
                                attempt=attempt)
                      for i in range(2) for step, call, attempt in [(0, "agent", 0), (0, "reprompt", 1),
                                                                    (0, "emulator", 0), (0, "emulator_retry", 1),
                                                                    (1, "agent", 0)])
    assert alone["starter_9"] == expected
    # In another batch (next to another scenario's trajectories) the same requests carry the same seeds.
    together = _seeds(["starter_9", "starter_11"], _sampled())
    assert together["starter_9"] == expected and not set(together["starter_11"]) & set(expected)
    # Greedy requests carry none (they are exactly as before).
    assert set(_seeds(["starter_9"], _sampled(temperature=0.0))["starter_9"]) == {None}


def test_greedy_resume_keys_do_not_depend_on_the_seeding_version(monkeypatch):
    suite = load_scenario_suite("starter").select(["starter_9"])
    [scenario] = suite.scenarios
    greedy, sampled = _sampled(temperature=0.0), _sampled()
    before = rollout_key(scenario, suite.toolkits, greedy, 0), rollout_key(scenario, suite.toolkits, sampled, 0)
    monkeypatch.setattr(resume_module, "SEEDING_VERSION", resume_module.SEEDING_VERSION + 1)
    assert rollout_key(scenario, suite.toolkits, greedy, 0) == before[0]
    assert rollout_key(scenario, suite.toolkits, sampled, 0) != before[1]


# The transformers backend: a row's draws are its own -----------------------------------------------


def _request(text: str, **config: object) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),), config=GenerateConfig(**config))


OTHERS = ["hello", "a", "send the email to the user about the safety risk of the file", "Paris weather"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return create_backend(f"{tiny_model_dir}@transformers", batch_size=8)


def test_a_seeded_request_samples_the_same_alone_and_in_any_batch(tiny, tiny_model_dir):
    sampling = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 16}
    target = _request("What is the weather in Paris today, in detail?", n=2, seed=11, **sampling)
    others = [_request(text, seed=100 + i, **sampling) for i, text in enumerate(OTHERS)]
    [alone] = generate_sync(tiny, [target])
    assert alone[0].text != alone[1].text  # the n samples of one request differ
    assert generate_sync(tiny, [target, *others])[0] == alone
    assert generate_sync(tiny, [*others[:3], target, *others[3:]])[3] == alone
    small = create_backend(f"{tiny_model_dir}@transformers", batch_size=2)  # other chunks of the same call
    assert generate_sync(small, [*others[:1], target, *others[1:]])[1] == alone
    # another seed draws other samples; greedy requests next to sampled ones stay greedy
    reseeded = target.model_copy(update={"config": target.config.model_copy(update={"seed": 12})})
    assert generate_sync(tiny, [reseeded])[0] != alone
    greedy = _request("hello", max_tokens=16)
    assert generate_sync(tiny, [greedy, target, *others])[0] == generate_sync(tiny, [greedy])[0]


def test_an_interrupted_generation_stops_at_the_next_token(tiny):
    request = _request("hello", temperature=1.0, seed=3, max_tokens=16)
    cancelled = threading.Event()
    cancelled.set()
    [[completion]] = tiny._generate_batch([request], request.config, cancelled)
    assert completion.completion_tokens == 1


def test_run_blocking_sets_cancel_when_its_caller_is_cancelled():
    started, seen = threading.Event(), []

    def work(cancel: threading.Event) -> str:
        started.set()
        seen.append(cancel.wait(60))
        return "finished"

    async def scenario() -> None:
        task = asyncio.ensure_future(run_blocking(work))
        await asyncio.to_thread(started.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # returns at once: the work is not awaited to its end

    asyncio.run(scenario())
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [True]


# Kill and resume a sampled rollout ------------------------------------------------------------------


def _rollout_args(suite, model_dir) -> list[str]:
    spec = f"{model_dir}@transformers"
    return ["rollout", str(suite), "--agent", spec, "--emulator", spec, "--mode", "standard", "--samples", "2",
            "--temperature", "1.5", "--seed", "5", "--max-steps", "3", "--max-tokens", "48", "--token-budget", "300"]


@pytest.fixture(scope="module")
def uninterrupted(mini_suite_dir, agent_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sampled") / "run"
    assert main([*_rollout_args(mini_suite_dir, agent_model_dir), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("signal_name", ["INT", "KILL"])
def test_a_killed_sampled_rollout_resumes_to_the_uninterrupted_result(signal_name, mini_suite_dir, agent_model_dir,
                                                                      uninterrupted, tmp_path):
    args = _rollout_args(mini_suite_dir, agent_model_dir)
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFKIT_FAULT_STAGE": "rollout", "PREFKIT_FAULT_SIGNAL": signal_name}
    # The process stops right after the first finished trajectories are written (prefkit.faults).
    killed = subprocess.run([sys.executable, "-m", "prefkit.cli", *args, "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=900)
    kept = TrajectoryShards(out / ".rollout").load()
    assert 0 < len(kept) < 4 and not (out / "trajectories.parquet").exists()
    if signal_name == "INT":  # what Ctrl-C does: one line, exit code 130, no traceback
        assert killed.returncode == 130, killed.stderr
        assert "Traceback" not in killed.stderr
        assert killed.stderr.strip().splitlines()[-1] == (
            f"interrupted: kept {len(kept)} of 4 trajectories in {out}; run the same command again to resume")
    else:
        assert killed.returncode == -9, killed.stderr

    assert main([*args, "--out", str(out)]) == 0
    resumed, reference = RunStore(out).frame("trajectories"), RunStore(uninterrupted).frame("trajectories")
    assert resumed["id"].to_list() == reference["id"].to_list()
    assert (out / "trajectories.parquet").read_bytes() == (uninterrupted / "trajectories.parquet").read_bytes()
    # and the samples were sampled: the two samples of a scenario are different trajectories
    assert resumed.select("scenario_id", "steps", "final_log").unique().height > 2
