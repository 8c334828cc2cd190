"""The one interface every model backend speaks: requests in, completions out.

Generators (agent, tool emulator) and judges build ``ChatRequest`` values and hand a whole batch to
``Backend.generate``; each backend decides how to run the batch (padded ``generate`` calls, concurrent
HTTP requests, one vLLM call). Nothing here knows about agents, judges or pairs.

Also here: the helpers that more than one backend needs (message dicts for chat templates and for the
OpenAI wire format, stop-string trimming), so each rule has one home. The ``<tool_call>`` extractor
lives in ``prefkit.tool_calls`` (``parse_tool_calls`` is re-exported here).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefkit.errors import PrefkitError
from prefkit.records import Message, ToolCall, arguments_object
from prefkit.tool_calls import parse_tool_calls as parse_tool_calls  # re-exported: one extractor

T = TypeVar("T")

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
    """Makes this request's sampling repeatable: on a given backend and model the same request with the
    same seed gives the same samples, whatever else is in its batch (every backend seeds per request;
    see ``prefkit.rollout.seeds`` for how rollouts derive one per call). Ignored by greedy decoding."""
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


async def run_blocking(work: Callable[[threading.Event], T], *, name: str = "prefkit-generate") -> T:
    """``work(cancel)`` on a daemon thread of its own, awaited; for the in-process backends' model calls.

    When the awaiting task is cancelled (Ctrl-C inside ``generate_sync``: ``asyncio.run`` cancels its
    task), ``cancel`` is set for ``work`` to stop early and the coroutine returns at once. Unlike
    ``asyncio.to_thread``, the thread is not the loop's default executor, which ``asyncio.run`` joins
    before it returns: an interrupted batch never holds up the exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    cancel = threading.Event()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def run() -> None:
        try:
            outcome: tuple[Callable[[Any], None], Any] = (future.set_result, work(cancel))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            outcome = (future.set_exception, exc)
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:  # the loop is closed: the caller was interrupted and is gone
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        return await future
    except asyncio.CancelledError:
        cancel.set()
        raise


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


def message_dict(message: Message | Mapping[str, Any], *, arguments: Literal["text", "object"],
                 every_key: bool = False) -> dict[str, Any]:
    """One message as a plain dict: THE message -> dict converter (OpenAI wire format, Hugging Face chat
    templates, the pairer's TRL rows).

    Shape: ``{"role", "content"}``, plus ``"tool_calls": [{"id", "type": "function", "function": {"name",
    "arguments"}}]`` on an assistant message with calls and ``"tool_call_id"`` on a tool message. With
    ``every_key`` every message has all four keys (``None`` where unused), as the TRL rows want them
    (one key set for every message).

    ``arguments="text"``: the JSON text, as the OpenAI API wants it. ``arguments="object"``: the decoded
    JSON object (``prefkit.records.arguments_object``), because templates such as Qwen2.5's render
    ``arguments | tojson`` and would quote a text a second time. prefkit's renderings only make calls whose
    arguments are a JSON object (``prefkit.render.native``); a call from elsewhere whose arguments are not
    one keeps its text, and ``prefkit validate`` rejects a row holding such a call.

    ``message`` is a ``Message`` or its ``model_dump()`` (e.g. a row of the run store's messages column).
    """
    m = message if isinstance(message, Message) else Message.model_validate(message)
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls or every_key:
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
        ] if m.tool_calls else None
    if m.tool_call_id is not None or every_key:
        d["tool_call_id"] = m.tool_call_id
    return d


def message_dicts(messages: Iterable[Message | Mapping[str, Any]], *, arguments: Literal["text", "object"],
                  every_key: bool = False) -> list[dict[str, Any]]:
    """``message_dict`` of each message, in order."""
    return [message_dict(m, arguments=arguments, every_key=every_key) for m in messages]


def _decoded(arguments: str) -> dict[str, Any] | str:
    """Arguments for a chat template: the JSON object, else the text unchanged (see ``message_dict``)."""
    value = arguments_object(arguments)
    return arguments if value is None else value


# --------------------------------------------------------------------------------------------------
# Output parsing shared by the backends (tool calls: prefkit.tool_calls)
# --------------------------------------------------------------------------------------------------


def trim_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for s in stop or () if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
