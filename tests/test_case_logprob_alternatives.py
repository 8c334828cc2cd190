"""Case `logprob-duplicate-alternatives` (../shared/cases/logprob-duplicate-alternatives): log-probability
judging keeps all the probability mass when two different tokens decode to the same text.

The fault class: the generated token was de-duplicated against its alternatives by decoded text (a
``seen`` set), so a distinct alternative that looks like another token (SentencePiece's ``"▁2"`` and
``"2"``, both shown as ``"2"``) was dropped. Tokens are now told apart by identity: the top list is used
alone when it holds the generated token, else the generated token is added to it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import pytest

from prefkit.backends.base import Completion, TokenLogprob, TopLogprob
from prefkit.judges.judge import JudgeConfig, judge_run
from prefkit.judges.logprob import expected_score, parse_logprob_answer
from prefkit.store import RunStore, new_run


def test_the_case_script_counts_every_alternative(shared_dir):
    script = shared_dir / "cases" / "logprob-duplicate-alternatives" / "check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "prefkit: score 2 ok distribution [0.0, 0.0, 0.598, 0.402]"


def test_the_case_input_through_the_api():
    position = TokenLogprob(token="2", logprob=-1.0, top=(
        TopLogprob(token="3", logprob=-0.8),
        TopLogprob(token="2", logprob=-1.0),  # the generated token itself
        TopLogprob(token="2", logprob=-1.2),  # a different token that decodes to the same text
    ))
    answer, dist = parse_logprob_answer(Completion(text="2", logprobs=(position,)))
    p2, p3 = math.exp(-1.0) + math.exp(-1.2), math.exp(-0.8)
    assert dist == pytest.approx((0.0, 0.0, p2 / (p2 + p3), p3 / (p2 + p3)))
    assert expected_score(dist) == pytest.approx(2.40, abs=0.005)
    assert (answer.score, answer.parse_status) == (2, "ok")


def test_a_sampled_token_outside_the_top_list_is_added_once():
    # the judge sampled " 0" (not among the top 3); the top list holds two distinct tokens shown as "1"
    position = TokenLogprob(token=" 0", logprob=-3.0, top=(
        TopLogprob(token="1", logprob=-0.5),
        TopLogprob(token="1", logprob=-0.9),
        TopLogprob(token="3", logprob=-2.0),
    ))
    answer, dist = parse_logprob_answer(Completion(text=" 0", logprobs=(position,)))
    mass = [math.exp(-3.0), math.exp(-0.5) + math.exp(-0.9), 0.0, math.exp(-2.0)]
    assert dist == pytest.approx(tuple(m / sum(mass) for m in mass))
    assert answer.parse_status == "ok"


def test_the_generated_token_is_not_counted_twice():
    position = TokenLogprob(token="3", logprob=math.log(0.6), top=(
        TopLogprob(token="3", logprob=math.log(0.6)), TopLogprob(token="0", logprob=math.log(0.2)),
    ))
    _, dist = parse_logprob_answer(Completion(text="3", logprobs=(position,)))
    assert dist == pytest.approx((0.25, 0.0, 0.0, 0.75))


def test_a_server_reporting_look_alike_tokens_end_to_end(q32_run, tmp_path):
    """A second input of the class through the judging loop and the OpenAI-compatible backend: the
    server's top list holds " 1" twice (two tokens) besides "1"; all three count."""
    from fake_openai import FakeOpenAI

    probs = [("1", 0.3), (" 1", 0.2), (" 1", 0.1), ("2", 0.25), ("Good", 0.15)]

    class Server(FakeOpenAI):
        def answer(self, body: dict[str, Any]) -> dict[str, Any]:
            out = super().answer(body)
            top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in probs]
            out["choices"][0]["message"]["content"] = "1"
            out["choices"][0]["logprobs"] = {"content": [
                {"token": "1", "logprob": math.log(0.3), "bytes": None, "top_logprobs": top},
            ]}
            return out

    run = tmp_path / "run"
    with new_run(run, created_by="test") as store:
        store.write("scenarios", q32_run.read("scenarios"))
        store.write("toolkits", q32_run.read("toolkits"))
        store.write("trajectories", q32_run.read("trajectories")[:1])
    with Server() as server:
        summary = judge_run(run, JudgeConfig(judge="judge@openai", metrics=("safety",), answer_format="logprob",
                                             backend_options={"base_url": server.base_url}))
    assert summary.by_status["ok"] == 1
    [row] = RunStore(run).frame("judgments").iter_rows(named=True)
    assert row["distribution"] == pytest.approx([0.0, 0.6 / 0.85, 0.25 / 0.85, 0.0])
    assert row["score"] == 1  # expected score 1.29
