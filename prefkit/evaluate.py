"""``prefkit eval``: roll a model out on its split seed's test scenarios, judge the trajectories, and leave
a run that ``prefkit frontier`` reads.

The test scenarios are the study rule's for the split seed (``prefkit.pairing.split.split_scenarios``), so
a model trained on seed ``S`` is evaluated on exactly the scenarios its training never saw. The run is
an ordinary rollout run (``prefkit.rollout``) judged in place (``prefkit.judges.judge_run``); its manifest
also gets an ``evaluation`` entry: the model, its name, the suite, its size, the split seed and the test
scenarios. Both steps are cached, so re-running a killed ``prefkit eval`` finishes the work left.

The agent's name in the run is what the frontier reads the model's configuration from (``dpo_<nick>_...``,
``prefkit.train.names``): a ``prefkit train`` output folder passes its own name; otherwise give ``name``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from prefkit.errors import InputError
from prefkit.progress import Progress


class EvalConfig(BaseModel):
    """What ``prefkit eval`` evaluates and how (rollout and judge settings default to the study's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """``MODEL@backend``, or a ``prefkit train`` output folder (its merged ``model/`` on the transformers backend)."""
    name: str | None = None
    """The agent's name in the run; default: the train output's name, else the model's last path part."""
    suite: str
    """The scenario suite (anything ``prefkit rollout`` accepts: a folder, a run, a bundled name)."""
    split_seed: int = 0
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
    judge_max_tokens: int = Field(default=1024, ge=1)
    judge_max_attempts: int = Field(default=3, ge=1)
    agent_options: tuple[str, ...] = ()
    """Backend options ``KEY=VALUE`` (e.g. ``batch_size=16``); also ``emulator_options``, ``judge_options``."""
    emulator_options: tuple[str, ...] = ()
    judge_options: tuple[str, ...] = ()


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


def evaluate(config: EvalConfig, out: str | Path, *, force: bool = False, progress: Progress | None = None
             ) -> EvalSummary:
    """Roll out, judge and describe one model's evaluation run in ``out`` (resumed if it exists).

    ``progress`` (``prefkit.progress``) is told the ``rollout`` task, then the ``judging`` task.

    Raises:
        InputError: a bad suite, model, emulator or judge spec, or an unusable ``out``.
    """
    from prefkit.frontier.read import read_case_scores
    from prefkit.judges.judge import judge_run, make_judge_config
    from prefkit.pairing.split import split_scenarios
    from prefkit.rollout import load_scenario_suite, make_rollout_config, rollout_suite
    from prefkit.store import RunStore

    spec, name = resolve_model(config.model, config.name)
    suite = load_scenario_suite(config.suite)
    split = split_scenarios(suite.scenarios, "study", config.split_seed)
    test_ids = [s.id for s in suite.scenarios if split[s.id] == "test"]
    rollout = make_rollout_config(agent=spec, emulator=config.emulator, agent_name=name, samples=config.samples,
                                  max_tokens=config.max_tokens, token_budget=config.token_budget,
                                  max_steps=config.max_steps, agent_options=config.agent_options,
                                  emulator_options=config.emulator_options)
    judge = make_judge_config(judge=config.judge, max_tokens=config.judge_max_tokens,
                              max_attempts=config.judge_max_attempts, options=config.judge_options)
    summary = rollout_suite(suite, out, rollout, scenario_ids=test_ids, force=force, progress=progress)
    judge_run(out, judge, progress=progress)
    store = RunStore(out)
    store.update_manifest(evaluation={**config.model_dump(mode="json"), "model_spec": spec, "name": name,
                                      "suite_name": suite.name, "suite_size": len(suite.scenarios),
                                      "test_scenarios": test_ids})
    statuses = store.frame("judgments")["parse_status"].value_counts().sort("parse_status")
    cases = read_case_scores([store.path])
    return EvalSummary(
        out=str(store.path), name=name, model=spec, scenarios=len(test_ids), trajectories=summary.trajectories,
        judgments=dict(zip(statuses["parse_status"], statuses["count"], strict=True)),
        safety=cases["safety"].mean(), helpfulness=cases["helpfulness"].mean(),  # type: ignore[arg-type]
    )
