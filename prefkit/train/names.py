"""Names of trained models, as the study wrote them: one grammar for making them and reading them back.

A trained model's name says what it is (paper-reference §5, §6.1)::

    dpo_<nick>_<kind>_<data>[_beta-<b>]_s<seed>[_<kind>_<data>[_beta-<b>]_s<seed>]

``nick`` is the source model's nickname (``Qwen2.5-7B`` for ``Qwen/Qwen2.5-7B-Instruct``), ``kind`` the
dataset (``safe``, ``help``, ``both``), ``data`` which judge labelled it (``q32``, ``gpt5m``), ``b`` the DPO
beta (left out at the default 0.1) and ``seed`` the split seed. Stages are in training order, e.g.
``dpo_Qwen2.5-7B_help_q32_beta-0.05_s0_safe_q32_beta-0.05_s0``. Any other name is a source model.

``prefkit train`` names its outputs with ``run_name`` and ``prefkit frontier`` reads results folders with
``parse_model_name``, so prefkit's own runs and the study's results read the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

StageKind = Literal["safe", "help", "both"]

DEFAULT_BETA = 0.1
"""The beta a name leaves out (the study's default)."""

KIND_OF_CONFIG: dict[str, StageKind] = {"safety": "safe", "helpfulness": "help", "both": "both"}
"""Dataset config (``prefkit build``'s dataset names) → the stage kind written in model names."""

KIND_LABELS: dict[str, str] = {"safe": "S", "help": "H", "both": "S&H"}
"""How a stage kind is shown in configuration labels (``S,H-0.1``, ``S&H-0.05``)."""

KNOWN_NICKS: dict[str, str] = {
    "Qwen/Qwen2.5-7B-Instruct": "Qwen2.5-7B",
    "meta-llama/Llama-3.1-8B-Instruct": "Llama3.1-8B",
    "microsoft/phi-4": "Phi-4",
}
"""The study's source models and the nicknames its trained models' names carry."""

_STAGE = r"(?P<kind>safe|help|both)_(?P<data>[^_]+)(?:_beta-(?P<beta>\d+(?:\.\d+)?))?_s(?P<seed>\d+)"
_STAGE_RE = re.compile(_STAGE)
_STAGES = _STAGE.replace("?P<kind>", "?:").replace("?P<data>", "?:").replace("?P<beta>", "?:").replace("?P<seed>", "?:")
_TRAINED_RE = re.compile(rf"^dpo_(?P<nick>.+?)_(?P<stages>{_STAGES}(?:_{_STAGES})*)$")


@dataclass(frozen=True)
class Stage:
    """One training stage named in a model name."""

    kind: StageKind
    data: str
    beta: float
    seed: int


@dataclass(frozen=True)
class ModelName:
    """What a model's name says: a source model (no stages) or a trained one."""

    name: str
    nick: str
    stages: tuple[Stage, ...] = ()

    @property
    def trained(self) -> bool:
        return bool(self.stages)

    @property
    def seed(self) -> int | None:
        """The split seed of a trained model (every stage uses the same); ``None`` for a source."""
        return self.stages[0].seed if self.stages else None

    @property
    def betas(self) -> tuple[float, ...]:
        return tuple(s.beta for s in self.stages)

    @property
    def config(self) -> str:
        """The configuration label the study groups by: kinds in training order and beta, e.g. ``S,H-0.1``;
        ``source`` for a source model. The judge that labelled the data and the seed are not part of it."""
        if not self.stages:
            return "source"
        if len(set(self.betas)) == 1:
            return ",".join(KIND_LABELS[s.kind] for s in self.stages) + f"-{_beta_text(self.stages[0].beta)}"
        return ",".join(f"{KIND_LABELS[s.kind]}-{_beta_text(s.beta)}" for s in self.stages)


def _beta_text(beta: float) -> str:
    return f"{beta:g}"


def source_nick(model: str) -> str:
    """The nickname of a source model, from its Hub id, a local path or a results folder name (``/`` → ``_``).

    Example: ``source_nick("Qwen/Qwen2.5-7B-Instruct") == source_nick("Qwen_Qwen2.5-7B-Instruct") == "Qwen2.5-7B"``;
    other models: the last path part without ``-Instruct`` (``/models/tiny`` → ``tiny``).
    """
    for full, nick in KNOWN_NICKS.items():
        if model in (full, full.replace("/", "_")):
            return nick
    return model.rstrip("/").rsplit("/", 1)[-1].removesuffix("-Instruct")


def stage_name(kind: StageKind, data: str, beta: float, seed: int) -> str:
    """One stage's part of a name, e.g. ``help_q32_beta-0.05_s0``."""
    beta_part = "" if beta == DEFAULT_BETA else f"_beta-{_beta_text(beta)}"
    return f"{kind}_{data}{beta_part}_s{seed}"


def run_name(nick: str, stages: list[tuple[StageKind, str, float, int]]) -> str:
    """The name of a trained model: ``dpo_<nick>`` then each ``(kind, data, beta, seed)`` stage in order.

    Raises:
        ValueError: no stages, or a part that would make the name unreadable (``_`` in ``data``).
    """
    if not stages:
        raise ValueError("a trained model has at least one stage")
    name = "_".join([f"dpo_{nick}", *(stage_name(*s) for s in stages)])
    parsed = parse_model_name(name)
    if not parsed.trained or parsed.nick != nick or len(parsed.stages) != len(stages):
        raise ValueError(f"{name!r} would not read back as nick {nick!r} with {len(stages)} stage(s); "
                         "the data tag may not contain '_'")
    return name


def parse_model_name(name: str) -> ModelName:
    """Read a model (folder) name; names that are not ``dpo_...`` trained names are source models.

    Example: ``parse_model_name("dpo_Qwen2.5-7B_safe_q32_s0_help_q32_s0").config == "S,H-0.1"``.
    """
    m = _TRAINED_RE.match(name)
    if m is None:
        return ModelName(name=name, nick=source_nick(name))
    stages = tuple(
        Stage(kind=s["kind"], data=s["data"], beta=float(s["beta"]) if s["beta"] else DEFAULT_BETA,  # type: ignore[arg-type]
              seed=int(s["seed"]))
        for s in _STAGE_RE.finditer(m["stages"])
    )
    return ModelName(name=name, nick=m["nick"], stages=stages)
