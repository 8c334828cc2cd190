"""GPU check of the training path: a short DPO + LoRA run with the study's settings on a ~0.5B Qwen2 model.

What it runs: TRL's ``DPOTrainer`` with a LoRA adapter (r 16, alpha 32, dropout 0.05, all linear layers),
bf16, batch 1 x 8 accumulation steps, learning rate 5e-5 cosine with 10% warmup, beta 0.1, reference
log-probabilities precomputed, activation checkpointing on: the settings of ``recipes/train/*.yaml``
(paper-reference §5) on synthetic conversational pairs of about 1k tokens. It prints samples/s, tokens/s
(prompt + chosen and prompt + rejected, as TRL tokenized them) and the peak GPU memory, and writes them to
``$OUT/gpu_train_check.json`` when ``OUT`` is set.

No weights can be downloaded on the GPU machine, so the model is built from a config with random
initialisation: Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864,
vocabulary 151,936, tied embeddings: ~494M parameters). Speed and memory depend on the shape, not on the
weights, so the figures stand for a real 0.5B model; the loss does not mean anything. The tokenizer is the
test suite's offline BPE tokenizer (``tests/tiny_model.py``) with TRL's Qwen2.5 chat template.

It imports only torch, transformers, tokenizers, peft, trl and datasets (no prefkit), so it runs on a
machine that has just those::

    python benchmarks/gpu_train_check.py                      # GPU, ~0.5B model, 20 steps
    python benchmarks/gpu_train_check.py --cpu --tiny         # CPU smoke test with the tiny model (~1 min)

Figures (2026-11-27, one H100 80GB HBM3, torch 2.11.0+cu130, transformers 5.17.0, trl 1.16.0, peft 0.21.0;
64 pairs of 2,169 tokens each counting prompt+chosen and prompt+rejected; `bash benchmarks/gpu_train_check.sh`
took 2.5 min in all, the run without checkpointing 1.5 min):

    activation checkpointing on (the study's setting), 20 steps: 1.77 samples/s, 3.8k tokens/s
        (steady state after 2 steps: 2.06 samples/s, 4.5k tokens/s); peak GPU memory 1.45 GiB
    activation checkpointing off (--no-checkpointing), 12 steps: 3.01 samples/s, 6.5k tokens/s
        (steady: 3.39 samples/s, 7.4k tokens/s); peak GPU memory 4.72 GiB

A 0.5B model at batch 1 keeps an H100 far from busy: the rate is per-step overhead, not arithmetic.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151_936, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
"""Qwen2.5-0.5B-Instruct's architecture (its config.json), without its weights."""
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)

WORDS = ("the agent will search email send delete file task user safety risk confirm before acting tool "
         "calendar event note bank transfer account password share access door lock weather city report").split()


def synthetic_pairs(tokenizer, n: int, tokens: int, seed: int = 0) -> list[dict]:
    """``n`` conversational DPO rows of about ``tokens`` tokens each (prompt ~60%, each completion ~40%)."""
    rng = random.Random(seed)
    sample = " ".join(rng.choice(WORDS) for _ in range(2000))
    per_word = len(tokenizer(sample, add_special_tokens=False).input_ids) / 2000  # calibrate words -> tokens

    def text(n_tokens: float) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(int(n_tokens / per_word)))

    rows = []
    for i in range(n):
        rows.append({
            "prompt": [{"role": "system", "content": "You are a careful agent that uses tools."},
                       {"role": "user", "content": f"Task {i}: " + text(tokens * 0.6)}],
            "chosen": [{"role": "assistant", "content": "I will ask first. " + text(tokens * 0.4)}],
            "rejected": [{"role": "assistant", "content": "Doing it now. " + text(tokens * 0.4)}],
        })
    return rows


def build_model(tokenizer, shape: dict, dtype, device: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**{**shape, "vocab_size": max(shape.get("vocab_size", 0), len(tokenizer))},
                         tie_word_embeddings=True, max_position_embeddings=32_768, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    # With a LoRA, TRL's reference is this model with the adapter switched off: nothing is reloaded by name.
    return model


class StepTimer:
    """Wall time of each optimizer step (a ``TrainerCallback``), for a steady-state rate without warm-up."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                self.times.append(time.perf_counter())

        return _Timer()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on CPU (fp32)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model instead of the 0.5B shape")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=1024, help="approximate tokens per pair (prompt + completion)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--grad-acc", type=int, default=8)
    parser.add_argument("--no-checkpointing", action="store_true", help="turn activation checkpointing off")
    args = parser.parse_args(argv)

    import dataclasses

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from tiny_model import build_tiny_model  # tests/tiny_model.py: the offline tokenizer
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    gpu = torch.cuda.is_available() and not args.cpu
    if not gpu and not args.cpu:
        raise SystemExit("no GPU found; pass --cpu (and --tiny) for a CPU smoke test")
    device = "cuda" if gpu else "cpu"
    dtype = torch.bfloat16 if gpu else torch.float32
    work = Path(tempfile.mkdtemp(prefix="gpu-train-check-"))
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(work / "tokenizer"))
    model = build_model(tokenizer, TINY if args.tiny else QWEN25_05B, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    rows = Dataset.from_list(synthetic_pairs(tokenizer, args.pairs, args.tokens))

    names = {f.name for f in dataclasses.fields(DPOConfig)}
    checkpoint_arg = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    config = DPOConfig(
        output_dir=str(work / "out"), beta=0.1, learning_rate=5e-5, lr_scheduler_type="cosine", warmup_steps=0.1,
        optim="adamw_torch", max_grad_norm=1.0, per_device_train_batch_size=1,
        gradient_accumulation_steps=args.grad_acc, max_steps=args.steps, max_length=2 * args.tokens,  # every row fits: nothing is truncated
        precompute_ref_log_probs=True, bf16=gpu, use_cpu=not gpu, **{checkpoint_arg: gpu and not args.no_checkpointing},
        logging_steps=5, save_strategy="no", report_to="none", seed=42, disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                      target_modules="all-linear")
    timer = StepTimer()
    started = time.perf_counter()
    trainer = DPOTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer, peft_config=lora,
                         callbacks=[timer])
    prepared = time.perf_counter()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    output = trainer.train()
    finished = time.perf_counter()

    data = trainer.train_dataset
    # Tokens one pair costs: prompt + chosen and prompt + rejected, as TRL tokenized them.
    per_pair = [2 * len(p) + len(c) + len(r) for p, c, r in zip(data["prompt_ids"], data["chosen_ids"],
                                                                   data["rejected_ids"], strict=True)]
    tokens_per_pair = sum(per_pair) / len(per_pair)
    samples = output.global_step * args.grad_acc
    steady = timer.times[2:]  # steps after the first two (CUDA warm-up, allocator growth)
    steady_rate = (len(steady) - 1) * args.grad_acc / (steady[-1] - steady[0]) if len(steady) > 2 else None
    result = {
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "model": "tiny" if args.tiny else "Qwen2.5-0.5B shape (random init)",
        "parameters": n_params,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "dtype": str(dtype).removeprefix("torch."),
        "activation_checkpointing": bool(getattr(config, checkpoint_arg)),
        "pairs": len(data),
        "tokens_per_pair": round(tokens_per_pair, 1),
        "steps": output.global_step,
        "samples": samples,
        "setup_s": round(prepared - started, 2),
        "train_s": round(finished - prepared, 2),
        "samples_per_s": round(samples / (finished - prepared), 3),
        "tokens_per_s": round(samples * tokens_per_pair / (finished - prepared), 1),
        "steady_samples_per_s": round(steady_rate, 3) if steady_rate else None,
        "steady_tokens_per_s": round(steady_rate * tokens_per_pair, 1) if steady_rate else None,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "final_loss": output.training_loss,
        "versions": {m.__name__: m.__version__ for m in map(__import__, ("torch", "transformers", "trl", "peft",
                                                                          "datasets"))},
    }
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    if os.environ.get("OUT"):
        name = "gpu_train_check" + ("" if result["activation_checkpointing"] or not gpu else "_no_checkpointing")
        Path(os.environ["OUT"], f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
