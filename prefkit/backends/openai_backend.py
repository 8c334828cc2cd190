"""Any OpenAI-compatible ``/chat/completions`` server: OpenAI itself, ``vllm serve``, ``transformers serve``.

Requests of a batch go out concurrently (at most ``max_concurrency`` in flight) over one httpx client.
Transient failures (HTTP 429, 5xx, timeouts, dropped connections) are retried with exponential
backoff and jitter; any other 4xx fails at once with the server's message. The API key is sent as a
bearer token and never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from prefkit.backends.base import (
    FEATURES,
    BackendError,
    ChatRequest,
    Completion,
    Feature,
    TokenLogprob,
    TopLogprob,
    check_feature,
    expected_n,
    message_dicts,
    parse_tool_calls,
    trim_at_stop,
)
from prefkit.records import ToolCall
from prefkit.text import clean_json_text, clean_text, clean_value

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_FEATURES = tuple(f for f in FEATURES if f != "prefill")
"""What an OpenAI-compatible server is assumed to honour unless told (``features`` option)."""
RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


class OpenAIBackend:
    """``MODEL@openai``: chat completions from an OpenAI-compatible server.

    Options: ``base_url`` (default ``$OPENAI_BASE_URL`` or ``http://127.0.0.1:8000/v1``), ``api_key``
    (default ``$OPENAI_API_KEY``), ``max_concurrency`` (requests in flight), ``timeout`` (seconds per
    request), ``max_retries`` (after the first try), ``backoff`` (first retry delay in seconds; doubles
    each time, capped at ``backoff_max``), ``features`` (what the server honours; default all but
    ``prefill``: declare less for servers such as ``transformers serve`` that drop logprobs, and add
    ``prefill`` for vLLM and SGLang, which continue a final assistant message when asked with
    ``continue_final_message``; hosted APIs reject that field), ``extra_body`` (fields added to
    every request, e.g. ``{"chat_template_kwargs": {"enable_thinking": False}}`` for vLLM).

    Each request's ``seed`` goes in its own body, so a server that honours seeds per request (vLLM,
    SGLang) samples it the same whatever is sent with it. When the server returns fewer than ``n``
    choices (``transformers serve`` ignores ``n``), more requests are sent until there are ``n``; with a
    seed, the k-th extra request uses ``seed + k`` so that the extra answers are new samples.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int = 8, timeout: float = 120.0, max_retries: int = 5, backoff: float = 1.0,
                 backoff_max: float = 30.0, features: Iterable[str] | None = None,
                 extra_body: dict[str, Any] | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        chosen = DEFAULT_FEATURES if features is None else features
        self.features = frozenset(check_feature(f) for f in chosen)
        self.extra_body = dict(extra_body or {})

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def supports(self, feature: Feature) -> bool:
        return check_feature(feature) in self.features

    def close(self) -> None:
        """Nothing to release: each ``generate`` call opens and closes its own client (an httpx client
        and a semaphore belong to one event loop, and ``generate_sync`` makes a new loop per call)."""

    async def generate(self, requests: Sequence[ChatRequest]) -> list[list[Completion]]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limit = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout,
                                     limits=httpx.Limits(max_connections=self.max_concurrency)) as client:
            try:
                async with asyncio.TaskGroup() as group:  # one failure cancels the rest
                    tasks = [group.create_task(self._complete(client, limit, r)) for r in requests]
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None  # the caller sees the BackendError itself
        return [task.result() for task in tasks]

    # ----------------------------------------------------------------------------------------------

    async def _complete(self, client: httpx.AsyncClient, limit: asyncio.Semaphore,
                        request: ChatRequest) -> list[Completion]:
        want = expected_n(request)
        body = self.request_body(request)
        if want > 1 and request.config.temperature == 0:
            # Greedy decoding gives n identical answers; some servers (vLLM) reject n > 1 at temperature 0,
            # so ask for one and repeat it, as the in-process backends do.
            body.pop("n", None)
            [one] = parse_response(await self._post(client, limit, body), request)[:1] or [None]
            if one is None:
                raise BackendError(f"{self.base_url}/chat/completions returned no choices for model {self.model!r}")
            return [one] * want
        completions: list[Completion] = []
        extra = 0
        while len(completions) < want:
            if completions:  # the server returned fewer choices than asked: ask again for the rest
                extra += 1
                body = {**body, "n": want - len(completions)}
                if request.config.seed is not None:
                    body["seed"] = request.config.seed + extra
            got = parse_response(await self._post(client, limit, body), request)
            if not got:
                raise BackendError(f"{self.base_url}/chat/completions returned no choices for model {self.model!r}")
            completions.extend(got)
        return completions[:want]

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of ``request`` (only the settings it sets; the server's defaults fill the rest)."""
        c = request.config
        body: dict[str, Any] = {"model": self.model, "messages": message_dicts(request.messages, arguments="text")}
        for key in ("n", "temperature", "top_p", "max_tokens", "seed"):
            if (value := getattr(c, key)) is not None:
                body[key] = value
        if c.stop:
            body["stop"] = list(c.stop)
        if c.logprobs:
            body["logprobs"] = True
            if c.top_logprobs:
                body["top_logprobs"] = c.top_logprobs
        if request.tools:
            body["tools"] = list(request.tools)
        if request.continue_final_message:  # vLLM's and SGLang's chat-completions extension
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        if c.response_format is not None:
            name = str(c.response_format.get("title") or "answer")
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": name, "schema": c.response_format}}
        return {**body, **self.extra_body}

    async def _post(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                async with limit:
                    response = await client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    # Answers may hold lone surrogates ("\ud83d": a model cut mid-emoji); they become U+FFFD
                    # here, where the text enters prefkit, so nothing downstream fails to encode them.
                    return clean_value(response.json())
                failure = f"HTTP {response.status_code}: {_server_message(response)}"
                if response.status_code not in RETRY_STATUSES:
                    raise BackendError(f"POST {url} (model {self.model!r}) failed with {failure}",
                                       status=response.status_code)
                retry_after = _retry_after(response)
            if attempt == self.max_retries:
                break
            delay = min(self.backoff_max, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            await asyncio.sleep(min(self.backoff_max, retry_after) if retry_after is not None else delay)
        raise BackendError(f"POST {url} (model {self.model!r}) failed after {self.max_retries + 1} attempts; "
                           f"last error: {failure}")


def parse_response(payload: dict[str, Any], request: ChatRequest) -> list[Completion]:
    """The completions of one ``/chat/completions`` response body, in choice order."""
    choices = sorted(payload.get("choices") or [], key=lambda ch: ch.get("index", 0))
    usage = payload.get("usage") or {}
    completions = []
    for choice in choices:
        message = choice.get("message") or {}
        text, stopped = trim_at_stop(message.get("content") or "", request.config.stop)
        finish = choice.get("finish_reason") or "stop"
        logprobs = _logprobs(choice.get("logprobs"))
        # Usage counts all choices together; per choice it is exact only when there is one.
        completion_tokens = usage.get("completion_tokens") if len(choices) == 1 else (
            len(logprobs) if logprobs is not None else None)
        tool_calls = _tool_calls(message.get("tool_calls"))
        if tool_calls is None and request.tools:
            # A server started without a tool-call parser returns the model's <tool_call> blocks as
            # content: the same extractor as the in-process backends takes them out.
            text, tool_calls = parse_tool_calls(text)
            if tool_calls and finish == "stop":
                finish = "tool_calls"
        completions.append(Completion(
            text=text,
            tool_calls=tool_calls,
            finish_reason="stop" if stopped else finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion_tokens,
            logprobs=logprobs,
        ))
    return completions


def _tool_calls(raw: list[dict[str, Any]] | None) -> tuple[ToolCall, ...] | None:
    if not raw:
        return None
    calls = []
    for i, call in enumerate(raw):
        function = call.get("function") or {}
        args = function.get("arguments", "")
        calls.append(ToolCall(
            id=call.get("id") or f"call_{i}",
            name=function.get("name", ""),
            # JSON text decoded again later (call checks, the emulator): its lone surrogate escapes go too.
            arguments=clean_json_text(args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)),
        ))
    return tuple(calls)


def _logprobs(raw: dict[str, Any] | None) -> tuple[TokenLogprob, ...] | None:
    if not raw or raw.get("content") is None:
        return None
    return tuple(
        TokenLogprob(
            token=item["token"],
            logprob=float(item["logprob"]),
            top=tuple(sorted((TopLogprob(token=t["token"], logprob=float(t["logprob"]))
                              for t in item.get("top_logprobs") or ()), key=lambda t: -t.logprob)),
        )
        for item in raw["content"]
    )


def _server_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return clean_text(response.text.strip()[:500]) or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return clean_text(str(error)[:500])
    return json.dumps(payload)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
