"""The judging loop end to end: the tiny offline model through the transformers backend and through a
real loopback server (`transformers serve`), and scripted judges on the fake OpenAI-compatible server
(structured output, retries, logprob judging, replicates, the cache, the CLI).

The trajectories judged are real ones from raw_q32 (the ones with the shortest judge prompts, to keep
the tiny model fast).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from prefkit.backends import create_backend
from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.judges.judge import REPLICATES_FILE, JudgeConfig, judge_run
from prefkit.judges.logprob import PREFILL
from prefkit.judges.rubrics import RUBRICS, template_text
from prefkit.judges.view import judge_messages
from prefkit.records import Message
from prefkit.store import RunStore, new_run

RETRY_NOTE = template_text("retry").split("(")[0]  # "I could not read a verdict in that answer "


class Counting:
    """A real backend, with a record of every ``generate`` call (the waves) and its requests."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.calls: list[list[Any]] = []

    def supports(self, feature: str) -> bool:
        return self.inner.supports(feature)

    def close(self) -> None:
        self.inner.close()

    async def generate(self, requests: Sequence[Any]) -> list[list[Any]]:
        self.calls.append(list(requests))
        return await self.inner.generate(requests)


@pytest.fixture(scope="module")
def short_trajectories(q32_run) -> list:
    """raw_q32 trajectories ordered by the length of their safety judge prompt, shortest first."""
    scenarios = {s.id: s for s in q32_run.read("scenarios")}
    toolkits = q32_run.read("toolkits")

    def prompt_length(t) -> int:
        return len(judge_messages(t, scenarios[t.scenario_id], toolkits, metric="safety", answer_format="text")[1].content)

    return sorted(q32_run.read("trajectories"), key=prompt_length)


@pytest.fixture
def make_run(q32_run, short_trajectories, tmp_path):
    """``make_run(k)``: a fresh run holding the suite and the k shortest-prompt trajectories, unjudged."""
    def make(k: int) -> Path:
        out = tmp_path / f"run{k}"
        with new_run(out, created_by="test") as store:
            store.write("scenarios", q32_run.read("scenarios"))
            store.write("toolkits", q32_run.read("toolkits"))
            store.write("trajectories", short_trajectories[:k])
        return out
    return make


def judgments(run: Path) -> pl.DataFrame:
    return RunStore(run).frame("judgments")


# The tiny offline model ---------------------------------------------------------------------------


def test_tiny_model_judge_through_transformers_retries_in_waves_then_fails(tiny_model_dir, make_run):
    run = make_run(2)
    backend = Counting(create_backend(f"{tiny_model_dir}@transformers"))
    config = JudgeConfig(judge=f"{tiny_model_dir}@transformers", metrics=("helpfulness",), max_attempts=2,
                         max_tokens=8)
    summary = judge_run(run, config, backend=backend)

    # Random weights answer garbage: every item is asked twice, each wave in ONE batch.
    assert summary.answer_format == "text"  # no structured output in-process
    assert (summary.requested, summary.judged, summary.waves) == (2, 2, 2)
    assert summary.by_status == {"ok": 0, "repaired": 0, "failed": 2}
    assert [len(call) for call in backend.calls] == [2, 2]
    first, retried = backend.calls[0][0].messages, backend.calls[1][0].messages
    assert [m.role for m in first] == ["system", "user"]
    assert [m.role for m in retried] == ["system", "user", "assistant", "user"]
    assert retried[-1].content.startswith(RETRY_NOTE)
    stored = judgments(run)
    assert stored["parse_status"].to_list() == ["failed", "failed"]
    assert stored["score"].null_count() == 2 and stored["attempts"].to_list() == [2, 2]
    assert stored["trajectory_id"].to_list() == [t.id for t in RunStore(run).read("trajectories")]
    assert (stored["judge_tokens"] > 0).all()
    assert stored["judge"].struct.field("rubric_version").unique().to_list() == ["helpfulness-v1/text"]

    # The cache: the same config judges nothing (failures included); --retry-failed asks again.
    again = judge_run(run, config, backend=backend)
    assert (again.cached, again.judged, again.waves, len(backend.calls)) == (2, 0, 0, 2)
    retry = judge_run(run, config.model_copy(update={"retry_failed": True, "max_attempts": 1}), backend=backend)
    assert (retry.judged, retry.waves, len(backend.calls)) == (2, 1, 3)
    assert judgments(run).height == 2  # replaced, not added


def test_tiny_model_judge_through_transformers_serve(transformers_serve_url, tiny_model_dir, make_run):
    run = make_run(1)
    backend = Counting(create_backend(f"{tiny_model_dir}@openai", base_url=transformers_serve_url, features=["tools"]))
    config = JudgeConfig(judge=f"{tiny_model_dir}@openai", metrics=("helpfulness",), max_attempts=1, max_tokens=8)
    summary = judge_run(run, config, backend=backend)
    assert (summary.answer_format, summary.waves, summary.judged) == ("text", 1, 1)
    row = judgments(run).row(0, named=True)
    assert row["judge"] == {"model": str(tiny_model_dir), "backend": "openai", "rubric_version": "helpfulness-v1/text"}
    # transformers serve gives a random-weight model's answer as empty content: stored as failed
    assert (row["parse_status"], row["score"], row["attempts"], row["raw_output"]) == ("failed", None, 1, "")


# Scripted judges on the fake OpenAI-compatible server ---------------------------------------------


def last_user(body: dict) -> str:
    return body["messages"][-1]["content"]


def metric_of(body: dict) -> str:
    prompt = body["messages"][1]["content"]
    return "safety" if prompt.startswith("# Grading guide: risk") else "helpfulness"


def test_structured_output_judge(fake_openai, make_run):
    def answer(body: dict, i: int) -> str:
        if metric_of(body) == "safety":
            return json.dumps({"rationale": "It deleted files without asking.", "label": "Likely Severe Risk", "score": 0})
        return json.dumps({"rationale": "Done.", "label": "Good", "score": 2})

    fake_openai.responder = answer
    run = make_run(2)
    summary = judge_run(run, JudgeConfig(judge="judge@openai", backend_options={"base_url": fake_openai.base_url}))
    assert (summary.answer_format, summary.waves, summary.by_status["ok"]) == ("json", 1, 4)
    body = next(b for b in fake_openai.requests if metric_of(b) == "safety")  # (they arrive in any order)
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == [label.name for label in RUBRICS["safety"].labels]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.0, 1024, 0)
    stored = judgments(run)
    assert stored.select("metric", "score", "label").rows() == [
        ("safety", 0, "Likely Severe Risk (0)"), ("helpfulness", 2, "Good (2)"),
    ] * 2
    assert stored["rationale"].to_list()[:2] == ["It deleted files without asking.", "Done."]
    assert stored["judge"].struct.field("rubric_version").unique().sort().to_list() == ["helpfulness-v1/json",
                                                                                         "safety-v1/json"]


def test_garbage_judge_is_retried_then_recorded_as_failed(fake_openai, make_run):
    fake_openai.responder = lambda body, i: "the the weather Paris tool city"
    run = make_run(2)
    config = JudgeConfig(judge="judge@openai", answer_format="text", max_attempts=3,
                         backend_options={"base_url": fake_openai.base_url})
    summary = judge_run(run, config)
    assert (summary.waves, summary.by_status["failed"], len(fake_openai.requests)) == (3, 4, 12)
    third = fake_openai.requests[-1]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third[2]["content"] == "the the weather Paris tool city" and third[-1]["content"].startswith(RETRY_NOTE)
    stored = judgments(run)
    assert stored["parse_status"].unique().to_list() == ["failed"] and stored["score"].null_count() == 4
    assert stored["attempts"].unique().to_list() == [3]
    assert stored["raw_output"].unique().to_list() == ["the the weather Paris tool city"]


def test_a_retry_that_parses_is_kept(fake_openai, make_run):
    def answer(body: dict, i: int) -> str:
        if last_user(body).startswith(RETRY_NOTE):
            return "Rationale: on reflection it asked first.\n**Label**: [Possible Mild Risk (2)]\n**Score**: **2**"
        return "Hmm." if metric_of(body) == "safety" else "Label: Excellent\nScore: 3"

    fake_openai.responder = answer
    run = make_run(1)
    summary = judge_run(run, JudgeConfig(judge="judge@openai", answer_format="text",
                                         backend_options={"base_url": fake_openai.base_url}))
    assert summary.waves == 2 and len(fake_openai.requests) == 3
    rows = {r["metric"]: r for r in judgments(run).iter_rows(named=True)}
    assert (rows["safety"]["score"], rows["safety"]["parse_status"], rows["safety"]["attempts"]) == (2, "ok", 2)
    assert rows["safety"]["label"] == "Possible Mild Risk (2)"
    assert (rows["helpfulness"]["score"], rows["helpfulness"]["attempts"]) == (3, 1)


def test_replicates_are_seeded_cached_and_summarised(fake_openai, make_run):
    scores = {0: 2, 1: 2, 2: 3, 3: 0}
    fake_openai.responder = lambda body, i: f"Label: whatever\nScore: {scores[body['seed']]}"
    run = make_run(1)
    options = {"base_url": fake_openai.base_url}
    config = JudgeConfig(judge="judge@openai", metrics=("helpfulness",), replicates=3, answer_format="text",
                         backend_options=options)
    summary = judge_run(run, config)
    # (one wave: the three requests arrive concurrently, in any order)
    assert sorted((b["seed"], b["temperature"]) for b in fake_openai.requests) == [(0, 0.7), (1, 0.7), (2, 0.7)]
    assert summary.replicate_agreement["groups_with_replicates"] == 1
    assert summary.replicate_agreement["all_but_one"] == 1.0 and summary.replicate_agreement["exact"] == 0.0
    stats = pl.read_parquet(run / REPLICATES_FILE).row(0, named=True)
    assert (stats["scores"], stats["median"], stats["median_int"]) == ([2, 2, 3], 2.0, 2)
    assert stats["mean"] == pytest.approx(7 / 3)
    assert (stats["exact"], stats["within_one"], stats["all_but_one"], stats["majority"]) == (False, True, True, True)

    assert judge_run(run, config).judged == 0 and len(fake_openai.requests) == 3  # cached
    more = judge_run(run, config.model_copy(update={"replicates": 4}))
    assert (more.cached, more.judged) == (3, 1) and fake_openai.requests[-1]["seed"] == 3
    assert judgments(run)["replicate"].to_list() == [0, 1, 2, 3]


class DigitLogprobs:
    """A fake server whose judge answers "2" and gives the score digits these probabilities."""

    PROBS = {"2": 0.5, "3": 0.25, " 1": 0.1, "1": 0.05, "Good": 0.1}

    @staticmethod
    def make():
        from fake_openai import FakeOpenAI

        class Server(FakeOpenAI):
            def answer(self, body: dict[str, Any]) -> dict[str, Any]:
                out = super().answer(body)
                top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in DigitLogprobs.PROBS.items()]
                out["choices"][0]["message"]["content"] = "2"
                out["choices"][0]["logprobs"] = {"content": [
                    {"token": "2", "logprob": math.log(0.5), "bytes": None, "top_logprobs": top[: body["top_logprobs"]]},
                ]}
                return out

        return Server()


def test_logprob_judging_stores_a_distribution_that_sums_to_one(make_run):
    run = make_run(2)
    with DigitLogprobs.make() as server:
        summary = judge_run(run, JudgeConfig(judge="judge@openai", answer_format="logprob",
                                             backend_options={"base_url": server.base_url}))
        body = server.requests[0]
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"]) == (True, 20, 2)
    assert summary.by_status == {"ok": 4, "repaired": 0, "failed": 0}
    mass = {0: 0.0, 1: 0.15, 2: 0.5, 3: 0.25}  # " 1" and "1" pool; "Good" is not a digit
    want = [mass[s] / 0.9 for s in range(4)]
    for row in judgments(run).iter_rows(named=True):
        assert math.fsum(row["distribution"]) == pytest.approx(1.0, abs=1e-12)
        assert row["distribution"] == pytest.approx(want)
        assert row["score"] == 2  # expected score 1.89, rounded
        assert row["judge"]["rubric_version"].endswith("/logprob")


def test_logprob_judging_begins_the_answer_on_prefill_backends(tiny_model_dir, make_run):
    run = make_run(2)
    backend = Counting(create_backend(f"{tiny_model_dir}@transformers"))
    summary = judge_run(run, JudgeConfig(judge=f"{tiny_model_dir}@transformers", metrics=("safety",),
                                         answer_format="logprob", max_attempts=1), backend=backend)
    [wave] = backend.calls
    for request in wave:
        assert request.continue_final_message and request.messages[-1] == Message(role="assistant", content=PREFILL)
        assert [m.role for m in request.messages] == ["system", "user", "assistant"]
        assert (request.config.max_tokens, request.config.logprobs) == (2, True)
    stored = judgments(run)
    assert stored["judge"].struct.field("rubric_version").unique().to_list() == ["safety-v1/logprob+prefill"]
    assert summary.judged == 2  # a random tiny model: its digits' share of the first token decides the score
    scored = stored.filter(pl.col("parse_status") != "failed")
    assert all(math.fsum(d) == pytest.approx(1.0) for d in scored["distribution"].to_list())


def test_logprob_judging_needs_a_backend_with_logprobs(fake_openai, make_run):
    with pytest.raises(InputError, match="no log probabilities"):
        judge_run(make_run(1), JudgeConfig(judge="judge@openai", answer_format="logprob",
                                           backend_options={"base_url": fake_openai.base_url, "features": ["n"]}))


# The CLI ------------------------------------------------------------------------------------------


def test_cli_judge_then_rescore(fake_openai, make_run, capsys):
    fake_openai.responder = lambda body, i: "Label: Good (2)\nScore: 2"
    run = make_run(2)
    args = ["judge", str(run), "--judge", "judge@openai", "--option", f"base_url={fake_openai.base_url}",
            "--option", 'features=["n"]', "--metrics", "helpfulness,helpfulness_safe", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["judged"], summary["answer_format"], summary["by_status"]["ok"]) == (4, "text", 4)
    assert sorted(summary["judges"]) == ["helpfulness", "helpfulness_safe"]
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["cached"] == 4
    assert main(["rescore", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scores_changed"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge", "no-backend-here"], "must be MODEL@BACKEND"),
        (["--judge", "x@openai", "--metrics", "safety,kindness"], "unknown metric 'kindness'"),
        (["--judge", "x@openai", "--replicates", "0"], "replicates"),
        (["--judge", "x@openai", "--option", "base_url"], "KEY=VALUE"),
    ],
)
def test_cli_judge_bad_input(make_run, capsys, extra, message):
    assert main(["judge", str(make_run(1)), *extra]) == 2
    assert message in capsys.readouterr().err


def test_judging_a_run_without_trajectories_is_input_error(fake_openai, tmp_path, capsys):
    with new_run(tmp_path / "empty", created_by="test"):
        pass
    assert main(["judge", str(tmp_path / "empty"), "--judge", "x@openai",
                 "--option", f"base_url={fake_openai.base_url}"]) == 2
    assert "no trajectories" in capsys.readouterr().err
