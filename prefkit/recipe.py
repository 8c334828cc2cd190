"""The build recipe: one YAML file that says what ``prefkit build`` makes, validated by ``Recipe``.

Loading uses ``yaml.SafeLoader`` only (a recipe never executes code). A validation error names the field
path and the recipe file's line, e.g. ``recipes/paper-q32.yaml:14 [datasets.0.min_gap]: Input should be
greater than or equal to 0``. ``--set key.path=value`` overrides are applied to the parsed YAML before
validation, so they are checked exactly like the file.

Example::

    name: paper-q32
    source: {kind: toolemu, path: runs/, cases: all_cases.json, toolkits: all_toolkits.json}
    datasets:
      - {name: safety, strategy: safety, study_compatible: true}
    split: {rule: study, seed: 0}
    output_dir: out/paper-q32
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefkit.audit.thresholds import AuditThresholds
from prefkit.errors import InputError, validation_input_error
from prefkit.judges.judge import JudgeConfig
from prefkit.pairing.config import PairConfig, SplitRule
from prefkit.rollout.config import GenerateSource
from prefkit.sources.chat_jsonl import ChatSource
from prefkit.sources.inspect_logs import InspectSource

_SPLIT_FIELDS = ("split_rule", "split_seed", "test_fraction")

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ToolEmuSource(_Section):
    """Import judged trajectories in ToolEmu's run-file format (the study's released data)."""

    kind: Literal["toolemu"] = "toolemu"
    path: str
    """Folder of run files (walked recursively)."""
    cases: str
    """ToolEmu's ``all_cases.json``."""
    toolkits: str
    """ToolEmu's ``all_toolkits.json``."""


Source = Annotated[ToolEmuSource | GenerateSource | InspectSource | ChatSource, Field(discriminator="kind")]
"""The recipe's ``source`` section: import ToolEmu run files (``kind: toolemu``) or roll agents out on a
scenario suite with an LM-emulated environment (``kind: generate``, see ``prefkit.rollout.GenerateSource``), or
import logs of agents run elsewhere: Inspect eval logs (``kind: inspect``) or OpenAI-format chat JSONL (``kind: chat``),
see ``prefkit.sources.agent_logs``."""


class DatasetSpec(PairConfig):
    """One dataset (one Hub config) of the build: a name plus the pairer's options.

    The split is set once for all datasets in the recipe's ``split`` section, never per dataset.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Config name on the Hub and folder name under ``data/``."""

    @model_validator(mode="before")
    @classmethod
    def _no_split_here(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _SPLIT_FIELDS:
                if key in data:
                    raise ValueError(f"{key!r} belongs in the recipe's `split` section, not in a dataset")
        return data

    def pair_config(self, split: SplitSection) -> PairConfig:
        """The pairer's config for this dataset under the recipe's split."""
        fields = self.model_dump(exclude={"name"}, exclude_unset=False)
        fields.update(split_rule=split.rule, split_seed=split.seed, test_fraction=split.test_fraction)
        return PairConfig.model_validate(fields)


class SplitSection(_Section):
    rule: SplitRule = "study"
    """``study`` (seeded shuffle of scenario indices, second half is test) or ``fraction``."""
    seed: int = 0
    test_fraction: float = Field(default=0.5, ge=0, le=1)


class ValidationSection(_Section):
    tokenizer: str | None = None
    """Tokenizer folder whose chat template the rows are checked against; ``None`` skips token checks."""
    max_length: int = Field(default=8192, ge=1)
    """Rows whose prompt + completion exceed this many tokens are dropped and counted (the study: 8192)."""


class PublishSection(_Section):
    repo_id: str | None = None
    """Hub dataset repo (``user/name``); ``None`` builds locally only."""
    private: bool = True
    license: str = "mit"
    revision: str | None = None
    force: bool = False
    """Overwrite a repo that holds a different dataset."""


class Recipe(_Section):
    """What ``prefkit build`` makes: source → judges → pairs for each dataset → validation → audit → card →
    publish."""

    name: str = "prefkit-dataset"
    pretty_name: str | None = None
    source: Source
    judges: tuple[JudgeConfig, ...] = ()
    """Judges to run on the source's trajectories (cached per trajectory, judge, rubric and replicate).
    Imported runs already carry their judgments and may leave this empty."""
    datasets: tuple[DatasetSpec, ...] = Field(min_length=1)
    split: SplitSection = SplitSection()
    validation: ValidationSection = ValidationSection()
    audit: AuditThresholds = AuditThresholds()
    output_dir: str = "out"
    publish: PublishSection = PublishSection()

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset names must be unique; repeated: {', '.join(dupes)}")
        for d in self.datasets:
            d.pair_config(self.split)  # surfaces a split that a dataset's options forbid
        return self


# --------------------------------------------------------------------------------------------------
# Loading with line numbers
# --------------------------------------------------------------------------------------------------


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing ancestor)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not match:
                return line
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value`` → (["key", "path"], value parsed as YAML, so ``3`` is an int, ``true`` a bool)."""
    if "=" not in text:
        raise InputError(f"--set expects key.path=value, got {text!r}")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise InputError(f"--set has an empty key in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise InputError(f"--set {key}: value is not valid YAML ({exc})") from exc
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any) -> str:
    """Set ``value`` at ``parts`` in ``data``; returns the field path it set, with list items by index
    (``datasets.safety.min_gap`` -> ``datasets.0.min_gap``): the path validation errors name it by."""
    node: Any = data
    where: list[str] = []
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            index = _index(node, part, parts)
            where.append(str(index))
            node = node[index]
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        where.append(part)
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, parts)
        node[index] = value
        where.append(str(index))
    elif isinstance(node, dict):
        node[last] = value
        where.append(last)
    else:
        raise InputError(f"--set {'.'.join(parts)}: {'.'.join(parts[:-1])} is not a mapping")
    return ".".join(where)


def _index(seq: list[Any], part: str, parts: list[str]) -> int:
    if part.isdigit() and int(part) < len(seq):
        return int(part)
    # a dataset may also be named: datasets.safety.min_gap=3
    for i, item in enumerate(seq):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    raise InputError(f"--set {'.'.join(parts)}: no list item {part!r}")


def load_yaml_model(path: str | Path, model: type[M], overrides: list[str] | tuple[str, ...] = (), *,
                    what: str = "recipe", check: Callable[[M], None] | None = None) -> M:
    """Read a YAML file, apply ``--set`` overrides and validate it as ``model`` (the build recipe, the
    training recipe): the one loader, so every recipe reports errors the same way.

    ``check`` runs on the validated model (e.g. ``check_recipe_inputs``); an ``InputError`` it raises that
    names a field but no file gets the recipe file and the field's line.

    Raises:
        InputError: missing file, invalid YAML, or a field that fails validation or ``check`` (the message
        names the field path and the line, a misspelled key with the field it was likely meant to be; a
        field set by ``--set`` is named as such).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} file not found", path=file)
    text = file.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise InputError(f"not valid YAML: {exc.problem}", path=file, line=line) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"a {what} must be a YAML mapping", path=file, line=1)
    overridden: set[str] = set()
    for text_override in overrides:
        parts, value = parse_override(text_override)
        overridden.add(apply_override(data, parts, value))

    def line_of(loc: tuple[Any, ...]) -> int | None:
        return _node_line(root, loc)

    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise validation_input_error(exc, model, what=what, path=file, line_of=line_of,
                                     overridden=overridden) from None
    if check is not None:
        try:
            check(loaded)
        except InputError as exc:
            if exc.path is not None or not exc.field:
                raise
            if any(exc.field == o or exc.field.startswith(o + ".") for o in overridden):
                raise InputError(f"{exc.message} (set by --set)", path=file, field=exc.field) from None
            loc = tuple(int(p) if p.isdigit() else p for p in exc.field.split("."))
            raise InputError(exc.message, path=file, line=line_of(loc), field=exc.field) from None
    return loaded


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_inputs: bool = True) -> Recipe:
    """Read, override and validate a build recipe (see ``load_yaml_model``), then check the inputs it names
    (``check_recipe_inputs``) unless ``check_inputs`` is false."""
    return load_yaml_model(path, Recipe, overrides, what="recipe", check=check_recipe_inputs if check_inputs else None)


def check_recipe_inputs(recipe: Recipe) -> None:
    """Check every input the recipe names before the first (expensive) stage runs, without loading a model
    or waiting on the network: the source's folders and files (or its suite and scenario ids), every model
    spec (generate agents, emulator, judges) with its backend's packages, options and local model files
    (``prefkit.backends.registry.check_model_spec``), and the validation tokenizer's folder.
    ``prefkit build`` runs it when the recipe is loaded and ``run_build`` again before its first stage.

    Raises:
        InputError: the first problem, naming the recipe field (e.g. ``judges.0.judge``).
    """
    from prefkit.backends.registry import check_model_spec

    src = recipe.source
    if isinstance(src, InspectSource | ChatSource):
        src.check_inputs()
    elif isinstance(src, ToolEmuSource):
        for name, want_dir in (("path", True), ("cases", False), ("toolkits", False)):
            found = Path(getattr(src, name))
            if not (found.is_dir() if want_dir else found.is_file()):
                raise InputError(f"{'folder' if want_dir else 'file'} not found: {found}", field=f"source.{name}")
    else:
        from prefkit.rollout import load_scenario_suite

        try:
            suite = load_scenario_suite(src.suite)
        except InputError as exc:
            raise InputError(str(exc), field="source.suite") from None
        known = {s.id for s in suite.scenarios}
        for i, scenario in enumerate(src.scenarios or ()):
            if scenario not in known:
                raise InputError(f"no scenario {scenario!r} in suite {src.suite!r}", field=f"source.scenarios.{i}")
        for i, agent in enumerate(src.agents):
            check_model_spec(agent.model, agent.options, field=f"source.agents.{i}.model",
                             options_field=f"source.agents.{i}.options")
        check_model_spec(src.emulator.model, src.emulator.options, field="source.emulator.model",
                         options_field="source.emulator.options")
    for i, judge in enumerate(recipe.judges):
        check_model_spec(judge.judge, judge.backend_options, field=f"judges.{i}.judge",
                         options_field=f"judges.{i}.backend_options")
    tokenizer = recipe.validation.tokenizer
    if tokenizer is not None and not Path(tokenizer).is_dir():  # the build hashes the folder's files
        raise InputError(f"tokenizer folder not found: {tokenizer}", field="validation.tokenizer")


def recipe_yaml(recipe: Recipe) -> str:
    """The recipe as YAML with every default filled in (what the dataset card shows)."""
    data = recipe.model_dump(mode="json")
    # a dataset shows its name first and not the split, which the `split` section sets for all datasets
    data["datasets"] = [
        {"name": d["name"], **{k: v for k, v in d.items() if k != "name" and k not in _SPLIT_FIELDS}}
        for d in data["datasets"]
    ]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
