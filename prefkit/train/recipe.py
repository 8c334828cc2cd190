"""The training recipe: one YAML file that says what ``prefkit train`` trains, validated by ``TrainRecipe``.

Defaults are the study's settings (paper-reference §5): DPO beta 0.1, learning rate 5e-5 with a cosine
schedule and 10% warmup, batch 1 x 8 accumulation steps, 1 epoch (3 for the best-of-both dataset), LoRA
r 16 / alpha 32 / dropout 0.05 on every linear layer, 8,192 tokens at most (longer pairs are dropped),
bf16 on a GPU, seed 42. A recipe with two stages trains them in turn: the first LoRA is merged into the
model and a fresh LoRA is trained on the second dataset, with the same split seed.

Loading reads YAML with ``yaml.SafeLoader`` and applies ``--set key.path=value`` overrides the way build
recipes do (``prefkit.recipe.parse_override`` / ``apply_override``); a validation error names the field
and the file's line. Example (``recipes/train/safe-help.yaml``)::

    source_model: Qwen/Qwen2.5-7B-Instruct
    dataset: out/paper-q32          # a `prefkit build` output, a `prefkit pair` folder or a Hub dataset id
    data_tag: q32
    stages: [{config: safety}, {config: helpfulness}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefkit.train.names import KIND_OF_CONFIG, StageKind, run_name, source_nick


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class LoraSection(_Section):
    """The LoRA adapter trained in each stage (peft ``LoraConfig``)."""

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | tuple[str, ...] = "all-linear"
    """``all-linear`` (the study; for Qwen/Llama/Phi the q, k, v, o, gate, up and down projections) or names."""


class TrainStage(_Section):
    """One DPO stage: which dataset config it trains on."""

    config: str
    """The dataset's config (``safety``, ``helpfulness``, ``both``: the names ``prefkit build`` gives)."""
    dataset: str | None = None
    """Where the config lives; default: the recipe's ``dataset``."""
    kind: StageKind | None = None
    """How the stage is named in the output (``safe``/``help``/``both``); default: from ``config``."""
    epochs: float | None = Field(default=None, gt=0)
    """Default: 3 for the best-of-both dataset (it is small), else 1 (the study's rule)."""

    def stage_kind(self) -> StageKind:
        if self.kind is not None:
            return self.kind
        if self.config not in KIND_OF_CONFIG:
            raise ValueError(f"config {self.config!r} has no study kind; set the stage's `kind` (safe, help or both)")
        return KIND_OF_CONFIG[self.config]

    def num_epochs(self) -> float:
        return self.epochs if self.epochs is not None else (3.0 if self.stage_kind() == "both" else 1.0)


class TrainRecipe(_Section):
    """What ``prefkit train`` trains: a source model, one or two DPO stages, the study's settings."""

    source_model: str = "Qwen/Qwen2.5-7B-Instruct"
    """A local model folder, a Hub id or a packaged alias (``smollm2-135m-instruct``, ``prefkit.backends.local_models``);
    its tokenizer, with a chat template, is used too."""
    source_nick: str | None = None
    """The model's nickname in output names; default: ``prefkit.train.names.source_nick(source_model)``."""
    dataset: str | None = None
    """Default dataset of every stage: a ``prefkit build`` output folder (``data/<config>/...``), a
    ``prefkit pair`` folder (``train.parquet``) or a Hub dataset id."""
    data_tag: str = Field(default="q32", pattern=r"^[A-Za-z0-9.-]+$")
    """Which judge labelled the data, as output names carry it (``q32``, ``gpt5m``)."""
    stages: tuple[TrainStage, ...] = Field(min_length=1)
    beta: float = Field(default=0.1, gt=0)
    """DPO beta of every stage (the study: 0.1, or 0.05 for its ``_beta-0.05`` runs)."""
    split_seed: int = 0
    """The split seed the dataset was built with and the model will be evaluated with: training refuses
    rows of scenarios that are test scenarios for this seed."""
    suite_size: int = Field(default=144, ge=2)
    """Scenarios in the suite the split was drawn from (ToolEmu: 144); the study rule shuffles 0..N-1. Used only
    for a dataset that records no split of its own (``prefkit build`` folders record theirs)."""
    learning_rate: float = Field(default=5e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    batch_size: int = Field(default=1, ge=1)
    """Per device; the effective batch is ``batch_size * gradient_accumulation_steps`` (the study: 8)."""
    gradient_accumulation_steps: int = Field(default=8, ge=1)
    max_length: int = Field(default=8192, ge=1)
    """Pairs whose prompt + chosen or prompt + rejected is longer are dropped before training, never cut."""
    lora: LoraSection = LoraSection()
    seed: int = 42
    """Training seed (initialisation, data order); not the split seed."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto``: bf16 on a GPU, fp32 on CPU."""
    gradient_checkpointing: bool | None = None
    """``None``: on with a GPU (the study), off on CPU (it only slows small models down)."""
    attn_implementation: str | None = None
    """e.g. ``flash_attention_2`` (the study) where installed; default: transformers' choice (sdpa)."""
    precompute_ref_log_probs: bool = True
    """Compute the reference log-probabilities once before training (the study)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop each stage after this many optimizer steps (CPU smoke runs; ``--max-steps``)."""
    logging_steps: int = Field(default=10, ge=1)
    output_dir: str = "dpo_output"
    """Each trained model goes to ``<output_dir>/<name>`` (``--out`` overrides)."""
    save_merged: bool = True
    """Also save the final model with every adapter merged (``<name>/model``), which any backend loads."""

    @model_validator(mode="after")
    def _check(self) -> TrainRecipe:
        for i, stage in enumerate(self.stages):
            stage.stage_kind()
            if (stage.dataset or self.dataset) is None:
                raise ValueError(f"stage {i} has no dataset: set `dataset` (or the stage's own)")
        self.name()  # a nick or tag that cannot make a readable name fails here
        return self

    def nick(self) -> str:
        return self.source_nick or source_nick(self.source_model)

    def stage_dataset(self, stage: TrainStage) -> str:
        return stage.dataset or self.dataset  # type: ignore[return-value]  # checked above

    def name(self, upto: int | None = None) -> str:
        """The trained model's name (``dpo_<nick>_<kind>_<data>[_beta-b]_s<seed>...``), after ``upto`` stages."""
        stages = self.stages[: upto if upto is not None else len(self.stages)]
        return run_name(self.nick(), [(s.stage_kind(), self.data_tag, self.beta, self.split_seed) for s in stages])


def load_train_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
    """Read, override (``key.path=value``, e.g. ``source_model=/models/x`` or ``stages.0.epochs=2``) and
    validate a training recipe.

    Raises:
        InputError: missing file, invalid YAML, or a field that fails validation (naming the field and line).
    """
    from prefkit.recipe import load_yaml_model

    return load_yaml_model(path, TrainRecipe, overrides, what="training recipe")
