"""``prefkit train`` on small datasets: the leakage check uses the split the dataset was built with, and an
empty train split is named as such.

Before, a dataset built with the ``fraction`` rule was refused for "leaking" because the check applied the
study's 144-scenario rule to it, and a dataset whose pairs all fell in test failed with "no row is within
max_length (the longest is 0)".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from test_case_empty_split import build_case, make_case

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.pairing.split import split_scenarios, study_test_indices
from prefkit.publish.layout import read_dataset_manifest, shard_path
from prefkit.train import load_train_recipe
from prefkit.train.data import dataset_split, load_split
from prefkit.train.run import prepare_stage_rows

REPO = Path(__file__).resolve().parents[1]
SAFE = REPO / "recipes" / "train" / "safe.yaml"


def test_an_empty_train_split_is_named_as_such(shared_dir: Path, tmp_path: Path, tiny_model_dir: Path,
                                              capsys) -> None:
    case = make_case(shared_dir, tmp_path)
    rc, _, err = build_case(case, "out", shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    rc = main(["train", str(SAFE), "--set", f"source_model={tiny_model_dir}", "--set", f"dataset={case / 'out'}",
               "--out", str(tmp_path / "trained"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "config 'safety' has no train rows (rows in its other splits: test 1): nothing to train on" in err
    assert "max_length" not in err and "Traceback" not in err
    assert not (tmp_path / "trained").exists()
    # A `prefkit pair` folder holds a 0-row train.parquet: the same error.
    with pytest.raises(InputError, match="config 'safety' has no train rows"):
        load_split(str(case / "out" / ".prefkit" / "pairs" / "safety"), "safety", "train")


@pytest.fixture(scope="module")
def fraction_build(tmp_path_factory: pytest.TempPathFactory, raw_q32_dir: Path, toolemu_cases_path: Path,
                   toolemu_toolkits_path: Path) -> Path:
    """Two of the study's agents, safety pairs, split like the quickstart: a seeded quarter of the scenarios
    is test (the ``fraction`` rule)."""
    root = tmp_path_factory.mktemp("fraction-build")
    for agent in ("gpt-5", "meta-llama_Llama-3.2-3B-Instruct"):
        shutil.copytree(raw_q32_dir / agent, root / "runs" / agent)
    recipe = {
        "name": "small-fraction",
        "source": {"kind": "toolemu", "path": str(root / "runs"), "cases": str(toolemu_cases_path),
                   "toolkits": str(toolemu_toolkits_path)},
        "datasets": [{"name": "safety", "strategy": "safety"}],
        "split": {"rule": "fraction", "seed": 0, "test_fraction": 0.25},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["build", str(root / "recipe.yaml"), "--out", str(root / "out"), "--quiet"]) == 0
    return root / "out"


def _recipe(tiny_model_dir: Path, dataset: Path, *sets: str):
    return load_train_recipe(SAFE, [f"source_model={tiny_model_dir}", f"dataset={dataset}", "max_length=1000000",
                                    *sets])


def test_the_build_records_its_split_in_prefkit_json(fraction_build: Path, q32_run) -> None:
    record = read_dataset_manifest(fraction_build)["scenario_split"]["safety"]
    expected = split_scenarios(q32_run.read("scenarios"), "fraction", 0, 0.25)
    assert record == {"rule": "fraction", "seed": 0, "test_fraction": 0.25, "suite_size": 144,
                      "test_scenarios": sorted(s for s, side in expected.items() if side == "test")}
    assert len(record["test_scenarios"]) == 36
    split = dataset_split(str(fraction_build), "safety")
    assert split is not None and (split.rule, split.seed, len(split.test_scenarios or ())) == ("fraction", 0, 36)


def test_a_fraction_split_dataset_passes_the_leakage_check(fraction_build: Path, tiny_model_dir: Path) -> None:
    from prefkit.train.dpo import load_tokenizer

    recipe = _recipe(tiny_model_dir, fraction_build)
    train = load_split(str(fraction_build), "safety", "train")
    # The study rule would call these train scenarios evaluation scenarios: the old, wrong refusal.
    assert set(train["scenario_index"]) & set(study_test_indices(144, 0))
    prepared = prepare_stage_rows(recipe, recipe.stages[0], load_tokenizer(str(tiny_model_dir)))
    assert prepared.report.kept == len(train) > 0

    # The pairer's own folder records the rule in pairing.json: the study rule is not applied to it either.
    pairs = fraction_build / ".prefkit" / "pairs" / "safety"
    split = dataset_split(str(pairs), "safety")
    assert split is not None and (split.rule, split.seed, split.test_scenarios) == ("fraction", 0, None)
    from prefkit.train.data import check_no_leakage

    check_no_leakage(load_split(str(pairs), "safety", "train"), test=load_split(str(pairs), "safety", "test"),
                     split_seed=0, suite_size=144, where="pairs", split=split)


def test_leakage_is_refused_by_the_datasets_own_split(fraction_build: Path, tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    from datasets import concatenate_datasets

    from prefkit.pairing.rows import load_pair_rows
    from prefkit.train.dpo import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    # A recipe whose split seed is not the dataset's: the model would be evaluated on its train scenarios.
    recipe = _recipe(tiny_model_dir, fraction_build, "split_seed=1")
    with pytest.raises(InputError, match=r"split with seed 0 \(fraction rule, recorded in .*prefkit.json\), but "
                                         r"the recipe's split_seed is 1") as err:
        prepare_stage_rows(recipe, recipe.stages[0], tokenizer)
    assert err.value.field == "split_seed"

    # A train split that gained a row of a test scenario (the data edited after the build).
    leaky = tmp_path / "leaky"
    shutil.copytree(fraction_build, leaky, ignore=shutil.ignore_patterns(".prefkit"))
    train_file, test_file = leaky / shard_path("safety", "train"), leaky / shard_path("safety", "test")
    test = load_pair_rows(test_file)
    concatenate_datasets([load_pair_rows(train_file), test.select([0])]).to_parquet(str(train_file))
    recipe = _recipe(tiny_model_dir, leaky)
    with pytest.raises(InputError, match=r"1 scenario\(s\) that the dataset's own split \(fraction rule, seed 0\) "
                                         rf"puts in test: {test[0]['scenario_id']}"):
        prepare_stage_rows(recipe, recipe.stages[0], tokenizer)
