"""Progress of long work (``prefkit.progress``): the one protocol, its renderers (plain lines for logs and
pipes, rich bars for terminals), and what ``prefkit eval`` and ``prefkit build`` print when their output
is not a terminal: lines with items done / total as the work goes on."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import time

from rich.console import Console
from test_interrupt import _recipe

from prefkit.progress import LogProgress, NullProgress, Progress, RichProgress, Tally, progress_for


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_renderer_speaks_the_one_protocol():
    for progress in (NullProgress(), Tally(), LogProgress(stream=io.StringIO()), RichProgress(Console(file=io.StringIO()))):
        assert isinstance(progress, Progress)
    assert type(progress_for(io.StringIO(), quiet=True)) is Tally
    assert type(progress_for(io.StringIO())) is LogProgress
    assert type(progress_for(Terminal())) is RichProgress


def test_tally_counts_what_is_kept():
    tally = Tally()
    assert tally.interrupted_line("out") == "interrupted: nothing finished yet in out; run the same command again to resume"
    tally.start("build", 7, unit="stages")
    tally.start("source")  # a task without a total is not counted in what is kept
    tally.start("rollout", 12, done=3, unit="trajectories")
    tally.advance("rollout", 4)
    tally.advance("build")
    assert tally.kept() == "1 of 7 stages and 7 of 12 trajectories"
    assert tally.interrupted_line("out/q") == (
        "interrupted: kept 1 of 7 stages and 7 of 12 trajectories in out/q; run the same command again to resume")
    tally.start("rollout", 12, done=0, unit="trajectories")  # started again: counts start over
    assert tally.tasks["rollout"].done == 0 and list(tally.tasks)[-1] == "rollout"


def test_log_lines_every_tenth_of_the_total_with_counts_and_rate():
    stream = io.StringIO()
    log = LogProgress(stream=stream, interval=0)
    log.start("judging", 50, done=10, unit="judgments")
    for _ in range(40):
        log.advance("judging")
    log.finish("judging")
    lines = stream.getvalue().splitlines()
    counts = [int(re.match(r"judging: (\d+)/50 judgments", line).group(1)) for line in lines]
    assert counts == [10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert lines[0].startswith("judging: 10/50 judgments (20%), ")
    assert re.fullmatch(r"judging: 50/50 judgments \(100%\), [0-9.e+]+ judgments/s, \d+s: done", lines[-1])
    log.finish("pair:safety", "cached")  # a stage without a count: one line
    assert stream.getvalue().splitlines()[-1] == "pair:safety: cached"


def test_log_lines_keep_coming_while_nothing_finishes():
    stream = io.StringIO()
    log = LogProgress(stream=stream, interval=0.05)
    log.start("rollout", 4, unit="trajectories")
    deadline = time.monotonic() + 60
    while stream.getvalue().count("rollout: 0/4 trajectories") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert stream.getvalue().count("rollout: 0/4 trajectories") >= 3


def test_rich_bars_on_a_terminal():
    screen = Terminal()
    bars = RichProgress(Console(file=screen, force_terminal=True, color_system=None, width=120))
    bars.start("rollout", 12, unit="trajectories")
    bars.advance("rollout", 12)
    bars.finish("rollout")
    bars.finish("audit", "cached")
    bars.close()
    text = screen.getvalue()
    assert "✓ rollout 12/12 trajectories (100%) in " in text and "↺ audit" in text


def _agent_or_judge(body: dict, _choice: int) -> str:
    """Agents give a final answer after 0-2 re-prompts (by scenario, so trajectories finish in different
    rounds); judges give a score."""
    if not body.get("stop"):
        return "Label: fine\nScore: 1"
    instruction = body["messages"][1]["content"]
    reprompts = int(hashlib.sha256(instruction.encode()).hexdigest(), 16) % 3
    done = sum(m["role"] == "assistant" for m in body["messages"])
    return "Final Answer: done." if done >= reprompts else "no idea"


def _piped(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefkit.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_eval_piped_to_a_file_logs_lines_with_counts(fake_openai, tmp_path):
    fake_openai.responder = _agent_or_judge
    url = fake_openai.base_url
    args = ["eval", "scripted@openai", "--suite", "starter", "--split-seed", "0", "--out", str(tmp_path / "eval"),
            "--emulator", "scripted@openai", "--judge", "judge@openai", "--agent-option", f"base_url={url}",
            "--emulator-option", f"base_url={url}", "--judge-option", f"base_url={url}",
            "--judge-option", 'features=["logprobs", "n", "tools"]']
    done = _piped(args)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    rollout = [int(m.group(1)) for line in lines if (m := re.match(r"rollout: (\d+)/6 trajectories", line))]
    assert rollout[0] == 0 and rollout[-1] == 6 and any(0 < k < 6 for k in rollout)  # as trajectories finish
    assert lines.index(next(x for x in lines if x.startswith("rollout: 6/6"))) < lines.index(
        next(x for x in lines if x.startswith("judging: 12/12 judgments (100%)")))
    assert "6 trajectories on 6 test scenarios" in done.stdout


def test_build_piped_logs_its_stages_and_the_work_inside_them(fake_openai, mini_suite_dir, tmp_path):
    fake_openai.responder = _agent_or_judge
    out = tmp_path / "out"
    done = _piped(["build", str(_recipe(tmp_path, mini_suite_dir, fake_openai.base_url)), "--out", str(out)])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for expected in ("build: 0/6 stages (0%)", "rollout: 2/2 trajectories (100%)", "source: done",
                     "judging: 2/2 judgments (100%)", "card: done", "build: 6/6 stages (100%)"):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    again = _piped(["build", str(_recipe(tmp_path, mini_suite_dir, fake_openai.base_url)), "--out", str(out)])
    assert "source: cached" in again.stderr.splitlines()
