"""Ctrl-C during ``prefkit rollout``, ``judge``, ``build`` and ``eval``: the process gets a real SIGINT
while it waits on a model call (a loopback OpenAI-compatible server that holds the answer back), prints
one line saying what it kept, exits with code 130 without a traceback, and the same command run again
finishes the work. Also: a build that fails before computing anything leaves no output folder behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from prefkit.cli import main
from prefkit.store import RunStore

RESUME = "run the same command again to resume"
MINI_0, MINI_1 = "Find my note about keys.", "Turn the lamp on."  # tiny_model_agent.MINI_CASES


class HeldBackServer:
    """A responder for ``fake_openai``: agents (requests with a stop string) finish ``mini_0`` at once and
    are re-prompted once on ``mini_1``; judges score ``mini_0`` and fail to parse on ``mini_1``. What
    comes after that for ``mini_1`` (its re-prompted turn, its judge's retry), and with ``hold_all``
    every agent turn, waits until ``release`` is set; ``waiting`` tells that a request is held."""

    def __init__(self, *, hold_all: bool = False) -> None:
        self.hold_all = hold_all
        self.release = threading.Event()
        self.waiting = threading.Event()

    def _hold(self) -> None:
        self.waiting.set()
        self.release.wait(300)

    def __call__(self, body: dict, _choice: int) -> str:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        again = any(m["role"] == "assistant" for m in body["messages"])
        if body.get("stop"):  # the agent
            if self.hold_all:
                self._hold()
            if MINI_0 in text:
                return "Final Answer: found it."
            if not again:
                return "no idea"
            self._hold()
            return "Final Answer: it is on."
        if MINI_0 in text:  # the judge
            return "Label: fine\nScore: 2"
        if again:
            self._hold()
        return "no verdict yet"


@pytest.fixture
def held(fake_openai):
    server = HeldBackServer()
    fake_openai.responder = server
    yield server
    server.release.set()  # let held requests finish before the server stops


def _options(flag: str, url: str) -> list[str]:
    return [flag, f"base_url={url}", flag, "max_retries=0"]


def _rollout_args(suite: Path, url: str, out: Path) -> list[str]:
    return ["rollout", str(suite), "--agent", "scripted@openai", *_options("--agent-option", url),
            "--emulator", "scripted@openai", *_options("--emulator-option", url), "--out", str(out)]


def interrupt(args: list[str], ready: threading.Event) -> tuple[int, str]:
    """Run ``prefkit ARGS`` in a subprocess, send it SIGINT once ``ready`` is set; (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "prefkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 300
        while not ready.wait(0.05):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never reached the held model call"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # it exits at once; the bound only keeps a broken test finite
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    return proc.returncode, err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_ctrl_c_during_rollout(held, fake_openai, mini_suite_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = _rollout_args(mini_suite_dir, fake_openai.base_url, out)
    code, err = interrupt(args, held.waiting)
    assert code == 130
    assert last_line(err) == f"interrupted: kept 1 of 2 trajectories in {out}; {RESUME}"
    held.release.set()
    assert main(args) == 0
    assert "2 trajectories (1 new)" in capsys.readouterr().out


def test_ctrl_c_during_judge(held, fake_openai, mini_suite_dir, tmp_path, capsys):
    run = tmp_path / "run"
    held.release.set()  # the rollout first, uninterrupted
    assert main(_rollout_args(mini_suite_dir, fake_openai.base_url, run)) == 0
    held.release.clear()
    held.waiting.clear()
    args = ["judge", str(run), "--judge", "judge@openai", *_options("--option", fake_openai.base_url),
            "--answer-format", "text", "--max-attempts", "2"]
    code, err = interrupt(args, held.waiting)
    assert code == 130
    # mini_0's two judgments were stored after the first wave; mini_1's retries were waiting
    assert last_line(err) == f"interrupted: kept 2 of 4 judgments in {run}; {RESUME}"
    held.release.set()
    assert main(args) == 0
    assert len(RunStore(run).read("judgments")) == 4


def _recipe(tmp_path: Path, suite: Path, url: str) -> Path:
    options = {"base_url": url, "max_retries": 0}
    recipe = {
        "name": "interrupted",
        "source": {"kind": "generate", "suite": str(suite), "agents": [{"model": "scripted@openai", "options": options}],
                   "emulator": {"model": "scripted@openai", "mode": "standard", "options": options}},
        "judges": [{"judge": "judge@openai", "metrics": ["safety"], "answer_format": "text", "max_attempts": 1,
                    "backend_options": options}],
        "datasets": [{"name": "safety", "strategy": "safety", "min_gap": 1, "min_chosen": 0}],
        "split": {"rule": "fraction", "seed": 0, "test_fraction": 0.5},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_ctrl_c_during_build_keeps_the_stage_cache_and_publishes_nothing(held, fake_openai, mini_suite_dir, tmp_path):
    out = tmp_path / "out"
    args = ["build", str(_recipe(tmp_path, mini_suite_dir, fake_openai.base_url)), "--out", str(out)]
    code, err = interrupt(args, held.waiting)
    assert code == 130
    assert re.fullmatch(rf"interrupted: kept 0 of \d+ stages and 1 of 2 trajectories in {re.escape(str(out))}; "
                        rf"{RESUME}", last_line(err)), err
    # the stage cache keeps the finished trajectory; nothing of the published layout is there
    assert sorted(p.name for p in out.iterdir()) == [".prefkit"]
    held.release.set()
    assert main([*args, "--quiet"]) == 0
    assert (out / "README.md").is_file() and (out / "audit.json").is_file()


def test_ctrl_c_during_eval(fake_openai, mini_suite_dir, tmp_path):
    server = HeldBackServer(hold_all=True)
    fake_openai.responder = server
    out = tmp_path / "eval"
    args = ["eval", "scripted@openai", "--suite", str(mini_suite_dir), "--split-seed", "0", "--out", str(out),
            "--emulator", "scripted@openai", "--judge", "judge@openai",
            *_options("--agent-option", fake_openai.base_url), *_options("--emulator-option", fake_openai.base_url),
            *_options("--judge-option", fake_openai.base_url)]
    try:
        code, err = interrupt(args, server.waiting)
    finally:
        server.release.set()
    assert code == 130
    assert last_line(err) == f"interrupted: kept 0 of 1 trajectories in {out}; {RESUME}"


def test_a_build_that_fails_before_computing_anything_leaves_no_folder(fake_openai, mini_suite_dir, tmp_path, capsys):
    fake_openai.script = [{"status": 400, "message": "no such model"}] * 4
    recipe = _recipe(tmp_path, mini_suite_dir, fake_openai.base_url)
    out = tmp_path / "out"
    assert main(["build", str(recipe), "--out", str(out)]) == 2
    assert "no such model" in capsys.readouterr().err
    assert not out.exists()
    # a folder that was there before is the user's: it stays (with the stage cache the build began)
    out.mkdir()
    fake_openai.script = [{"status": 400, "message": "no such model"}] * 4
    assert main(["build", str(recipe), "--out", str(out)]) == 2
    assert out.is_dir()
