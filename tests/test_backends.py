"""Model backends: the interface, the registry, the transformers backend on the tiny offline model, the
openai backend against a real ``transformers serve`` and against the loopback fake (n, logprobs,
retries, errors, concurrency), and what of the vllm backend runs without vllm."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import OVERFIT_PLAIN_ANSWER, OVERFIT_PLAIN_PROMPT, OVERFIT_TOOL_PROMPT, WEATHER_TOOL

from prefkit.backends import (
    Backend,
    BackendError,
    ChatRequest,
    Completion,
    GenerateConfig,
    chat_template_text,
    create_backend,
    generate_sync,
    message_dicts,
    parse_model_spec,
    parse_tool_calls,
)
from prefkit.errors import InputError
from prefkit.records import Message, ToolCall


def user(text: str) -> tuple[Message, ...]:
    return (Message(role="user", content=text),)


def req(text: str, tools: tuple[dict, ...] | None = None, **config: object) -> ChatRequest:
    return ChatRequest(messages=user(text), tools=tools, config=GenerateConfig(**config))


# --------------------------------------------------------------------------------------------------
# Interface and registry
# --------------------------------------------------------------------------------------------------


def test_generate_config_merge_lets_set_fields_win() -> None:
    base = GenerateConfig(temperature=0.7, max_tokens=100, stop=("Observation:",))
    merged = base.merge(GenerateConfig(temperature=0.0, n=4))
    assert merged == GenerateConfig(temperature=0.0, max_tokens=100, stop=("Observation:",), n=4)
    assert base.merge(None) is base and base.merge(GenerateConfig()) == base
    with pytest.raises(ValueError):
        GenerateConfig(n=0)
    with pytest.raises(ValueError):
        GenerateConfig(top_p=1.5)
    with pytest.raises(ValueError):
        ChatRequest(messages=())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("Qwen/Qwen2.5-7B-Instruct@vllm", ("Qwen/Qwen2.5-7B-Instruct", "vllm")),
        ("/path/to/tiny@transformers", ("/path/to/tiny", "transformers")),
        ("gpt-5-mini@openai", ("gpt-5-mini", "openai")),
        ("me@host/model@openai", ("me@host/model", "openai")),  # the backend follows the last @
    ],
)
def test_parse_model_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpt-5-mini", "@openai", "gpt-5-mini@"])
def test_parse_model_spec_without_backend_names_the_accepted_forms(spec: str) -> None:
    with pytest.raises(InputError) as err:
        parse_model_spec(spec)
    assert "MODEL@BACKEND" in str(err.value) and "MODEL@transformers" in str(err.value)
    assert "MODEL@openai" in str(err.value) and "MODEL@vllm" in str(err.value)


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown backend 'llamacpp'.*openai, transformers, vllm"):
        create_backend("m@llamacpp")


def test_vllm_missing_gives_the_install_hint() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the hint is for machines without it")
    with pytest.raises(InputError) as err:
        create_backend("Qwen/Qwen2.5-7B-Instruct@vllm")
    assert 'pip install "prefkit[vllm]"' in str(err.value)


def test_backends_package_imports_no_heavy_dependency() -> None:
    code = ("import sys, prefkit.backends, prefkit.backends.vllm_backend, prefkit.backends.openai_backend; "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_backends_import_only_records_and_errors_of_prefkit() -> None:
    package = Path(__file__).resolve().parents[1] / "prefkit" / "backends"
    for path in package.glob("*.py"):
        for line in map(str.strip, path.read_text().splitlines()):  # lazy imports inside functions too
            if line.startswith(("import prefkit", "from prefkit")) and "prefkit.backends" not in line:
                # prefkit.text and prefkit.tool_calls sit beside records: text rules and the one tool-call extractor
                allowed = ("prefkit.records", "prefkit.errors", "prefkit.text", "prefkit.tool_calls")
                assert line.split()[1] in allowed, f"{path.name}: {line}"


def test_vllm_sampling_kwargs() -> None:
    from prefkit.backends.vllm_backend import sampling_kwargs

    assert sampling_kwargs(GenerateConfig(), default_max_tokens=1024) == {"max_tokens": 1024}
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    config = GenerateConfig(n=4, temperature=0.0, top_p=0.9, max_tokens=64, seed=3, stop=("Observation:",),
                            logprobs=True, top_logprobs=5, response_format=schema)
    assert sampling_kwargs(config, default_max_tokens=1024) == {
        "n": 4, "temperature": 0.0, "top_p": 0.9, "max_tokens": 64, "seed": 3, "stop": ["Observation:"],
        "logprobs": 5, "structured_outputs": {"json": schema},
    }
    # logprobs without alternatives: vLLM's 0 means "only the chosen token".
    assert sampling_kwargs(GenerateConfig(logprobs=True), default_max_tokens=8)["logprobs"] == 0


def test_parse_tool_calls_splits_blocks_from_text() -> None:
    text = ('I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>{"name": "send", "arguments": {"to": "Zoë"}}</tool_call>')
    rest, calls = parse_tool_calls(text)
    assert rest == "I will check."
    assert calls is not None and [c.name for c in calls] == ["get_weather", "send"]
    assert json.loads(calls[0].arguments) == {"city": "Paris"} and json.loads(calls[1].arguments) == {"to": "Zoë"}
    assert calls[0].id != calls[1].id and parse_tool_calls(text)[1] == calls  # ids are stable
    # Malformed blocks stay in the text; no block at all gives None.
    broken = "<tool_call>{not json}</tool_call> and <tool_call>[1, 2]</tool_call>"
    assert parse_tool_calls(broken) == (broken, None)
    assert parse_tool_calls("plain answer") == ("plain answer", None)
    assert parse_tool_calls('<tool_call>{"name": "x"}</tool_call>')[1][0].arguments == "{}"


def test_message_dicts_arguments_as_text_or_object() -> None:
    call = ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    messages = (Message(role="user", content="hi"), Message(role="assistant", tool_calls=(call,)),
                Message(role="tool", content="sunny", tool_call_id="c1"))
    wire = message_dicts(messages, arguments="text")
    assert wire[1]["tool_calls"][0] == {"id": "c1", "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert wire[2] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert "tool_calls" not in wire[0]
    template = message_dicts(messages, arguments="object")
    assert template[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


# --------------------------------------------------------------------------------------------------
# transformers backend (in process, tiny model)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Backend:
    backend = create_backend(f"{tiny_model_dir}@transformers", batch_size=4)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def overfit(overfit_tiny_model_dir: Path) -> Backend:
    backend = create_backend(f"{overfit_tiny_model_dir}@transformers")
    yield backend
    backend.close()


PROMPTS = ["hello", "the weather in Paris is a search tool function of the city",
           "you", "Tokyo json arguments name for the user assistant"]


def test_transformers_backend_identity_and_features(tiny: Backend, tiny_model_dir: Path) -> None:
    assert isinstance(tiny, Backend)
    assert (tiny.name, tiny.model) == ("transformers", str(tiny_model_dir))
    assert [tiny.supports(f) for f in ("logprobs", "n", "tools", "structured_output", "prefill")] == [
        True, True, True, False, True]
    with pytest.raises(ValueError):
        tiny.supports("streaming")  # type: ignore[arg-type]


def test_prefill_continues_the_final_assistant_message(tiny: Backend, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    opened = chat_template_text(tokenizer, req("hello"))
    begun = ChatRequest(messages=(*user("hello"), Message(role="assistant", content="Score: ")),
                        continue_final_message=True, config=GenerateConfig(max_tokens=3, logprobs=True))
    text = chat_template_text(tokenizer, begun)
    assert text.startswith(opened) and text.endswith("Score: ")  # the turn is left open after the prefill
    assert not chat_template_text(tokenizer, begun.model_copy(update={"continue_final_message": False})).endswith(
        "Score: ")
    [[completion]] = generate_sync(tiny, [begun])
    assert completion.completion_tokens == len(completion.logprobs) <= 3  # only what follows the prefill
    with pytest.raises(ValueError, match="assistant turn"):
        ChatRequest(messages=user("hello"), continue_final_message=True)


def test_transformers_shapes_n_and_greedy_determinism(tiny: Backend) -> None:
    requests = [req(p, max_tokens=6, n=2) for p in PROMPTS[:2]] + [req(PROMPTS[2], max_tokens=6, temperature=1.0, n=3)]
    first = generate_sync(tiny, requests)
    assert [len(c) for c in first] == [2, 2, 3]
    assert all(isinstance(c, Completion) for cs in first for c in cs)
    assert first[0][0] == first[0][1]  # greedy: n copies of the one answer
    second = generate_sync(tiny, requests[:2])
    assert second == first[:2]


def test_transformers_seeded_sampling_repeats(tiny: Backend) -> None:
    requests = [req(p, max_tokens=8, temperature=1.0, n=2, seed=11) for p in PROMPTS[:2]]
    a, b = generate_sync(tiny, requests), generate_sync(tiny, requests)
    assert a == b
    other = generate_sync(tiny, [req(p, max_tokens=8, temperature=1.0, n=2, seed=12) for p in PROMPTS[:2]])
    assert other != a
    assert a[0][0].text != a[0][1].text or a[1][0].text != a[1][1].text  # n samples differ


def test_transformers_max_tokens_gives_length_and_counts(tiny: Backend, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    [[completion]] = generate_sync(tiny, [req("hello", max_tokens=5)])
    assert completion.finish_reason == "length" and completion.completion_tokens == 5
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                           tokenize=False)
    assert completion.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_transformers_logprobs_and_sorted_alternatives(tiny: Backend) -> None:
    [[c]] = generate_sync(tiny, [req("hello", max_tokens=6, logprobs=True, top_logprobs=4)])
    assert c.logprobs is not None and len(c.logprobs) == 6
    assert "".join(t.token for t in c.logprobs) == c.text
    for token in c.logprobs:
        assert token.logprob <= 0 and len(token.top) == 4
        values = [t.logprob for t in token.top]
        assert values == sorted(values, reverse=True)
        # Greedy picks the most likely token.
        assert token.top[0].token == token.token and token.top[0].logprob == pytest.approx(token.logprob)
    [[plain]] = generate_sync(tiny, [req("hello", max_tokens=6)])
    assert plain.logprobs is None and plain.text == c.text


def test_transformers_batch_matches_one_at_a_time(tiny: Backend) -> None:
    # Six prompts of different lengths: with batch_size 4 that is one padded batch of 4 and one of 2.
    prompts = PROMPTS + ["a", "the city of the weather search"]
    batched = generate_sync(tiny, [req(p, max_tokens=8) for p in prompts])
    singles = [generate_sync(tiny, [req(p, max_tokens=8)])[0] for p in prompts]
    assert batched == singles
    assert len({c[0].prompt_tokens for c in batched}) > 1  # the batch really mixed lengths


def test_transformers_stop_strings_trim(overfit: Backend) -> None:
    [[full], [cut], [untouched]] = generate_sync(overfit, [
        req(OVERFIT_PLAIN_PROMPT, max_tokens=20),
        req(OVERFIT_PLAIN_PROMPT, max_tokens=20, stop=("llo",), logprobs=True),
        req(OVERFIT_PLAIN_PROMPT, max_tokens=20, stop=("Observation:",)),
    ])
    assert full.text == OVERFIT_PLAIN_ANSWER and full.finish_reason == "stop" and full.tool_calls is None
    assert cut.text == "He" and cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens
    assert "".join(t.token for t in cut.logprobs).startswith("He")
    assert untouched == full


def test_transformers_tool_call_end_to_end(overfit: Backend) -> None:
    [[c]] = generate_sync(overfit, [req(OVERFIT_TOOL_PROMPT, tools=(WEATHER_TOOL,), max_tokens=40)])
    assert c.finish_reason == "tool_calls" and c.text == ""
    assert c.tool_calls is not None and len(c.tool_calls) == 1
    assert c.tool_calls[0].name == "get_weather" and json.loads(c.tool_calls[0].arguments) == {"city": "Paris"}
    # The call goes back into the conversation, with the tool's answer, and the template renders it
    # with the arguments as a JSON object (not a quoted string).
    conversation = (*user(OVERFIT_TOOL_PROMPT), c.to_message(),
                    Message(role="tool", content="sunny", tool_call_id=c.tool_calls[0].id))
    [[follow_up]] = generate_sync(overfit, [ChatRequest(messages=conversation, tools=(WEATHER_TOOL,),
                                                        config=GenerateConfig(max_tokens=4))])
    assert follow_up.prompt_tokens > c.prompt_tokens
    rendered = overfit._render(ChatRequest(messages=conversation, tools=(WEATHER_TOOL,)))  # noqa: SLF001
    assert '"arguments": {"city": "Paris"}}\n</tool_call>' in rendered and "<tool_response>\nsunny" in rendered


# --------------------------------------------------------------------------------------------------
# openai backend against a real server: transformers serve
# --------------------------------------------------------------------------------------------------


def test_openai_backend_against_transformers_serve(transformers_serve_url: str, overfit_tiny_model_dir: Path) -> None:
    backend = create_backend(f"{overfit_tiny_model_dir}@openai", base_url=transformers_serve_url,
                             features=("n", "tools"))
    assert not backend.supports("logprobs") and backend.supports("tools")
    plain, tool, two = generate_sync(backend, [
        req(OVERFIT_PLAIN_PROMPT, max_tokens=20, temperature=0.0),
        req(OVERFIT_TOOL_PROMPT, tools=(WEATHER_TOOL,), max_tokens=40, temperature=0.0),
        req(OVERFIT_PLAIN_PROMPT, max_tokens=20, temperature=0.0, n=2),  # the server ignores n
    ])
    assert [len(plain), len(tool), len(two)] == [1, 1, 2]
    assert plain[0].text == OVERFIT_PLAIN_ANSWER and plain[0].finish_reason == "stop"
    assert plain[0].prompt_tokens and plain[0].completion_tokens
    call = tool[0]
    assert call.finish_reason == "tool_calls" and call.tool_calls is not None
    assert call.tool_calls[0].name == "get_weather" and json.loads(call.tool_calls[0].arguments) == {"city": "Paris"}
    assert [c.text for c in two] == [OVERFIT_PLAIN_ANSWER] * 2


def test_openai_and_transformers_backends_agree(transformers_serve_url: str, overfit_tiny_model_dir: Path,
                                                overfit: Backend) -> None:
    served = create_backend(f"{overfit_tiny_model_dir}@openai", base_url=transformers_serve_url)
    request = [req(OVERFIT_PLAIN_PROMPT, max_tokens=20, temperature=0.0)]
    [[remote]], [[local]] = generate_sync(served, request), generate_sync(overfit, request)
    assert (remote.text, remote.prompt_tokens) == (local.text, local.prompt_tokens)


def test_openai_backend_bad_model_is_a_backend_error(transformers_serve_url: str, tmp_path: Path) -> None:
    backend = create_backend(f"{tmp_path / 'no-such-model'}@openai", base_url=transformers_serve_url, max_retries=0)
    with pytest.raises(BackendError, match="HTTP 5"):
        generate_sync(backend, [req("hi", max_tokens=4)])


# --------------------------------------------------------------------------------------------------
# openai backend against the fake server
# --------------------------------------------------------------------------------------------------


def fake_backend(server, **options) -> Backend:
    return create_backend("fake-model@openai", base_url=server.base_url, backoff=0.01, **options)


def test_openai_sends_every_setting(fake_openai) -> None:
    schema = {"title": "verdict", "type": "object", "properties": {"score": {"type": "integer"}}}
    config = dict(n=1, temperature=0.5, top_p=0.9, max_tokens=32, seed=7, stop=("Observation:",),
                  logprobs=True, top_logprobs=2, response_format=schema)
    history = (*user("hi"), Message(role="assistant", tool_calls=(ToolCall(id="c1", name="get_weather",
                                                                              arguments='{"city": "Paris"}'),)),
               Message(role="tool", content="sunny", tool_call_id="c1"))
    backend = fake_backend(fake_openai, api_key="sk-test-secret")
    generate_sync(backend, [ChatRequest(messages=history, tools=(WEATHER_TOOL,), config=GenerateConfig(**config))])
    [body] = fake_openai.requests
    assert body["model"] == "fake-model" and body["tools"] == [WEATHER_TOOL]
    sent = {"n": 1, "temperature": 0.5, "top_p": 0.9, "max_tokens": 32, "seed": 7, "stop": ["Observation:"],
            "logprobs": True, "top_logprobs": 2}
    assert {k: body[k] for k in sent} == sent
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
    assert body["messages"] == message_dicts(history, arguments="text")
    assert fake_openai.authorizations == ["Bearer sk-test-secret"]
    assert "sk-test-secret" not in repr(backend)
    # Unset settings are not sent at all.
    generate_sync(backend, [req("hi")])
    assert set(fake_openai.requests[1]) == {"model", "messages"}


def test_openai_prefill_is_opt_in_and_sent_as_the_vllm_extension(fake_openai) -> None:
    begun = ChatRequest(messages=(*user("hi"), Message(role="assistant", content="Score: ")),
                        continue_final_message=True)
    assert not fake_backend(fake_openai).supports("prefill")  # hosted APIs reject the field
    backend = fake_backend(fake_openai, features=["logprobs", "prefill"])
    assert backend.supports("prefill") and not backend.supports("n")
    generate_sync(backend, [begun, req("hi")])
    # both requests are in flight at once: tell them apart by their last message
    [first] = [b for b in fake_openai.requests if b["messages"][-1]["role"] == "assistant"]
    [second] = [b for b in fake_openai.requests if b["messages"][-1]["role"] == "user"]
    assert (first["continue_final_message"], first["add_generation_prompt"]) == (True, False)
    assert first["messages"][-1] == {"role": "assistant", "content": "Score: "}
    assert "continue_final_message" not in second and "add_generation_prompt" not in second


def test_openai_n_choices_logprobs_and_tool_calls(fake_openai) -> None:
    three, [c], [call] = generate_sync(fake_backend(fake_openai), [
        req("hi there", n=3),
        req("one two three", logprobs=True, top_logprobs=3),
        req("Paris", tools=(WEATHER_TOOL,)),
    ])
    assert len(fake_openai.requests) == 3
    assert [c.text for c in three] == [f"choice {i} seed None: hi there" for i in range(3)]
    assert three[0].completion_tokens is None  # usage counts all choices together
    assert c.completion_tokens == len(c.text.split()) == len(c.logprobs)
    assert [t.token for t in c.logprobs] == c.text.split(" ")
    for token in c.logprobs:
        values = [t.logprob for t in token.top]
        assert len(values) == 3 and values == sorted(values, reverse=True) and token.top[0].token == token.token
    assert call.finish_reason == "tool_calls" and call.text == ""
    assert call.tool_calls[0].name == "get_weather" and json.loads(call.tool_calls[0].arguments) == {"text": "Paris"}
    assert call.tool_calls[0].id.startswith("call_fake_")


def test_openai_tops_up_when_the_server_ignores_n(fake_openai) -> None:
    fake_openai.max_choices = 1
    [completions] = generate_sync(fake_backend(fake_openai), [req("hi", n=3, seed=5)])
    assert [c.text for c in completions] == ["choice 0 seed 5: hi", "choice 0 seed 6: hi", "choice 0 seed 7: hi"]
    assert [(b["n"], b["seed"]) for b in fake_openai.requests] == [(3, 5), (2, 6), (1, 7)]


def test_openai_trims_stop_strings_the_server_left_in(fake_openai) -> None:
    fake_openai.responder = lambda body, i: "Thought: go\nObservation: made up"
    [[c]] = generate_sync(fake_backend(fake_openai), [req("x", stop=("\nObservation:",))])
    assert c.text == "Thought: go" and c.finish_reason == "stop"


def test_openai_retries_429_then_succeeds(fake_openai) -> None:
    fake_openai.script = [{"status": 429, "headers": {"Retry-After": "0"}}, {"status": 429}]
    [[c]] = generate_sync(fake_backend(fake_openai), [req("hi")])
    assert c.text == "choice 0 seed None: hi"
    assert len(fake_openai.requests) == 3


def test_openai_retries_500(fake_openai) -> None:
    fake_openai.script = [{"status": 500}]
    [[c]] = generate_sync(fake_backend(fake_openai), [req("hi")])
    assert c.text.endswith("hi") and len(fake_openai.requests) == 2


def test_openai_does_not_retry_400(fake_openai) -> None:
    fake_openai.script = [{"status": 400, "message": "max_tokens is too large"}]
    with pytest.raises(BackendError) as err:
        generate_sync(fake_backend(fake_openai), [req("hi")])
    assert err.value.status == 400
    assert "HTTP 400" in str(err.value) and "max_tokens is too large" in str(err.value)
    assert len(fake_openai.requests) == 1


def test_openai_gives_up_after_max_retries(fake_openai) -> None:
    fake_openai.script = [{"status": 503, "message": "overloaded"}] * 3
    with pytest.raises(BackendError, match="after 3 attempts.*HTTP 503: overloaded"):
        generate_sync(fake_backend(fake_openai, max_retries=2), [req("hi")])
    assert len(fake_openai.requests) == 3


def test_openai_retries_a_timeout(fake_openai) -> None:
    fake_openai.script = [{"delay": 1.5}]
    [[c]] = generate_sync(fake_backend(fake_openai, timeout=0.3), [req("hi")])
    assert c.text.endswith("hi") and len(fake_openai.requests) == 2


def test_openai_retries_connection_errors_then_fails_clearly() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = create_backend("m@openai", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01)
    with pytest.raises(BackendError, match="after 2 attempts.*Connect"):
        generate_sync(backend, [req("hi")])


def test_openai_concurrency_limit(fake_openai) -> None:
    fake_openai.delay = 0.15
    results = generate_sync(fake_backend(fake_openai, max_concurrency=3), [req(f"q{i}") for i in range(10)])
    assert [r[0].text for r in results] == [f"choice 0 seed None: q{i}" for i in range(10)]  # request order
    assert len(fake_openai.requests) == 10
    assert fake_openai.max_in_flight == 3


def test_generate_sync_inside_a_running_loop(fake_openai) -> None:
    backend = fake_backend(fake_openai)

    async def caller() -> list[list[Completion]]:
        return generate_sync(backend, [req("from a loop")])

    [[c]] = asyncio.run(caller())
    assert c.text.endswith("from a loop")
