"""``prefkit eval``: roll a model out on its dataset's test scenarios, judge the trajectories, and leave
a run that ``prefkit frontier`` reads.

The test scenarios are those of the split the training data was built with, so a model is evaluated on
exactly the scenarios its training never saw (``evaluation_split``, in this order):

1. ``dataset`` (``--dataset OUT``): the split that dataset records (a ``prefkit build`` folder's
   ``prefkit.json`` ``scenario_split``, a ``prefkit pair`` folder's ``pairing.json``), read by
   ``prefkit.train.data.dataset_split``, the reader ``prefkit train`` checks leakage with;
2. a ``prefkit train`` output folder as the model: the split its training datasets record (``train.json``);
3. otherwise, and for datasets that record none (a Hub id): the study rule for ``split_seed`` (default 0),
   the study's 72 of 144 ToolEmu scenarios per seed.

A ``split_seed`` given with a recorded split must be the recorded seed. The run is an ordinary rollout run
(``prefkit.rollout``) judged in place (``prefkit.judges.judge_run``); its manifest also gets an
``evaluation`` entry: the model, its name, the suite, its size, the split (rule, seed, test fraction, where
it was read) and the test scenarios, which ``prefkit frontier`` restricts the run to. Both steps are cached,
so re-running a killed ``prefkit eval`` finishes the work left.

The agent's name in the run is what the frontier reads the model's configuration from (``dpo_<nick>_...``,
``prefkit.train.names``): a ``prefkit train`` output folder passes its own name; otherwise give ``name``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prefkit.errors import InputError
from prefkit.progress import Progress

if TYPE_CHECKING:
    from prefkit.rollout.suite import Suite
    from prefkit.train.data import DatasetSplit


class EvalConfig(BaseModel):
    """What ``prefkit eval`` evaluates and how (rollout and judge settings default to the study's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """``MODEL@backend``, or a ``prefkit train`` output folder (its merged ``model/`` on the transformers backend)."""
    name: str | None = None
    """The agent's name in the run; default: the train output's name, else the model's last path part."""
    suite: str
    """The scenario suite (anything ``prefkit rollout`` accepts: a folder, a run, a bundled name)."""
    split_seed: int | None = None
    """The split seed; default: the recorded split's seed, else 0. Must match a recorded split's seed."""
    dataset: str | None = None
    """The dataset the model was (or will be) trained on: a ``prefkit build`` or ``prefkit pair`` output folder
    whose recorded split gives the test scenarios; default: a train output's own datasets, else the study rule."""
    emulator: str
    """The emulator as ``MODEL@backend``."""
    judge: str
    """The judge as ``MODEL@backend``."""
    samples: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=2048, ge=1)
    """Most tokens per agent call."""
    token_budget: int = Field(default=8000, ge=1)
    """Most agent tokens per trajectory."""
    max_steps: int | None = Field(default=None, ge=1)
    prompt_style: Literal["full", "compact"] = "full"
    """The agent's ReAct prompt (``prefkit.rollout``): ``full`` (the study's) or ``compact`` (small models)."""
    answer_format: Literal["auto", "text", "json", "logprob"] = "auto"
    """How the judge answers (``prefkit.judges.JudgeConfig.answer_format``); ``logprob`` for small judges."""
    judge_max_tokens: int = Field(default=1024, ge=1)
    judge_max_attempts: int = Field(default=3, ge=1)
    agent_options: tuple[str, ...] = ()
    """Backend options ``KEY=VALUE`` (e.g. ``batch_size=16``); also ``emulator_options``, ``judge_options``."""
    emulator_options: tuple[str, ...] = ()
    judge_options: tuple[str, ...] = ()


def make_eval_config(**fields: Any) -> EvalConfig:
    """An ``EvalConfig`` from command-line values.

    Raises:
        InputError: a value the config rejects (e.g. ``prompt_style``), naming the field.
    """
    from pydantic import ValidationError

    from prefkit.errors import validation_input_error

    try:
        return EvalConfig(**fields)
    except ValidationError as exc:
        raise validation_input_error(exc, EvalConfig, what="eval") from None


class EvalSplit(BaseModel):
    """The scenarios an evaluation rolls out and where that split came from (the manifest's ``split``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    """``study`` or ``fraction`` (``prefkit.pairing.split``)."""
    seed: int
    test_fraction: float | None
    """The ``fraction`` rule's test share; null for ``study`` (or where the record does not give it)."""
    source: str
    """Where the split was read (``prefkit.json``, ``pairing.json``) or ``study rule``."""
    test_scenarios: tuple[str, ...]
    """The suite's test scenario ids, in suite order."""


class EvalSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    out: str
    name: str
    model: str
    scenarios: int
    """Test scenarios rolled out."""
    trajectories: int
    judgments: dict[str, int]
    """Judgment statuses in the run (``ok``, ``repaired``, ``failed``)."""
    split: EvalSplit
    """The split whose test scenarios were rolled out."""
    safety: float | None
    """Mean over the test scenarios (``None`` when no judgment parsed)."""
    helpfulness: float | None


def resolve_model(model: str, name: str | None) -> tuple[str, str]:
    """``(MODEL@backend spec, agent name)`` for ``model``.

    Raises:
        InputError: a train output folder without its merged model.
    """
    from prefkit.train.run import MODEL_DIR, RESULT_FILE

    folder = Path(model)
    if (folder / RESULT_FILE).is_file():
        result = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
        if not (folder / MODEL_DIR).is_dir():  # looked up in the folder given, so a moved run still works
            raise InputError(f"this training run has no merged {MODEL_DIR}/ (save_merged: false); merge it first",
                             path=folder)
        return f"{(folder / MODEL_DIR).resolve()}@transformers", name or result["name"]
    from prefkit.backends.registry import split_model_spec

    if "@" not in model:
        raise InputError(f"model {model!r}: give MODEL@backend or a `prefkit train` output folder", field="model")
    return model, name or split_model_spec(model)[0].rstrip("/").rsplit("/", 1)[-1]


def _trained_datasets(model: str) -> tuple[list[tuple[str, str]], int | None]:
    """``([(dataset, config) per stage], recipe split_seed)`` of a ``prefkit train`` output folder, else ``([], None)``."""
    from prefkit.train.run import RESULT_FILE

    result_file = Path(model) / RESULT_FILE
    if not result_file.is_file():
        return [], None
    result = json.loads(result_file.read_text(encoding="utf-8"))
    return [(s["dataset"], s["config"]) for s in result["stages"]], result["recipe"].get("split_seed")


def _recorded_splits(dataset: str, configs: list[str] | None) -> list[DatasetSplit]:
    """The splits ``dataset`` records for ``configs`` (all its recorded configs when None)."""
    from prefkit.publish.layout import read_dataset_manifest
    from prefkit.train.data import dataset_split

    if configs is None:
        root = Path(dataset)
        manifest = read_dataset_manifest(root) if root.is_dir() else None
        # a build folder records one split per config; a pair folder's pairing.json ignores the config
        configs = sorted(manifest.get("scenario_split") or {}) if manifest is not None else [""]
    found = [dataset_split(dataset, config) for config in configs]
    return [split for split in found if split is not None]


def evaluation_split(config: EvalConfig, suite: Suite) -> EvalSplit:
    """The test scenarios of ``suite`` that ``config``'s model is evaluated on (see the module docstring).

    Raises:
        InputError: a ``dataset`` that records no split, configs recorded with different splits, a
            ``split_seed`` that is not the recorded one, or a recorded split that is not of this suite.
    """
    from prefkit.pairing.split import split_scenarios

    if config.dataset is not None:
        splits = _recorded_splits(config.dataset, None)
        if not splits:
            raise InputError("the dataset records no scenario split (prefkit.json `scenario_split` or pairing.json); "
                             "give --split-seed for the study rule instead of --dataset", path=config.dataset,
                             field="dataset")
        trained_seed = None
    else:
        stages, trained_seed = _trained_datasets(config.model)
        splits = [split for dataset, cfg in stages for split in _recorded_splits(dataset, [cfg])]
    if len({(s.rule, s.seed, s.test_scenarios, s.test_fraction) for s in splits}) > 1:
        raise InputError("the model's datasets were split differently ("
                         + "; ".join(f"{s.rule} seed {s.seed} in {s.source}" for s in splits)
                         + "): give the one to evaluate on with --dataset", field="dataset")
    ids = [s.id for s in suite.scenarios]
    if not splits:
        seed = config.split_seed if config.split_seed is not None else (trained_seed or 0)
        side = split_scenarios(suite.scenarios, "study", seed)
        return EvalSplit(rule="study", seed=seed, test_fraction=None, source="study rule",
                         test_scenarios=tuple(i for i in ids if side[i] == "test"))
    recorded = splits[0]
    if config.split_seed is not None and config.split_seed != recorded.seed:
        raise InputError(f"the dataset was split with seed {recorded.seed} ({recorded.rule} rule, recorded in "
                         f"{recorded.source}), not {config.split_seed}: the model would be evaluated on scenarios "
                         f"it may have trained on. Leave out --split-seed or give {recorded.seed}",
                         field="split_seed")
    if recorded.test_scenarios is not None:
        unknown = sorted(recorded.test_scenarios - set(ids))
        if unknown:
            raise InputError(f"{len(unknown)} of the dataset's test scenarios are not in the suite "
                             f"{suite.name!r} ({', '.join(unknown[:5])}): evaluate on the suite the dataset was built "
                             f"from (its split is recorded in {recorded.source})", field="suite")
        test = recorded.test_scenarios
    else:  # a pair folder records the rule, not the scenarios: apply the rule to this suite
        side = split_scenarios(suite.scenarios, recorded.rule,  # type: ignore[arg-type]
                               recorded.seed, recorded.test_fraction if recorded.test_fraction is not None else 0.5)
        test = frozenset(i for i in ids if side[i] == "test")
    return EvalSplit(rule=recorded.rule, seed=recorded.seed, test_fraction=recorded.test_fraction,
                     source=recorded.source, test_scenarios=tuple(i for i in ids if i in test))


def evaluate(config: EvalConfig, out: str | Path, *, force: bool = False, progress: Progress | None = None
             ) -> EvalSummary:
    """Roll out, judge and describe one model's evaluation run in ``out`` (resumed if it exists).

    ``progress`` (``prefkit.progress``) is told the ``rollout`` task, then the ``judging`` task.

    Raises:
        InputError: a bad suite, model, emulator or judge spec, or an unusable ``out``.
    """
    from prefkit.frontier.read import read_case_scores
    from prefkit.judges.judge import judge_run, make_judge_config
    from prefkit.rollout import load_scenario_suite, make_rollout_config, rollout_suite
    from prefkit.store import RunStore

    spec, name = resolve_model(config.model, config.name)
    suite = load_scenario_suite(config.suite)
    split = evaluation_split(config, suite)
    test_ids = list(split.test_scenarios)
    rollout = make_rollout_config(agent=spec, emulator=config.emulator, agent_name=name, samples=config.samples,
                                  max_tokens=config.max_tokens, token_budget=config.token_budget,
                                  max_steps=config.max_steps, prompt_style=config.prompt_style,
                                  agent_options=config.agent_options,
                                  emulator_options=config.emulator_options)
    judge = make_judge_config(judge=config.judge, max_tokens=config.judge_max_tokens, answer_format=config.answer_format,
                              max_attempts=config.judge_max_attempts, options=config.judge_options)
    summary = rollout_suite(suite, out, rollout, scenario_ids=test_ids, force=force, progress=progress)
    judge_run(out, judge, progress=progress)
    store = RunStore(out)
    store.update_manifest(evaluation={**config.model_dump(mode="json"), "model_spec": spec, "name": name,
                                      "split_seed": split.seed, "split": split.model_dump(mode="json", exclude={
                                          "test_scenarios"}), "suite_name": suite.name, "suite_size": len(suite.scenarios),
                                      "test_scenarios": test_ids})
    statuses = store.frame("judgments")["parse_status"].value_counts().sort("parse_status")
    cases = read_case_scores([store.path])
    return EvalSummary(
        out=str(store.path), name=name, model=spec, scenarios=len(test_ids), trajectories=summary.trajectories,
        split=split,
        judgments=dict(zip(statuses["parse_status"], statuses["count"], strict=True)),
        safety=cases["safety"].mean(), helpfulness=cases["helpfulness"].mean(),  # type: ignore[arg-type]
    )
