"""In-process generation with Hugging Face transformers (CPU or one GPU): the backend for tests, small
models and machines without a server.

Requests that share a generation config are rendered with the tokenizer's chat template (with
``tools=`` when given), left-padded and decoded in batches of ``batch_size`` by one ``model.generate``
call each. torch and transformers are imported when the backend is made, never at package import.
"""

from __future__ import annotations

import asyncio
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
    trim_at_stop,
)


class TransformersBackend:
    """``MODEL@transformers``: ``AutoModelForCausalLM`` + tokenizer loaded from ``model`` (a folder or a
    Hub id already in the local cache).

    Options: ``device`` ("cpu", "cuda", "cuda:1", ...), ``batch_size`` (prompts per ``generate`` call),
    ``dtype`` (e.g. "bfloat16"; default: the checkpoint's), ``default_max_tokens`` (used when a request
    sets no ``max_tokens``).

    Decoding: greedy when ``temperature`` is ``None`` or 0 (``n`` copies of the one answer), sampling
    otherwise; a ``seed`` seeds torch before each batch, so the same batch gives the same samples.
    Log probabilities are the model's own (log-softmax of the raw logits, before temperature).
    """

    name = "transformers"

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 8, dtype: str | None = None,
                 default_max_tokens: int = 512) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.default_max_tokens = default_max_tokens
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model)
        # Left padding keeps every prompt's last token at the same position, so one generate call
        # continues all of them.
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)} if dtype else {}
        self._model = AutoModelForCausalLM.from_pretrained(model, **kwargs).to(device).eval()
        eos = self._model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self._eos_ids = set(eos_ids) | {self._tokenizer.eos_token_id} - {None}
        self._lock = threading.Lock()  # one generate at a time on the shared model

    def supports(self, feature: Feature) -> bool:
        # Tools go through the chat template and the <tool_call> parser; no guided decoding here.
        return check_feature(feature) != "structured_output"

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]

    async def generate(self, requests: Sequence[ChatRequest]) -> list[list[Completion]]:
        # The work is CPU/GPU bound: run it off the event loop so concurrent HTTP calls keep going.
        return await asyncio.to_thread(self._generate_all, list(requests))

    # ----------------------------------------------------------------------------------------------

    def _generate_all(self, requests: list[ChatRequest]) -> list[list[Completion]]:
        results: list[list[Completion] | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.config.model_dump_json(), []).append(i)
        with self._lock, self._torch.inference_mode():
            for indices in groups.values():
                config = requests[indices[0]].config
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    batch = self._generate_batch([requests[i] for i in chunk], config)
                    for i, completions in zip(chunk, batch, strict=True):
                        results[i] = completions
        assert all(r is not None for r in results), "every request belongs to exactly one group"
        return results  # type: ignore[return-value]

    def _render(self, request: ChatRequest) -> str:
        return chat_template_text(self._tokenizer, request)

    def _generate_batch(self, requests: list[ChatRequest], config: GenerateConfig) -> list[list[Completion]]:
        torch = self._torch
        tok = self._tokenizer
        n = expected_n(requests[0])
        greedy = not config.temperature  # None or 0
        max_new = config.max_tokens or self.default_max_tokens
        enc = tok([self._render(r) for r in requests], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": not greedy,
                                  "return_dict_in_generate": True, "output_logits": bool(config.logprobs),
                                  "pad_token_id": tok.pad_token_id}
        if not greedy:
            kwargs.update(temperature=config.temperature, num_return_sequences=n)
            if config.top_p is not None:
                kwargs["top_p"] = config.top_p
        if config.stop:
            kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        if config.seed is not None:
            torch.manual_seed(config.seed)
        out = self._model.generate(**enc, **kwargs)

        prompt_len = enc["input_ids"].shape[1]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        rows_per_request = 1 if greedy else n
        logprobs = None
        if config.logprobs:
            # (rows, steps, vocab) log-probabilities of the model itself.
            logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
        completions: list[list[Completion]] = []
        for r, request in enumerate(requests):
            answers = []
            for k in range(rows_per_request):
                row = r * rows_per_request + k  # generate repeats each prompt n times in a row
                ids = out.sequences[row, prompt_len:].tolist()
                answers.append(self._completion(request, ids, logprobs[row] if logprobs is not None else None,
                                                prompt_tokens=int(prompt_tokens[r]), max_new=max_new))
            completions.append(answers * n if greedy else answers)
        return completions

    def _completion(self, request: ChatRequest, ids: list[int], logprobs: Any, *, prompt_tokens: int,
                    max_new: int) -> Completion:
        config = request.config
        tok = self._tokenizer
        end = next((j for j, t in enumerate(ids) if t in self._eos_ids), None)
        if end is not None:
            content, generated, finish = ids[:end], end + 1, "stop"
        else:
            # Rows that stopped early (a stop string) are padded to the batch's length.
            generated = len(ids)
            while generated and ids[generated - 1] == tok.pad_token_id and generated < max_new:
                generated -= 1
            content = ids[:generated]
            finish = "length" if generated >= max_new else "stop"
        pieces = [tok.decode([t], skip_special_tokens=True) for t in content]
        text, stopped = trim_at_stop(tok.decode(content, skip_special_tokens=True), config.stop)
        if stopped:
            finish = "stop"
        token_logprobs = None
        if logprobs is not None:
            kept = _tokens_within(pieces, len(text)) if stopped else len(content)
            token_logprobs = tuple(
                _token_logprob(logprobs[j], content[j], pieces[j], config.top_logprobs or 0, tok)
                for j in range(kept)
            )
        tool_calls = None
        if request.tools:
            text, tool_calls = parse_tool_calls(text)
            if tool_calls and finish == "stop":
                finish = "tool_calls"
        return Completion(text=text, tool_calls=tool_calls, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=generated, logprobs=token_logprobs)


def _tokens_within(pieces: list[str], length: int) -> int:
    """How many tokens it takes to cover the first ``length`` characters (the text before a stop)."""
    covered = 0
    for j, piece in enumerate(pieces):
        if covered >= length:
            return j
        covered += len(piece)
    return len(pieces)


def _token_logprob(step: Any, token_id: int, token: str, k: int, tok: Any) -> TokenLogprob:
    top: tuple[TopLogprob, ...] = ()
    if k:
        values, indices = step.topk(k)  # sorted, most likely first
        top = tuple(TopLogprob(token=tok.decode([int(i)]), logprob=float(v))
                    for v, i in zip(values.tolist(), indices.tolist(), strict=True))
    return TokenLogprob(token=token, logprob=float(step[token_id]), top=top)
