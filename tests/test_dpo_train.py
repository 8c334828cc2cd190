"""TRL's DPOTrainer trains on the pairer's rows exactly as written (both renderings), on CPU.

The rows are read from the pairer's Parquet file with ``datasets.load_dataset`` and handed to
DPOTrainer with no conversion: metadata columns, the ``Json`` message feature and the native
``tools`` column included. Only a selection is made (the shortest rows, so a few steps on CPU stay
quick; TRL prepares all of them, two pairs are trained on), and ``max_length`` covers every selected
row, so TRL truncates nothing. The token counts that ``prefkit validate`` reports must be the ones
DPOTrainer computes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prefkit.pairing.validate import (
    TRL_KEYS,
    TokenCounter,
    check_pair_row,
    load_tokenizer,
    validate_pair_rows,
)

N_ROWS = 16


def _shortest_rows(dataset, n: int) -> list[int]:
    # Characters are a cheap stand-in for tokens when choosing which rows to tokenize.
    sizes = [sum(len(m["content"]) for key in TRL_KEYS for m in row[key]) for row in dataset]
    return sorted(sorted(range(len(sizes)), key=sizes.__getitem__)[:n])


def dpo_config(out: Path, max_length: int, *, max_steps: int = 2):
    """A DPOConfig that trains ``max_steps`` steps of batch 1 on CPU and saves nothing (also used by other tests)."""
    from trl import DPOConfig

    # The CPU settings that work with trl 1.16 (environment.md §4): bf16 off, no activation (gradient)
    # checkpointing (slow on CPU; `gradient_checkpointing` is its deprecated name), nothing saved or reported.
    return DPOConfig(
        output_dir=str(out), per_device_train_batch_size=1, max_steps=max_steps, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", report_to="none", bf16=False, use_cpu=True, activation_checkpointing=False,
        max_length=max_length, seed=0,
    )


@pytest.mark.slow
@pytest.mark.parametrize("rendering", ["react", "native"])
def test_dpo_trains_on_the_rows_as_the_pairer_wrote_them(rendering, q32_pairs, tiny_model_dir, tmp_path):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    rows_file = q32_pairs(strategy="safety", rendering=rendering) / "train.parquet"
    written = load_dataset("parquet", data_files=str(rows_file), split="train", cache_dir=str(tmp_path / "cache"))
    assert ("tools" in written.column_names) == (rendering == "native")
    selected = written.select(_shortest_rows(written, N_ROWS))
    tokenizer = load_tokenizer(tiny_model_dir)
    report = validate_pair_rows(selected, tokenizer=tokenizer, max_length=100_000)
    assert report.ok and report.rows == N_ROWS
    tokens = TokenCounter(tokenizer)
    lengths = [check_pair_row(row, tokenizer, tokens=tokens) for row in selected]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if rendering == "react":
        # The study's setup: a LoRA adapter; the reference is the policy with the adapter disabled.
        from peft import LoraConfig

        extra = {"peft_config": LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")}
    else:
        # Full fine-tuning: pass the reference explicitly, or TRL reloads one from the model's name.
        extra = {"ref_model": AutoModelForCausalLM.from_pretrained(tiny_model_dir)}
    trainer = DPOTrainer(model=model, args=dpo_config(tmp_path / "out", report.max_tokens), train_dataset=selected,
                         processing_class=tokenizer, **extra)

    # TRL kept every row and tokenized each exactly as the validator counted it.
    prepared = trainer.train_dataset
    assert len(prepared) == N_ROWS
    for row, counted in zip(prepared, lengths, strict=True):
        assert len(row["prompt_ids"]) == counted.prompt
        assert len(row["prompt_ids"]) + len(row["chosen_ids"]) == counted.prompt_chosen
        assert len(row["prompt_ids"]) + len(row["rejected_ids"]) == counted.prompt_rejected
    assert report.max_tokens == max(n.longest for n in lengths)

    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(losses) == 2
    # Policy and reference start equal, so the first DPO loss is exactly log 2.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert math.isfinite(result.training_loss)
