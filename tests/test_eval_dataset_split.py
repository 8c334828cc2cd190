"""``prefkit eval`` evaluates on the test scenarios of the split the model's dataset was built with.

Before, it always rolled out the study rule's test scenarios (half of the suite, by scenario index), so a
model trained on a ``fraction``-split dataset (the quickstart's) was evaluated on scenarios it had trained
on, and ``prefkit frontier`` restricted its runs to the study rule's scenarios again. The dataset here is
built from two of the study's agents with the quickstart's rule, ``fraction``, and a small test share (7 of
the 144 ToolEmu scenarios, so that evaluating on them is quick); its ``prefkit.json`` records them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from test_evaluate import run_means, scripted_judge

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.evaluate import EvalConfig, evaluation_split
from prefkit.pairing.split import study_test_indices
from prefkit.publish.layout import read_dataset_manifest
from prefkit.rollout import load_scenario_suite

TEST_SCENARIOS = 7
"""round(0.05 * 144): the test scenarios of ``fraction_build``."""


@pytest.fixture(scope="module")
def fraction_build(tmp_path_factory: pytest.TempPathFactory, raw_q32_dir: Path, toolemu_cases_path: Path,
                   toolemu_toolkits_path: Path) -> Path:
    """Safety pairs of two of the study's agents, split by the ``fraction`` rule (seed 0, 5 % test)."""
    root = tmp_path_factory.mktemp("fraction-build")
    for agent in ("gpt-5", "meta-llama_Llama-3.2-3B-Instruct"):
        shutil.copytree(raw_q32_dir / agent, root / "runs" / agent)
    recipe = {
        "name": "small-test-fraction",
        "source": {"kind": "toolemu", "path": str(root / "runs"), "cases": str(toolemu_cases_path),
                   "toolkits": str(toolemu_toolkits_path)},
        "datasets": [{"name": "safety", "strategy": "safety"}],
        "split": {"rule": "fraction", "seed": 0, "test_fraction": 0.05},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["build", str(root / "recipe.yaml"), "--out", str(root / "out"), "--quiet"]) == 0
    return root / "out"


def recorded_test_ids(dataset: Path) -> list[str]:
    return read_dataset_manifest(dataset)["scenario_split"]["safety"]["test_scenarios"]


def config(toolemu_cases_path: Path, **fields) -> EvalConfig:
    return EvalConfig(model="m@transformers", suite=str(toolemu_cases_path), emulator="e@transformers",
                      judge="j@transformers", **fields)


def test_the_dataset_split_decides_the_test_scenarios(fraction_build: Path, toolemu_cases_path: Path,
                                                      tiny_dpo_dataset) -> None:
    suite = load_scenario_suite(toolemu_cases_path)
    order = [s.id for s in suite.scenarios]
    recorded = recorded_test_ids(fraction_build)
    study = [s.id for s in suite.scenarios if s.index in set(study_test_indices(144, 0))]

    split = evaluation_split(config(toolemu_cases_path, dataset=str(fraction_build)), suite)
    assert (split.rule, split.seed, split.test_fraction) == ("fraction", 0, 0.05)
    assert split.source.endswith("prefkit.json")
    assert list(split.test_scenarios) == sorted(recorded, key=order.index) and len(recorded) == TEST_SCENARIOS
    assert not set(split.test_scenarios) <= set(study)  # not the study rule's scenarios
    # The pairer's folder records the rule and seed only: the rule is applied to the suite, with the same result.
    pairs = evaluation_split(config(toolemu_cases_path, dataset=str(fraction_build / ".prefkit" / "pairs" / "safety")),
                             suite)
    assert (pairs.rule, pairs.test_scenarios) == ("fraction", split.test_scenarios)
    # The dataset's seed given again is fine; another seed is refused (it would evaluate on train scenarios).
    assert evaluation_split(config(toolemu_cases_path, dataset=str(fraction_build), split_seed=0), suite) == split
    with pytest.raises(InputError, match=r"split with seed 0 \(fraction rule") as err:
        evaluation_split(config(toolemu_cases_path, dataset=str(fraction_build), split_seed=1), suite)
    assert err.value.field == "split_seed"

    # The paper's case is unchanged: no dataset, the study rule for the seed (72 of 144).
    paper = evaluation_split(config(toolemu_cases_path, split_seed=0), suite)
    assert (paper.rule, paper.source, list(paper.test_scenarios)) == ("study", "study rule", study)
    assert evaluation_split(config(toolemu_cases_path), suite) == paper
    # A dataset that records no split, and a suite the dataset was not built from, are named.
    with pytest.raises(InputError, match="records no scenario split") as err:
        evaluation_split(config(toolemu_cases_path, dataset=str(tiny_dpo_dataset[0])), suite)
    assert err.value.field == "dataset"
    with pytest.raises(InputError, match=rf"{TEST_SCENARIOS} of the dataset's test scenarios are not in the suite 'starter'") as err:
        evaluation_split(config(toolemu_cases_path, dataset=str(fraction_build)), load_scenario_suite("starter"))
    assert err.value.field == "suite"


def test_a_mismatched_split_seed_is_a_usage_error(fraction_build: Path, toolemu_cases_path: Path,
                                                  tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    tiny = f"{tiny_model_dir}@transformers"
    rc = main(["eval", tiny, "--suite", str(toolemu_cases_path), "--dataset", str(fraction_build), "--split-seed", "2",
               "--emulator", tiny, "--judge", tiny, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "split with seed 0" in err and "Traceback" not in err
    rc = main(["eval", tiny, "--suite", str(toolemu_cases_path), "--prompt-style", "tiny", "--emulator", tiny,
               "--judge", tiny, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "prompt_style" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_and_frontier_use_the_datasets_test_scenarios(fraction_build: Path, toolemu_cases_path: Path,
                                                           tiny_model_dir: Path, tmp_path: Path, capsys,
                                                           fake_openai) -> None:
    from prefkit.pairing.validate import validate_pair_rows
    from prefkit.train.data import load_split

    # A model trained on the dataset (the tiny model, one step on its shortest pairs): its train.json names
    # the dataset, so `prefkit eval` finds the split without --dataset.
    rows = load_split(str(fraction_build), "safety", "train")
    tokens = sorted(validate_pair_rows(rows, tokenizer=tiny_model_dir, max_length=1 << 20).row_tokens)
    assert main(["train", str(Path(__file__).resolve().parents[1] / "recipes" / "train" / "safe.yaml"),
                 "--set", f"source_model={tiny_model_dir}", "--set", "source_nick=tiny",
                 "--set", f"dataset={fraction_build}", "--set", f"max_length={tokens[1]}",
                 "--set", "gradient_accumulation_steps=1", "--max-steps", "1", "--out", str(tmp_path / "trained")]) == 0
    trained_dir = tmp_path / "trained" / "dpo_tiny_safe_q32_s0"

    tiny = f"{tiny_model_dir}@transformers"
    common = ["--suite", str(toolemu_cases_path), "--emulator", tiny, "--judge", tiny, "--max-steps", "1",
              "--max-tokens", "8", "--token-budget", "8", "--judge-max-tokens", "4", "--json"]
    source_run, trained_run = tmp_path / "source", tmp_path / "trained-run"
    capsys.readouterr()
    assert main(["eval", tiny, "--name", "tiny", "--dataset", str(fraction_build), "--out", str(source_run),
                 *common]) == 0
    source = json.loads(capsys.readouterr().out)
    assert main(["eval", str(trained_dir), "--out", str(trained_run), *common]) == 0
    trained = json.loads(capsys.readouterr().out)

    suite = load_scenario_suite(toolemu_cases_path)
    test_ids = sorted(recorded_test_ids(fraction_build), key=[s.id for s in suite.scenarios].index)
    for summary, run in ((source, source_run), (trained, trained_run)):
        assert summary["scenarios"] == summary["trajectories"] == TEST_SCENARIOS
        assert summary["split"]["rule"] == "fraction" and summary["split"]["test_scenarios"] == test_ids
        assert pl.read_parquet(run / "scenarios.parquet")["id"].to_list() == test_ids
        evaluation = json.loads((run / "manifest.json").read_text())["evaluation"]
        assert evaluation["test_scenarios"] == test_ids
        assert (evaluation["split_seed"], evaluation["split"]["rule"], evaluation["split"]["test_fraction"]) == (
            0, "fraction", 0.05)
    assert source["split"]["source"] == trained["split"]["source"] == str(fraction_build / "prefkit.json")

    # The frontier keeps every recorded test scenario (the study rule would keep only those that are also its
    # own test scenarios): the point is the mean over the runs' own tables.
    assert not set(test_ids) <= {s.id for s in suite.scenarios if s.index in set(study_test_indices(144, 0))}
    for run, offset in ((source_run, 0), (trained_run, 1)):
        fake_openai.responder = scripted_judge(offset)
        assert main(["judge", str(run), "--judge", "scripted@openai", "--answer-format", "text", "--option",
                     f"base_url={fake_openai.base_url}"]) == 0
    capsys.readouterr()
    assert main(["frontier", str(source_run), str(trained_run), "--json", "--bootstrap", "0"]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]

    def config_mean(run: Path, metric: str) -> float:
        values = [m[metric] for m in run_means(run).values() if m.get(metric) is not None]
        return sum(values) / len(values)

    for metric in ("safety", "helpfulness"):
        assert point[metric] == pytest.approx(config_mean(trained_run, metric), abs=1e-12)
        assert point[f"d_{metric}"] == pytest.approx(
            config_mean(trained_run, metric) - config_mean(source_run, metric), abs=1e-12)
