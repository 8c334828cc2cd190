"""In-process generation with Hugging Face transformers (CPU or one GPU): the backend for tests, small
models and machines without a server.

Requests that share a generation config (their seeds aside) are rendered with the tokenizer's chat
template (with ``tools=`` when given), left-padded and decoded in batches of ``batch_size`` by one
``model.generate`` call each. Sampling is done row by row (``RowSampler``), each row with its own seeded
generator, so what a request draws never depends on the other requests of its batch. torch and
transformers are imported when the backend is made, never at package import.
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
    trim_at_stop,
)
from prefkit.records import content_hash


class TransformersBackend:
    """``MODEL@transformers``: ``AutoModelForCausalLM`` + tokenizer loaded from ``model`` (a folder or a
    Hub id already in the local cache).

    Options: ``device`` ("cpu", "cuda", "cuda:1", ...), ``batch_size`` (prompts per ``generate`` call),
    ``dtype`` (e.g. "bfloat16"; default: the checkpoint's), ``default_max_tokens`` (used when a request
    sets no ``max_tokens``).

    Decoding: greedy when ``temperature`` is ``None`` or 0 (``n`` copies of the one answer), sampling
    otherwise: ``temperature`` and ``top_p`` (no top-k, as on vLLM and OpenAI servers), each of the
    ``n`` samples of a request drawn with its own ``torch.Generator`` seeded from the request's ``seed``
    and the sample's index (``row_seed``). A seeded request therefore gives the same samples alone or in
    any batch, in any position (up to float rounding that padding may change in the logits; a draw
    lands on another token only when its uniform falls within that rounding of a token boundary). An
    unseeded request's generators are seeded from torch's global generator (``torch.manual_seed``).
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
        # The work is CPU/GPU bound: run it off the event loop so concurrent HTTP calls keep going. When
        # the call is cancelled (Ctrl-C), ``cancel`` stops generation at the next token.
        batch = list(requests)
        return await run_blocking(lambda cancel: self._generate_all(batch, cancel))

    # ----------------------------------------------------------------------------------------------

    def _generate_all(self, requests: list[ChatRequest], cancel: threading.Event | None = None
                      ) -> list[list[Completion]]:
        results: list[list[Completion] | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            # Seeds are per row (RowSampler), so requests that differ only in their seed share a batch.
            groups.setdefault(request.config.model_dump_json(exclude={"seed"}), []).append(i)
        with self._lock, self._torch.inference_mode():
            for indices in groups.values():
                config = requests[indices[0]].config
                for start in range(0, len(indices), self.batch_size):
                    if cancel is not None and cancel.is_set():
                        raise InterruptedError("generation cancelled")  # nobody waits for the result
                    chunk = indices[start : start + self.batch_size]
                    batch = self._generate_batch([requests[i] for i in chunk], config, cancel)
                    for i, completions in zip(chunk, batch, strict=True):
                        results[i] = completions
        assert all(r is not None for r in results), "every request belongs to exactly one group"
        return results  # type: ignore[return-value]

    def _render(self, request: ChatRequest) -> str:
        return chat_template_text(self._tokenizer, request)

    def _generate_batch(self, requests: list[ChatRequest], config: GenerateConfig,
                        cancel: threading.Event | None = None) -> list[list[Completion]]:
        torch = self._torch
        tok = self._tokenizer
        n = expected_n(requests[0])
        greedy = not config.temperature  # None or 0
        rows_per_request = 1 if greedy else n
        max_new = config.max_tokens or self.default_max_tokens
        enc = tok([self._render(r) for r in requests], return_tensors="pt", padding=True, add_special_tokens=False)
        # Sample k of request r is row r * n + k (each prompt repeated n times in a row).
        enc = {k: v.repeat_interleave(rows_per_request, dim=0).to(self.device) for k, v in enc.items()}
        # Decoding is always "greedy" for generate: when sampling, RowSampler (the last logits processor)
        # leaves each row one token to pick. generate's own sampling would draw every row from one
        # global generator, so a row's draws would depend on the batch.
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": False,
                                  "return_dict_in_generate": True, "output_logits": bool(config.logprobs),
                                  "pad_token_id": tok.pad_token_id}
        if not greedy:
            seeds = [row_seed(r.config.seed, k) if r.config.seed is not None else None
                     for r in requests for k in range(rows_per_request)]
            kwargs["logits_processor"] = [RowSampler(torch, seeds, temperature=config.temperature,
                                                     top_p=config.top_p, device=self.device)]
        if cancel is not None:
            kwargs["stopping_criteria"] = [_StopWhenCancelled(torch, cancel)]
        if config.stop:
            kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        out = self._model.generate(**enc, **kwargs)

        prompt_len = enc["input_ids"].shape[1]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
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
                                                prompt_tokens=int(prompt_tokens[row]), max_new=max_new))
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


def row_seed(seed: int, sample: int) -> int:
    """The ``torch.Generator`` seed of sample ``sample`` (0-based, of ``n``) of a request seeded ``seed``:
    a hash of both, so the samples of one request differ and no two (seed, sample) pairs collide in
    practice. A 60-bit non-negative integer."""
    return int(content_hash({"seed": seed, "sample": sample}, length=15), 16)


class RowSampler:
    """A logits processor that samples each row of a batch with its own ``torch.Generator``.

    Per row and step: softmax of ``scores / temperature`` (in float64), nucleus filtering to the
    smallest set of most likely tokens whose mass reaches ``top_p`` (when set and < 1), then ONE uniform
    draw from the row's generator picks the token by inverse CDF. Every other token is masked to
    ``-inf``, so greedy decoding takes the drawn one. A row consumes exactly one draw per step, whatever
    the batch, so its tokens depend only on its seed and its own logits. ``seeds[i]`` is row ``i``'s
    seed; ``None`` seeds it from torch's global generator.
    """

    def __init__(self, torch: Any, seeds: Sequence[int | None], *, temperature: float, top_p: float | None,
                 device: str) -> None:
        self._torch = torch
        self.temperature = temperature
        self.top_p = top_p
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
            self.generators.append(generator)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self._torch
        probs = torch.softmax(scores.double() / self.temperature, dim=-1)
        if self.top_p is not None and self.top_p < 1:
            ordered, order = probs.sort(dim=-1, descending=True)
            before = ordered.cumsum(dim=-1) - ordered  # the mass of the more likely tokens
            ordered = ordered.masked_fill(before >= self.top_p, 0.0)  # the most likely token always stays
            probs = torch.zeros_like(probs).scatter_(-1, order, ordered)
        cdf = probs.cumsum(dim=-1)
        draws = torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in self.generators])
        # The first token whose cumulative mass exceeds the draw (tokens of mass 0 are never picked).
        picked = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True)
        picked = picked.clamp_(max=probs.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, picked, 0.0)


class _StopWhenCancelled:
    """A stopping criterion that ends every row once ``cancel`` is set (the caller was interrupted)."""

    def __init__(self, torch: Any, cancel: threading.Event) -> None:
        self._torch = torch
        self.cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return self._torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=self._torch.bool,
                                device=input_ids.device)


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
