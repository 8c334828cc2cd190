"""The one interface every model backend speaks: requests in, completions out.

Generators (agent, tool emulator) and judges build ``ChatRequest`` values and hand a whole batch to
``Backend.generate``; each backend decides how to run the batch (padded ``generate`` calls, concurrent
HTTP requests, one vLLM call). Nothing here knows about agents, judges or pairs.

Also here: the helpers that more than one backend needs (message dicts for chat templates and for the
OpenAI wire format, the Qwen-style ``<tool_call>`` parser, stop-string trimming), so each rule has
one home.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefkit.errors import PrefkitError
from prefkit.records import Message, ToolCall, content_hash

Feature = Literal["logprobs", "n", "tools", "structured_output", "prefill"]
FEATURES: tuple[Feature, ...] = ("logprobs", "n", "tools", "structured_output", "prefill")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendError(PrefkitError):
    """A model call failed for a reason the caller cannot fix by changing its input (e.g. the server
    answered HTTP 400, or kept failing after every retry). ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


# --------------------------------------------------------------------------------------------------
# Requests and completions
# --------------------------------------------------------------------------------------------------


class GenerateConfig(_Frozen):
    """Generation settings of one request. ``None`` everywhere means "the backend's default", so configs
    layer cleanly: ``recipe.merge(stage).merge(call)``.

    Backend defaults worth knowing: the transformers backend decodes greedily when ``temperature`` is
    ``None`` or 0; the openai backend sends only the fields that are set (so the server's defaults
    apply); vllm uses vLLM's ``SamplingParams`` defaults (temperature 1.0). Backends without a feature
    (see ``Backend.supports``) ignore its fields.
    """

    n: int | None = Field(default=None, ge=1)
    """Completions per request."""
    temperature: float | None = Field(default=None, ge=0)
    """0 means greedy decoding."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    """Most new tokens per completion; hitting it gives ``finish_reason == "length"``."""
    seed: int | None = None
    """Makes sampling repeatable (same backend, same batch)."""
    stop: tuple[str, ...] | None = None
    """Generation stops at the first of these strings; the text is cut before it."""
    logprobs: bool | None = None
    """Return the log probability of every generated token."""
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    """With ``logprobs``: also the k most likely alternatives at each position."""
    response_format: dict[str, Any] | None = None
    """A JSON Schema the answer must follow (structured output / guided decoding)."""

    def merge(self, other: GenerateConfig | None) -> GenerateConfig:
        """A copy of this config where every field that ``other`` sets (not ``None``) wins."""
        if other is None:
            return self
        return self.model_copy(update=other.model_dump(exclude_none=True))


class ChatRequest(_Frozen):
    """One conversation to continue, with the tools the model may call and its generation settings."""

    messages: tuple[Message, ...] = Field(min_length=1)
    tools: tuple[dict[str, Any], ...] | None = None
    """OpenAI function schemas (``{"type": "function", "function": {...}}``, e.g. ``Tool.json_schema()``)."""
    config: GenerateConfig = GenerateConfig()
    continue_final_message: bool = False
    """Continue the last message, an assistant turn already begun (a *prefill*, e.g. ``"Score: "``),
    instead of opening a new one; the completion holds only what follows it. Needs a backend that
    ``supports("prefill")``."""

    @model_validator(mode="after")
    def _prefill_is_an_assistant_turn(self) -> ChatRequest:
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs the last message to be an assistant turn")
        return self


class TopLogprob(_Frozen):
    token: str
    logprob: float


class TokenLogprob(_Frozen):
    """One generated token, its log probability and the most likely alternatives (best first)."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


class Completion(_Frozen):
    """One answer of the model.

    ``text`` is the answer without tool-call markup; ``tool_calls`` holds the calls (arguments as JSON
    text) or ``None``. ``finish_reason`` is ``"stop"`` (end of turn or a stop string), ``"length"``
    (``max_tokens`` reached) or ``"tool_calls"``; servers may report others.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None

    def to_message(self) -> Message:
        """The assistant message this completion adds to the conversation."""
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """A language model behind one of prefkit's backends (``transformers``, ``openai``, ``vllm``).

    ``generate`` takes the whole batch at once and returns, in request order, one list of ``n``
    completions per request. Make one with ``prefkit.backends.create_backend("MODEL@backend")``.
    """

    name: str
    """The backend's registry name: ``"transformers"``, ``"openai"`` or ``"vllm"``."""
    model: str
    """The model as given in the spec (a path, a Hub id or a served model name)."""

    async def generate(self, requests: Sequence[ChatRequest]) -> list[list[Completion]]: ...

    def supports(self, feature: Feature) -> bool:
        """Whether the backend honours ``feature``: "logprobs", "n", "tools", "structured_output" or
        "prefill" (``ChatRequest.continue_final_message``)."""
        ...

    def close(self) -> None:
        """Release the model or connections; the backend is not used afterwards."""
        ...


def generate_sync(backend: Backend, requests: Sequence[ChatRequest]) -> list[list[Completion]]:
    """``backend.generate(requests)`` from synchronous code.

    Works inside a running event loop too (e.g. a notebook): the batch then runs on its own loop in a
    worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(backend.generate(requests))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, backend.generate(requests)).result()


def check_feature(feature: str) -> Feature:
    if feature not in FEATURES:
        raise ValueError(f"unknown backend feature {feature!r}; expected one of {', '.join(FEATURES)}")
    return feature  # type: ignore[return-value]


def expected_n(request: ChatRequest) -> int:
    return request.config.n or 1


# --------------------------------------------------------------------------------------------------
# Message dicts
# --------------------------------------------------------------------------------------------------


def chat_template_text(tokenizer: Any, request: ChatRequest) -> str:
    """The prompt text of ``request`` from a Hugging Face tokenizer's chat template: a new assistant turn
    opened after the messages, or with ``continue_final_message`` the last (assistant) message left open."""
    return tokenizer.apply_chat_template(
        message_dicts(request.messages, arguments="object"),
        tools=list(request.tools) if request.tools else None,
        add_generation_prompt=not request.continue_final_message,
        continue_final_message=request.continue_final_message,
        tokenize=False,
    )


def message_dicts(messages: Iterable[Message], *, arguments: Literal["text", "object"]) -> list[dict[str, Any]]:
    """Messages as plain dicts, for the OpenAI wire format (``arguments="text"``: JSON text, as the API
    wants) or for a Hugging Face chat template (``arguments="object"``: decoded JSON, because templates
    such as Qwen2.5's render ``arguments | tojson`` and would otherwise quote the text a second time)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments if arguments == "text" else _decoded(call.arguments),
                    },
                }
                for call in m.tool_calls
            ]
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


def _decoded(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments  # the agent wrote something that is not JSON: keep its text as is


# --------------------------------------------------------------------------------------------------
# Output parsing shared by the in-process backends
# --------------------------------------------------------------------------------------------------

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str, tuple[ToolCall, ...] | None]:
    """Split Qwen/Hermes-style ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks out
    of a model's text.

    Returns the text outside the blocks (stripped) and the calls, or the text unchanged and ``None``
    when it holds no well-formed block. A block whose content is not a JSON object with a string
    ``name`` stays in the text, so nothing the model wrote is lost. Call ids are content hashes
    (``call_<hash>``), so the same output always gets the same ids.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _TOOL_CALL_BLOCK.finditer(text):
        call = _tool_call_from_json(match.group(1), index=len(calls))
        if call is None:
            continue
        kept.append(text[position : match.start()])
        position = match.end()
        calls.append(call)
    if not calls:
        return text, None
    kept.append(text[position:])
    return "".join(kept).strip(), tuple(calls)


def _tool_call_from_json(payload: str, *, index: int) -> ToolCall | None:
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    call_id = "call_" + content_hash({"index": index, "name": obj["name"], "arguments": arguments}, length=12)
    return ToolCall(id=call_id, name=obj["name"], arguments=arguments)


def trim_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for s in stop or () if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
