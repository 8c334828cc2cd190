"""The TRL side of a training stage: the recipe → ``DPOConfig`` + ``LoraConfig`` → ``DPOTrainer``, and merging.

Settings that TRL 1.16 / transformers 5 would otherwise pick differently (environment.md §4): bf16 is only
asked for on a GPU (``DPOConfig``'s default bf16 fails on CPU); activation (gradient) checkpointing is off
on CPU; the warmup ratio is passed as a float ``warmup_steps`` (transformers 5 dropped ``warmup_ratio``);
the reference model is the policy with its adapter disabled (``peft_config`` given, no ``ref_model``),
so TRL never reloads a reference from the model's name; nothing is checkpointed during a stage (the
adapter is saved once at the end) and nothing is reported to trackers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset

    from prefkit.train.recipe import TrainRecipe, TrainStage


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def uses_bf16(recipe: TrainRecipe, gpu: bool) -> bool:
    return recipe.precision == "bf16" or (recipe.precision == "auto" and gpu)


def load_tokenizer(model: str) -> Any:
    """The source model's tokenizer (a local folder or a Hub id), with a pad token (its eos if it has none).

    Raises:
        InputError: it cannot be loaded or has no chat template (DPO on message rows needs one).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the tokenizer of {model!r} ({exc})", field="source_model") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"the tokenizer of {model!r} has no chat template; DPO on message rows needs one",
                         field="source_model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str | Path, recipe: TrainRecipe, gpu: bool) -> Any:
    """The model to train, in bf16 or fp32, with its KV cache off (training never uses it)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if uses_bf16(recipe, gpu) else torch.float32}
    if recipe.attn_implementation:
        kwargs["attn_implementation"] = recipe.attn_implementation
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(model), **kwargs)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the model {str(model)!r} ({exc})", field="source_model") from exc
    loaded.config.use_cache = False
    return loaded


def lora_config(recipe: TrainRecipe) -> Any:
    from peft import LoraConfig

    targets = recipe.lora.target_modules
    return LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=targets if isinstance(targets, str) else list(targets))


def dpo_config(recipe: TrainRecipe, stage: TrainStage, output_dir: Path, *, gpu: bool) -> Any:
    """TRL's ``DPOConfig`` for one stage of ``recipe``."""
    from trl import DPOConfig

    checkpointing = recipe.gradient_checkpointing if recipe.gradient_checkpointing is not None else gpu
    # transformers 5.2x renamed gradient_checkpointing to activation_checkpointing; older 5.x has only the old name.
    names = {f.name for f in dataclasses.fields(DPOConfig)}
    checkpoint_arg = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return DPOConfig(
        output_dir=str(output_dir),
        beta=recipe.beta,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=float(recipe.warmup_ratio),  # a float below 1 is a share of the total steps
        optim="adamw_torch",
        max_grad_norm=1.0,
        num_train_epochs=stage.num_epochs(),
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        max_length=recipe.max_length,
        precompute_ref_log_probs=recipe.precompute_ref_log_probs,
        bf16=uses_bf16(recipe, gpu),
        use_cpu=not gpu,
        **{checkpoint_arg: checkpointing},
        logging_steps=recipe.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=recipe.seed,
    )


def train_stage(model: str | Path, tokenizer: Any, rows: Dataset, recipe: TrainRecipe, stage: TrainStage,
                work_dir: Path, *, gpu: bool) -> Any:
    """Train a fresh LoRA on ``model`` with ``rows``; returns the finished ``DPOTrainer`` (its ``model`` is the
    PEFT model, its ``state.log_history`` the logged metrics)."""
    from transformers import set_seed
    from trl import DPOTrainer

    set_seed(recipe.seed)  # before the adapter is created, so its initialisation is reproducible
    trainer = DPOTrainer(
        model=load_model(model, recipe, gpu),
        args=dpo_config(recipe, stage, work_dir, gpu=gpu),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=lora_config(recipe),
    )
    trainer.train()
    return trainer


def merge_adapter(peft_model: Any, tokenizer: Any, out: Path) -> Path:
    """Fold a trained LoRA into its base weights (``merge_and_unload``) and save the plain model to ``out``.

    The PEFT model is changed in place: use it for nothing else afterwards.
    """
    merged = peft_model.merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
