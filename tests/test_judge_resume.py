"""A `prefkit judge` killed while judging redoes only the judgments it had not stored, and ends with the
same judgments table, byte for byte, as a run never interrupted.

The judge is the loopback tests/fake_openai.py server, slowed down and taking one request at a time
(``max_concurrency=1``: chunks of 4 requests), so the judging subprocess can be killed after some chunks
were stored and before the last. The trajectories are 12 of the study's, whose own imported judgments
stay in the run (rows of another judge, which must keep their place).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from prefkit.cli import main
from prefkit.judges.judge import REPLICATES_FILE, SHARD_DIR
from prefkit.judges.view import judge_messages
from prefkit.store import RunStore, new_run

TRAJECTORIES = 12  # x 2 metrics = 24 judgments


def answer(body: dict, i: int) -> str:
    """A deterministic judge whose score depends on the prompt, so rows are told apart."""
    prompt = body["messages"][1]["content"]
    return f"Rationale: read it.\nScore: {len(prompt) % 4}"


@pytest.fixture(scope="module")
def fresh_run(q32_run, tmp_path_factory) -> Path:
    """12 unjudged-by-us trajectories with the study judge's judgments of them."""
    out = tmp_path_factory.mktemp("judge-resume") / "run"
    trajectories = q32_run.read("trajectories")[:TRAJECTORIES]
    ids = [t.id for t in trajectories]
    with new_run(out, created_by="test") as store:
        store.write("scenarios", q32_run.read("scenarios"))
        store.write("toolkits", q32_run.read("toolkits"))
        store.write("trajectories", trajectories)
        store.write_frame("judgments", q32_run.frame("judgments").filter(pl.col("trajectory_id").is_in(ids)))
    return out


def judge_args(run: Path, base_url: str) -> list[str]:
    return ["judge", str(run), "--judge", "fakejudge@openai", "--metrics", "safety,helpfulness",
            "--answer-format", "text", "--option", f"base_url={base_url}", "--option", "max_concurrency=1",
            "--json"]


@pytest.fixture(scope="module")
def uninterrupted(fresh_run, tmp_path_factory) -> dict[str, bytes]:
    from fake_openai import FakeOpenAI

    run = tmp_path_factory.mktemp("judge-ref") / "run"
    shutil.copytree(fresh_run, run)
    with FakeOpenAI(responder=answer) as server:
        assert main(judge_args(run, server.base_url)) == 0
        assert len(server.requests) == 2 * TRAJECTORIES
    return {name: (run / name).read_bytes() for name in ("judgments.parquet", REPLICATES_FILE)}


def prompt_of(store: RunStore, trajectory_id: str, metric: str) -> str:
    """The judge prompt (user message) of one (trajectory, metric) item, as the server receives it."""
    trajectory = next(t for t in store.read("trajectories") if t.id == trajectory_id)
    scenario = next(s for s in store.read("scenarios") if s.id == trajectory.scenario_id)
    return judge_messages(trajectory, scenario, store.read("toolkits"), metric=metric,
                          answer_format="text")[1].content


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_judge_redoes_only_what_it_had_not_stored(sig, fresh_run, uninterrupted, tmp_path):
    from fake_openai import FakeOpenAI

    run = tmp_path / "run"
    shutil.copytree(fresh_run, run)
    shards = run / SHARD_DIR
    with FakeOpenAI(responder=answer, delay=0.25) as server:
        env = {**os.environ, "OPENAI_API_KEY": "placeholder", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "prefkit.cli", *judge_args(run, server.base_url)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while len(list(shards.glob("part-*.parquet"))) < 2:  # two chunks of 4 stored, four more to go
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the judge stored no chunk in time"
                time.sleep(0.02)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        asked_before = len(server.requests)

        store = RunStore(run)
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
            stored = pl.concat([pl.read_parquet(p) for p in sorted(shards.glob("part-*.parquet"))])
        else:  # Ctrl-C: exit 130 without a traceback, and what was stored is folded into the table already
            assert proc.returncode == 130 and "Traceback" not in err, err
            assert not shards.exists()
            stored = store.frame("judgments").filter(pl.col("judge").struct.field("model") == "fakejudge")
        assert 8 <= stored.height < 2 * TRAJECTORIES

        server.delay = 0.0
        rerun = subprocess.run([sys.executable, "-m", "prefkit.cli", *judge_args(run, server.base_url)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        asked_again = [body["messages"][1]["content"] for body in server.requests[asked_before:]]

    summary = json.loads(rerun.stdout)
    assert (summary["cached"], summary["judged"]) == (stored.height, 2 * TRAJECTORIES - stored.height)
    # the server was asked exactly for the judgments not stored, and for none of the stored ones
    assert len(asked_again) == 2 * TRAJECTORIES - stored.height
    stored_prompts = {prompt_of(store, t, m) for t, m in stored.select("trajectory_id", "metric").rows()}
    assert stored_prompts.isdisjoint(asked_again)
    # the end result equals an uninterrupted run's, byte for byte
    assert not shards.exists()
    for name, data in uninterrupted.items():
        assert (run / name).read_bytes() == data, name


def test_the_table_order_is_canonical(fresh_run, uninterrupted, tmp_path):
    """Other judges' rows first, as stored; then ours in trajectory, metric order."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "judgments.parquet").write_bytes(uninterrupted["judgments.parquet"])
    table = pl.read_parquet(run / "judgments.parquet")
    ours = table["judge"].struct.field("model") == "fakejudge"
    assert ours.arg_true().to_list() == list(range(2 * TRAJECTORIES, 4 * TRAJECTORIES))
    study = RunStore(fresh_run).frame("judgments")
    assert table.filter(~ours)["id"].to_list() == study["id"].to_list()
    trajectory_ids = [t.id for t in RunStore(fresh_run).read("trajectories")]
    assert table.filter(ours).select("trajectory_id", "metric").rows() == [
        (t, m) for t in trajectory_ids for m in ("safety", "helpfulness")]
