"""The dataset card: YAML metadata the Hub understands plus prose, rendered from ``cards/dataset_card.md.j2``.

The metadata is built here as a dict (``card_metadata``) and dumped with PyYAML, so it is always valid YAML;
the template only writes prose around it. What each dataset is, the rule that built it, the recipe, the
agents and judges, the audit's headline numbers and plots, a harmful-content warning and how to load and
train on the data all come from one ``CardContext``.

Checked locally (the Hub's own validation endpoint needs the network): the card parses with
``huggingface_hub.DatasetCard``, its ``configs`` parse with ``datasets``' ``MetadataConfigs``, task categories
are Hub task ids, and ``size_categories`` is one of the Hub's buckets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from prefkit.errors import InputError
from prefkit.publish.layout import data_files_pattern
from prefkit.resources import data_dir

TEMPLATE = "dataset_card.md.j2"

BASE_TAGS = ("dpo", "preference", "safety", "tool-use", "agents", "trl")
"""Tags every prefkit card carries (``extra_tags`` adds to them)."""

HUB_TASK_CATEGORIES = frozenset({
    "text-classification", "token-classification", "table-question-answering", "question-answering",
    "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation",
    "text2text-generation", "fill-mask", "sentence-similarity", "text-to-speech", "text-to-audio",
    "automatic-speech-recognition", "audio-to-audio", "audio-classification", "voice-activity-detection",
    "depth-estimation", "image-classification", "object-detection", "image-segmentation", "text-to-image",
    "image-to-text", "image-to-image", "image-to-video", "unconditional-image-generation",
    "video-classification", "reinforcement-learning", "robotics", "tabular-classification",
    "tabular-regression", "tabular-to-text", "table-to-text", "multiple-choice", "text-ranking",
    "text-retrieval", "time-series-forecasting", "text-to-video", "visual-question-answering",
    "zero-shot-image-classification", "graph-ml", "mask-generation", "zero-shot-object-detection",
    "text-to-3d", "image-to-3d", "image-feature-extraction", "video-text-to-text",
})
"""Task ids the Hub offers as dataset task categories (its task taxonomy, huggingface.js
``packages/tasks/src/pipelines.ts``, minus the ones hidden from datasets)."""

_SIZE_BUCKETS = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                 (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                 (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))

AUDIT_HEADLINES: tuple[tuple[str, str], ...] = (
    ("pairs", "pairs"),
    ("scenarios", "scenarios"),
    ("pairs per scenario, max", "pairs_per_scenario.max"),
    ("pairs per scenario, Gini", "pairs_per_scenario.gini"),
    ("chosen safety, mean", "chosen.safety.mean"),
    ("rejected safety, mean", "rejected.safety.mean"),
    ("chosen helpfulness, mean", "chosen.helpfulness.mean"),
    ("rejected helpfulness, mean", "rejected.helpfulness.mean"),
    ("chosen with no tool call, share", "chosen.no_tool_share"),
    ("chosen that refuse or ask, share", "chosen.refusal_share"),
    ("chosen / rejected length", "length.ratio"),
    ("most pairs one trajectory is chosen in", "reuse.max_chosen_reuse"),
    ("duplicate pairs", "duplicates.duplicate_pairs"),
    ("chosen is safe and helpful, share", "best_of_both.chosen_share"),
    ("dropped by validation", "dropped_by_validation"),
)
"""(label, dotted path into one split of ``audit.json``): the audit numbers the card shows."""


class CardDataset(BaseModel, frozen=True, extra="forbid"):
    """One dataset (one Hub config) of the card."""

    name: str
    """Config name: ``load_dataset(repo, name)``; its files are ``data/<name>/<split>-*.parquet``."""
    strategy: str
    """The pairing strategy (``safety``, ``helpfulness``, ``both``, ``average``)."""
    rule: str
    """The exact rule that built the pairs, in words (``describe_rule`` writes it from a pairing config)."""
    counts: dict[str, int]
    """Rows per split, e.g. ``{"train": 503, "test": 429}``."""
    rendering: str = "react"
    """``react`` (text turns) or ``native`` (tool calls and a ``tools`` column)."""
    audit: dict[str, Any] | None = None
    """This dataset's ``audit.json`` (``prefkit audit``); the card shows its headline numbers."""
    plots: tuple[str, ...] = ()
    """This dataset's plots, as paths inside the dataset folder (``plots/<file>.png``)."""
    fingerprint: str | None = None
    """``prefkit.publish.layout.config_fingerprint`` of this config's files. The card's ``configs`` entry
    carries it in its ``description``, which ``datasets`` hashes into the cache key of a local folder, so a
    rebuilt folder (or another folder of the same name) never loads an older build's cached rows."""

    @property
    def loadable_splits(self) -> list[str]:
        """The splits with rows: the only ones that are laid out and that the card's ``configs`` metadata and
        snippets name, since ``datasets`` fails to load a split whose files hold no rows."""
        return [split for split, n in self.counts.items() if n > 0]

    @field_validator("counts")
    @classmethod
    def _splits_present(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("a dataset needs at least one split")
        return value


class CardContext(BaseModel, frozen=True, extra="forbid"):
    """Everything the dataset card says. Example: see ``tests/test_card_layout.py``."""

    pretty_name: str = Field(min_length=1)
    license: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    """A Hub license id (``mit``, ``apache-2.0``, ``cc-by-4.0``, ``other``...)."""
    datasets: tuple[CardDataset, ...] = Field(min_length=1)
    """The configs, in order; the first is the default config."""
    recipe_yaml: str = ""
    """The recipe that built everything, as YAML text (shown verbatim)."""
    agents: tuple[str, ...] = ()
    """The agents whose trajectories were paired (model and configuration names)."""
    judges: tuple[str, ...] = ()
    """The judge models that scored safety and helpfulness."""
    plots: tuple[str, ...] = ()
    """Plots about the whole build (paths inside the dataset folder)."""
    repo_id: str | None = None
    """Where the dataset is published (used in the loading examples); a placeholder when None."""
    language: tuple[str, ...] = ("en",)
    task_categories: tuple[str, ...] = ("text-generation",)
    extra_tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    """Where the scenarios and trajectories come from, with their licenses (one line each)."""

    @field_validator("task_categories")
    @classmethod
    def _hub_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - HUB_TASK_CATEGORIES)
        if unknown:
            raise ValueError(f"not Hub task categories: {unknown} (e.g. 'text-generation')")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> CardContext:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        return self

    @property
    def loadable(self) -> tuple[CardDataset, ...]:
        """The configs with rows, in order: those the metadata lists (the first is the default config)."""
        return tuple(d for d in self.datasets if d.loadable_splits)

    @property
    def load_example(self) -> tuple[str, str] | None:
        """(config, split) the "Load it" snippet shows: the default config and its train split, else its first
        split with rows; None when no config has rows."""
        if not self.loadable:
            return None
        first = self.loadable[0]
        return first.name, "train" if "train" in first.loadable_splits else first.loadable_splits[0]

    @property
    def train_example(self) -> str | None:
        """The config the "Train on it" snippet trains on: the first one with train rows (None if none has)."""
        return next((d.name for d in self.loadable if "train" in d.loadable_splits), None)


def cards_dir() -> Path:
    """The repository's ``cards/`` folder of templates."""
    try:
        folder = data_dir("cards")
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from exc
    if not (folder / TEMPLATE).is_file():
        raise InputError(f"card template {TEMPLATE} not found; prefkit's cards/ folder is missing "
                         "(install prefkit from its source tree)", path=folder)
    return folder


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a number of examples (``n<1K``, ``1K<n<10K``, ...)."""
    for limit, label in _SIZE_BUCKETS:
        if rows < limit:
            return label
    return "n>1T"


def card_metadata(ctx: CardContext) -> dict[str, Any]:
    """The card's YAML metadata. ``size_categories`` counts the largest config (train + test): each config
    is a dataset on its own, and they share trajectories."""
    largest = max(sum(d.counts.values()) for d in ctx.datasets)
    tags = list(dict.fromkeys((*BASE_TAGS, *ctx.extra_tags)))
    return {
        "pretty_name": ctx.pretty_name,
        "license": ctx.license,
        "language": list(ctx.language),
        "task_categories": list(ctx.task_categories),
        "tags": tags,
        "size_categories": [size_category(largest)],
        "configs": [
            {
                "config_name": d.name,
                "data_files": [{"split": split, "path": data_files_pattern(d.name, split)}
                               for split in d.loadable_splits],
                **({"default": True} if i == 0 else {}),
                # `description` is a BuilderConfig field: `datasets` hashes it into the cache key of a local
                # folder (see CardDataset.fingerprint); the Hub passes it to the builder unchanged.
                **({"description": f"{d.strategy} pairs; data fingerprint {d.fingerprint[:16]}"}
                   if d.fingerprint else {}),
            }
            for i, d in enumerate(ctx.loadable)
        ],
    }


def render_card(ctx: CardContext) -> str:
    """The card's text: ``---`` YAML metadata ``---`` then the prose of ``cards/dataset_card.md.j2``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(cards_dir()),
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly, not as an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    metadata = yaml.safe_dump(card_metadata(ctx), sort_keys=False, allow_unicode=True, width=1000)
    body = env.get_template(TEMPLATE).render(
        ctx=ctx,
        repo=ctx.repo_id or "<user>/<dataset>",
        audits={d.name: audit_table(d.audit) for d in ctx.datasets if d.audit},
        overlaps={d.name: _dig(d.audit, "train_test_overlap") for d in ctx.datasets if d.audit},
        parse_failures={d.name: _fmt(_dig(d.audit, "run.parse_failure_rate")) for d in ctx.datasets if d.audit},
    )
    return f"---\n{metadata}---\n\n{body.lstrip()}"


# Prose helpers ------------------------------------------------------------------------------------


def _dig(data: Mapping[str, Any] | None, dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value) or value.is_integer():
            return str(int(value)) if math.isfinite(value) else str(value)
        return f"{value:.2g}" if abs(value) < 0.001 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def audit_table(audit: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one ``audit.json`` (``AUDIT_HEADLINES``) as ``{"splits": [...], "rows":
    [(label, [value per split])]}``, values formatted for Markdown; missing ones show as a dash."""
    splits = [s for s in ("train", "test", "all") if isinstance(_dig(audit, f"splits.{s}"), Mapping)]
    rows = [(label, [_fmt(_dig(audit, f"splits.{s}.{path}")) for s in splits]) for label, path in AUDIT_HEADLINES]
    return {"splits": splits, "rows": rows}


def describe_rule(config: Mapping[str, Any]) -> str:
    """The rule that built a dataset, in words, from a pairing config (``pairing.json``'s ``config``).

    Documentation only: the predicates themselves live in ``prefkit.pairing``.
    """
    strategy = config.get("strategy")
    gap, floor = _fmt(config.get("min_gap", 2)), _fmt(config.get("min_chosen", 2))
    first = config.get("first_metric", "helpfulness")
    second = "safety" if first == "helpfulness" else "helpfulness"
    base = ("Within each scenario, every two trajectories (whatever agent produced them) are a candidate pair. ")
    if strategy in ("safety", "helpfulness"):
        text = (base + f"The one with the higher {strategy} score is chosen; the pair is kept when the two "
                f"scores differ by at least {gap} and the chosen score is at least {floor}.")
    elif strategy == "both":
        text = (base + f"The one with the higher {first} score is chosen; the pair is kept when, on {first}, "
                f"the gap is at least {gap} and the chosen score at least {floor}, and, on {second} alone, the "
                f"same chosen trajectory also scores higher by at least {gap} with at least {floor}: the chosen "
                "side is both safer and more helpful.")
    elif strategy == "average":
        text = (base + f"The one with the higher {first} score is chosen; the pair is kept when, on {first}, "
                f"the gap is at least {gap} and the chosen score at least {floor}, and the mean of the two "
                f"metrics is also higher on the chosen side, by at least {gap}, and at least {floor}.")
    else:
        raise InputError(f"unknown pairing strategy {strategy!r}", field="strategy")
    extras = []
    if config.get("ties") == "second_metric":
        extras.append("pairs tied on the first metric are decided by the other metric")
    if config.get("safety_floor") is not None:
        extras.append(f"the chosen trajectory's safety must be at least {_fmt(config['safety_floor'])}")
    if config.get("dedup"):
        extras.append("repeated trajectories of a scenario were dropped before pairing")
    if config.get("max_chosen_reuse") is not None:
        extras.append(f"one trajectory is chosen in at most {config['max_chosen_reuse']} pairs")
    if config.get("max_pairs_per_scenario") is not None:
        extras.append(f"at most {config['max_pairs_per_scenario']} pairs per scenario (largest margins first)")
    if extras:
        text += " Beyond the study: " + "; ".join(extras) + "."
    if config.get("split_rule", "study") == "study":
        text += (f" Train and test are split by scenario with the study's rule (seed {config.get('split_seed', 0)}):"
                 " half of the scenarios are test, and no scenario is in both.")
    else:
        text += (f" Train and test are split by scenario: a seeded shuffle (seed {config.get('split_seed', 0)}) puts "
                 f"{_fmt(config.get('test_fraction', 0.5))} of the scenarios in test; no scenario is in both.")
    return text
