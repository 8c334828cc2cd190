"""``prefkit train``: a recipe in, a trained model out.

Every stage's rows are loaded and checked before any training starts (a leak or a bad row fails in
seconds, not after the first stage). Then each stage trains a fresh LoRA on the model so far; between
stages the LoRA is merged, so a sequential recipe (safety then helpfulness) trains its second adapter on
the first stage's merged model, as the study did.

Layout of ``OUT/<name>/`` (``<name>`` as in ``prefkit.train.names``, e.g. ``dpo_Qwen2.5-7B_safe_q32_s0``)::

    stages/<i>-<kind>/adapter/     the stage's LoRA adapter (+ tokenizer), loadable with peft
    stages/<i>-<kind>/merged/      the model after stage i (only before another stage)
    model/                         the final model, every adapter merged (``save_merged``)
    train.json                     recipe, rows kept/dropped, train scenarios, metrics, versions; written last

``train.json`` is written last: a folder without it is a killed run, which the next ``prefkit train``
replaces; one with it is finished and is replaced only with ``force``.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from prefkit.errors import InputError
from prefkit.store import write_json_atomic
from prefkit.train.data import check_no_leakage, dataset_split, drop_too_long, load_split
from prefkit.train.recipe import TrainRecipe, TrainStage

if TYPE_CHECKING:
    from datasets import Dataset

RESULT_FILE = "train.json"
MODEL_DIR = "model"


class StageResult(BaseModel):
    """What one stage trained on and how it went."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """The model's name after this stage."""
    config: str
    dataset: str
    rows: int
    """Train rows in the dataset."""
    kept: int
    """Rows trained on (within ``max_length``)."""
    dropped_too_long: int
    max_tokens: int
    """The longest kept row (prompt + completion) in tokens."""
    scenarios: int
    """Distinct train scenarios among the kept rows."""
    epochs: float
    steps: int
    train_loss: float | None
    runtime_s: float
    samples_per_second: float | None
    adapter: str
    log_history: tuple[dict[str, Any], ...] = ()


class TrainResult(BaseModel):
    """A finished ``prefkit train`` run (also written to ``OUT/<name>/train.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    out: str
    model: str | None
    """The merged final model folder (``None`` without ``save_merged``)."""
    device: str
    stages: tuple[StageResult, ...]
    recipe: dict[str, Any]
    versions: dict[str, str]


@dataclass(frozen=True)
class _Prepared:
    """A stage's rows, ready for TRL, and the validation report they came from."""

    stage: TrainStage
    dataset: str
    rows: Dataset
    report: Any


def prepare_stage_rows(recipe: TrainRecipe, stage: TrainStage, tokenizer: Any) -> _Prepared:
    """Load a stage's train rows, refuse leakage into the evaluation split, drop rows over ``max_length``."""
    dataset = recipe.stage_dataset(stage)
    train = load_split(dataset, stage.config, "train")
    test = load_split(dataset, stage.config, "test", required=False)
    where = f"{dataset} [{stage.config}]"
    check_no_leakage(train, test=test, split_seed=recipe.split_seed, suite_size=recipe.suite_size, where=where,
                     split=dataset_split(dataset, stage.config))
    kept, report = drop_too_long(train, tokenizer, max_length=recipe.max_length, where=where)
    return _Prepared(stage, dataset, kept, report)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("prefkit", "torch", "transformers", "trl", "peft", "datasets"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "missing"
    return out


def _target(recipe: TrainRecipe, out: str | Path | None, force: bool) -> Path:
    target = (Path(out if out is not None else recipe.output_dir) / recipe.name()).resolve()
    if target.exists() and not target.is_dir():
        raise InputError("the output path exists and is not a folder", path=target)
    if (target / RESULT_FILE).is_file() and not force:
        raise InputError(f"{recipe.name()} is already trained here; pass --force to train it again", path=target)
    if target.exists():
        shutil.rmtree(target)  # a finished run with force, or what a killed run left
    return target


def train(recipe: TrainRecipe, *, out: str | Path | None = None, max_steps: int | None = None,
          force: bool = False) -> TrainResult:
    """Train ``recipe``'s stages in order; returns what was trained (also in ``OUT/<name>/train.json``).

    Args:
        recipe: the training recipe (``load_train_recipe``).
        out: the folder that receives ``<name>/`` (default: ``recipe.output_dir``).
        max_steps: stop each stage after this many optimizer steps (overrides the recipe's).
        force: replace a finished run of the same name.

    Raises:
        InputError: a dataset that is missing, leaks evaluation scenarios, holds invalid rows or no row
            within ``max_length``; a model or tokenizer that does not load; a finished run without ``force``.
    """
    from prefkit.train.dpo import cuda_available, load_tokenizer, merge_adapter, train_stage

    if max_steps is not None:
        recipe = recipe.model_copy(update={"max_steps": max_steps})
    from prefkit.backends.local_models import resolve_local_model

    # a packaged alias (smollm2-135m-instruct) loads from its converted folder; the name keeps the alias
    source = resolve_local_model(recipe.source_model)
    tokenizer = load_tokenizer(source)
    prepared = [prepare_stage_rows(recipe, stage, tokenizer) for stage in recipe.stages]
    target = _target(recipe, out, force)
    gpu = cuda_available()
    base: str | Path = source
    merged: Path | None = None
    results: list[StageResult] = []
    for i, item in enumerate(prepared, start=1):
        last = i == len(prepared)
        stage_dir = target / "stages" / f"{i}-{item.stage.stage_kind()}"
        started = time.perf_counter()
        trainer = train_stage(base, tokenizer, item.rows, recipe, item.stage, stage_dir / "trainer", gpu=gpu)
        runtime = time.perf_counter() - started
        trainer.save_model(str(stage_dir / "adapter"))
        results.append(_stage_result(recipe, item, trainer, i, runtime, stage_dir / "adapter"))
        if not last or recipe.save_merged:
            merged = merge_adapter(trainer.model, tokenizer, (target / MODEL_DIR if last else stage_dir / "merged").resolve())
            base = merged
        shutil.rmtree(stage_dir / "trainer", ignore_errors=True)  # nothing is checkpointed there
        del trainer
        _free_memory(gpu)
    result = TrainResult(
        name=recipe.name(), out=str(target), model=str(target / MODEL_DIR) if recipe.save_merged else None,
        device="cuda" if gpu else "cpu", stages=tuple(results), recipe=recipe.model_dump(mode="json"),
        versions=_versions(),
    )
    write_json_atomic(target / RESULT_FILE, result.model_dump(mode="json"))
    return result


def _stage_result(recipe: TrainRecipe, item: _Prepared, trainer: Any, index: int, runtime: float,
                  adapter: Path) -> StageResult:
    history = tuple(trainer.state.log_history)
    summary = next((h for h in reversed(history) if "train_runtime" in h), {})
    return StageResult(
        name=recipe.name(index),
        config=item.stage.config,
        dataset=item.dataset,
        rows=item.report.rows,
        kept=item.report.kept,
        dropped_too_long=item.report.dropped_too_long,
        max_tokens=max((item.report.row_tokens[i] for i in item.report.kept_indices()), default=0),
        scenarios=len(set(item.rows["scenario_id"])),
        epochs=item.stage.num_epochs(),
        steps=trainer.state.global_step,
        train_loss=summary.get("train_loss"),
        runtime_s=round(runtime, 3),
        samples_per_second=summary.get("train_samples_per_second"),
        adapter=str(adapter),
        log_history=history,
    )


def _free_memory(gpu: bool) -> None:
    gc.collect()
    if gpu:
        import torch

        torch.cuda.empty_cache()
