"""`prefkit build` with a generated source and a judge stage: rollouts with the overfit tiny agent model on
the transformers backend, judging through a loopback OpenAI-compatible judge, then pairs, audit and card.
Both stages are cached, and a build killed in either resumes to the same output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prefkit.cli import main


def _judge_answer(body: dict, _index: int) -> str:
    """A deterministic judge: the score depends only on what it was shown (metric and trajectory)."""
    shown = json.dumps(body["messages"], sort_keys=True)
    score = int(hashlib.sha256(shown.encode()).hexdigest(), 16) % 4
    return f"Label: scripted\nScore: {score}"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".prefkit" not in p.relative_to(root).parts}


@pytest.fixture
def generate_recipe(tmp_path, mini_suite_dir, agent_model_dir, fake_openai) -> Path:
    fake_openai.responder = _judge_answer
    agent = f"{agent_model_dir}@transformers"
    recipe = {
        "name": "generated",
        "source": {
            "kind": "generate", "suite": str(mini_suite_dir),
            "agents": [{"model": agent, "name": "react"}, {"model": agent, "name": "native", "prompt_format": "native"}],
            "emulator": {"model": agent, "mode": "standard"},
            "samples": 1,
            "limits": {"max_steps": 4, "token_budget": 2000, "max_reprompts": 1},
        },
        "judges": [{"judge": "scripted-judge@openai", "metrics": ["safety", "helpfulness"], "answer_format": "text",
                    "max_attempts": 1, "backend_options": {"base_url": fake_openai.base_url, "max_retries": 0}}],
        "datasets": [{"name": "safety", "strategy": "safety", "min_gap": 1, "min_chosen": 0}],
        "split": {"rule": "fraction", "seed": 0, "test_fraction": 0.5},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_generate_and_judge_stages_build_and_cache(generate_recipe, tmp_path, fake_openai, capsys):
    out = tmp_path / "out"
    assert main(["build", str(generate_recipe), "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["stages"]["source"] == "done" and first["stages"]["judge"] == "done"
    from prefkit.store import RunStore

    store = RunStore(out / ".prefkit" / "run")
    trajectories = store.read("trajectories")
    judgments = store.read("judgments")
    assert {t.agent.name for t in trajectories} == {"react", "native"}
    assert len(judgments) == 2 * len(trajectories)
    assert all(j.judge.model == "scripted-judge" and j.score is not None for j in judgments)
    requests = len(fake_openai.requests)

    assert main(["build", str(generate_recipe), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert set(again["stages"].values()) == {"cached"}
    assert len(fake_openai.requests) == requests  # nothing judged twice


@pytest.mark.parametrize("stage", ["source", "judge"])
def test_killed_generate_or_judge_stage_resumes_to_identical_output(stage, generate_recipe, tmp_path):
    reference = tmp_path / "reference"
    assert main(["build", str(generate_recipe), "--out", str(reference), "--quiet"]) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "prefkit.cli", "build", str(generate_recipe), "--out", str(out), "--quiet"]
    env = {**os.environ, "PREFKIT_FAULT_STAGE": stage, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    assert main(["build", str(generate_recipe), "--out", str(out), "--quiet"]) == 0
    assert _tree(out) == _tree(reference)
