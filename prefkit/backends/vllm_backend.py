"""In-process generation with vLLM (GPU machines; ``pip install "prefkit[vllm]"``).

vllm is imported only when a backend is made; the module itself imports without it.

The whole batch goes to vLLM in ONE call. ``LLM.chat`` takes a single ``tools=`` list for all its
conversations, but an agent wave mixes scenarios with different toolkits; so each request is rendered
with the model's own chat template and tokenizer (exactly what ``LLM.chat`` does internally), and the
token prompts go to ``LLM.generate`` with one ``SamplingParams`` per request, its ``seed`` included: vLLM
seeds each request's sampling on its own, so a seeded request draws the same samples in any batch. Tool
calls are read from the text with the Qwen/Hermes ``<tool_call>`` parser that the transformers backend uses.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prefkit.backends.base import (
    ChatRequest,
    Completion,
    Feature,
    GenerateConfig,
    TokenLogprob,
    TopLogprob,
    chat_template_text,
    check_feature,
    expected_n,
    parse_tool_calls,
    run_blocking,
)


def sampling_kwargs(config: GenerateConfig, *, default_max_tokens: int) -> dict[str, Any]:
    """The keyword arguments of ``vllm.SamplingParams`` for ``config``.

    Unset fields are left out, so vLLM's defaults apply, except ``max_tokens``: vLLM's default is 16,
    so ``default_max_tokens`` stands in. ``response_format`` becomes ``{"structured_outputs": {"json":
    schema}}`` (made into ``StructuredOutputsParams`` by the backend). ``logprobs`` becomes vLLM's
    count of alternatives (0: only the chosen token's log probability).
    """
    kwargs: dict[str, Any] = {"max_tokens": config.max_tokens or default_max_tokens}
    for key in ("n", "temperature", "top_p", "seed"):
        if (value := getattr(config, key)) is not None:
            kwargs[key] = value
    if config.stop:
        kwargs["stop"] = list(config.stop)
    if config.logprobs:
        kwargs["logprobs"] = config.top_logprobs or 0
    if config.response_format is not None:
        kwargs["structured_outputs"] = {"json": config.response_format}
    return kwargs


class VLLMBackend:
    """``MODEL@vllm``: a ``vllm.LLM`` in this process.

    Options: ``default_max_tokens`` (when a request sets none); every other option goes to
    ``vllm.LLM(model, ...)`` as is (``tensor_parallel_size``, ``gpu_memory_utilization``,
    ``max_model_len``, ``dtype``, ``quantization``, ``enable_prefix_caching``, ...). A script that
    makes this backend needs an ``if __name__ == "__main__":`` guard: vLLM starts worker processes.
    """

    name = "vllm"

    def __init__(self, model: str, *, default_max_tokens: int = 1024, **llm_options: Any) -> None:
        import vllm

        self.model = model
        self.default_max_tokens = default_max_tokens
        self._vllm = vllm
        self._llm = vllm.LLM(model=model, **llm_options)
        self._tokenizer = self._llm.get_tokenizer()
        self._lock = threading.Lock()

    def supports(self, feature: Feature) -> bool:
        check_feature(feature)
        return True

    def close(self) -> None:
        self._llm = None

    async def generate(self, requests: Sequence[ChatRequest]) -> list[list[Completion]]:
        # On a thread of its own: an interrupted call (Ctrl-C) returns at once instead of waiting for
        # vLLM to finish the batch (LLM.generate cannot be stopped midway; prefkit's CLI then exits).
        batch = list(requests)
        return await run_blocking(lambda _cancel: self._generate_all(batch))

    def _generate_all(self, requests: list[ChatRequest]) -> list[list[Completion]]:
        prompts = [{"prompt_token_ids": self._prompt_ids(r)} for r in requests]
        params = [self._sampling_params(r.config) for r in requests]
        with self._lock:
            outputs = self._llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        for request, output in zip(requests, outputs, strict=True):
            choices = [_completion(request, choice, prompt_tokens=len(output.prompt_token_ids or ()))
                       for choice in output.outputs]
            if len(choices) == 1 < expected_n(request):  # greedy, asked for once (see _sampling_params)
                choices *= expected_n(request)
            results.append(choices)
        return results

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        text = chat_template_text(self._tokenizer, request)
        # The template already wrote the special tokens; adding them again would double a BOS.
        return self._tokenizer.encode(text, add_special_tokens=False)

    def _sampling_params(self, config: GenerateConfig) -> Any:
        kwargs = sampling_kwargs(config, default_max_tokens=self.default_max_tokens)
        # vLLM rejects n > 1 with greedy decoding ("n must be 1 when using greedy sampling"); the n
        # answers would be the same, so one is generated and repeated.
        if kwargs.get("temperature") == 0 and kwargs.get("n", 1) > 1:
            kwargs["n"] = 1
        if "structured_outputs" in kwargs:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
        return self._vllm.SamplingParams(**kwargs)


def _completion(request: ChatRequest, choice: Any, *, prompt_tokens: int) -> Completion:
    """A ``Completion`` from one vLLM ``CompletionOutput`` (text already cut before stop strings)."""
    text = choice.text
    finish = choice.finish_reason or "stop"
    tool_calls = None
    if request.tools:
        text, tool_calls = parse_tool_calls(text)
        if tool_calls and finish == "stop":
            finish = "tool_calls"
    logprobs = None
    if request.config.logprobs and choice.logprobs is not None:
        k = request.config.top_logprobs or 0
        logprobs = tuple(_token_logprob(token_id, step, k) for token_id, step in zip(choice.token_ids, choice.logprobs, strict=False))
    return Completion(text=text, tool_calls=tool_calls, finish_reason=finish, prompt_tokens=prompt_tokens,
                      completion_tokens=len(choice.token_ids), logprobs=logprobs)


def _token_logprob(token_id: int, step: Any, k: int) -> TokenLogprob:
    # ``step`` maps token id -> Logprob(logprob, rank, decoded_token): the top-k plus the chosen token.
    chosen = step[token_id]
    ranked = sorted(step.values(), key=lambda lp: lp.rank if lp.rank is not None else 1 << 30)[:k]
    top = tuple(TopLogprob(token=lp.decoded_token or "", logprob=float(lp.logprob)) for lp in ranked)
    return TokenLogprob(token=chosen.decoded_token or "", logprob=float(chosen.logprob), top=top)
