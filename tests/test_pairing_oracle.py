"""The pairer reproduces the study's own pairs on raw_q32, pair for pair and in order, and its split counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from prefkit.cli import main
from prefkit.pairing import PairConfig, build_pairs
from prefkit.records import content_hash

# oracle file -> strategy (both/average were built with helpfulness first, the config's default)
DATASETS = {"safe": "safety", "help": "helpfulness", "both": "both", "both_average": "average"}


def _oracle_keys(pairs: pl.DataFrame) -> list[dict]:
    """The oracle's keys of our pairs: case index, agent folders, file basenames, first-metric scores."""
    return pairs.select(
        case_idx="scenario_index",
        chosen_model="chosen_agent",
        rejected_model="rejected_agent",
        chosen_file=pl.col("chosen_source").struct.field("file").str.split("/").list.last(),
        rejected_file=pl.col("rejected_source").struct.field("file").str.split("/").list.last(),
        chosen_score=pl.col("chosen_score").cast(pl.Int64),
        rejected_score=pl.col("rejected_score").cast(pl.Int64),
        score_difference=pl.col("margin").cast(pl.Int64),
    ).to_dicts()


@pytest.fixture(scope="module")
def oracle_counts(oracle_dir: Path) -> dict:
    return json.loads((oracle_dir / "counts.json").read_text())["datasets"]


@pytest.mark.parametrize("name", DATASETS)
def test_study_compatible_pairs_equal_the_oracle_in_order(q32_run, oracle_dir: Path, oracle_counts, name: str) -> None:
    expected = [json.loads(line) for line in (oracle_dir / f"{name}.jsonl").read_text().splitlines()]
    result = build_pairs(q32_run, PairConfig(strategy=DATASETS[name], study_compatible=True))
    got = _oracle_keys(result.pairs)
    assert len(got) == len(expected) == oracle_counts[name]["pairs"]
    first_difference = next((i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b), None)
    assert first_difference is None, (first_difference, got[first_difference], expected[first_difference])
    assert result.counts["scenarios"] == oracle_counts[name]["cases"]
    assert result.counts["candidates"] == oracle_counts[name]["loaded_trajectories_per_metric"][0] == 1152


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", DATASETS)
def test_train_split_counts_match_the_oracle(q32_run, oracle_counts, name: str, seed: int) -> None:
    counts = build_pairs(q32_run, PairConfig(strategy=DATASETS[name], split_seed=seed)).counts
    assert counts["train_pairs"] == oracle_counts[name][f"train_pairs_s{seed}"]
    assert counts["train_scenarios"] == oracle_counts[name][f"train_cases_s{seed}"]
    assert counts["train_pairs"] + counts["test_pairs"] == counts["pairs"] == oracle_counts[name]["pairs"]


def test_pair_records_carry_consistent_scores_ids_and_split(q32_run) -> None:
    pairs = build_pairs(q32_run, PairConfig(strategy="both")).pairs
    assert pairs.height == 235
    # first metric of both is helpfulness: the recorded scores are its scores
    assert (pairs["chosen_score"] == pairs["chosen_helpfulness"]).all()
    assert (pairs["margin"] == pairs["chosen_score"] - pairs["rejected_score"]).all()
    assert (pairs["chosen_safety"] - pairs["rejected_safety"] >= 2).all()
    expected_ids = [
        content_hash({"strategy": "both", "chosen_id": c, "rejected_id": r})
        for c, r in pairs.select("chosen_id", "rejected_id").iter_rows()
    ]
    assert pairs["id"].to_list() == expected_ids
    assert pairs["id"].n_unique() == pairs.height
    # one split per scenario
    assert pairs.group_by("scenario_id").agg(pl.col("split").n_unique())["split"].max() == 1


def test_study_compatible_refuses_beyond_the_study_options(q32_run, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="dedup"):
        PairConfig(strategy="safety", study_compatible=True, dedup=True)
    rc = main(["pair", str(q32_run.path), "--strategy", "safety", "--study-compatible", "--max-chosen-reuse", "2",
               "--out", str(tmp_path / "pairs")])
    assert rc == 2
    assert "max_chosen_reuse" in capsys.readouterr().err
    assert not (tmp_path / "pairs").exists()


def test_cli_pair_json_reports_the_oracle_counts(q32_run, oracle_counts, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pairs"
    rc = main(["pair", str(q32_run.path), "--strategy", "safety", "--study-compatible", "--split-seed", "0",
               "--out", str(out), "--json"])
    assert rc == 0
    counts = json.loads(capsys.readouterr().out)
    assert {k: counts[k] for k in ("pairs", "scenarios", "train_pairs", "test_pairs")} == {
        "pairs": 932, "scenarios": 108, "train_pairs": oracle_counts["safe"]["train_pairs_s0"], "test_pairs": 932 - 503,
    }
    assert all(isinstance(counts[k], int) for k in ("pairs", "scenarios", "train_pairs", "test_pairs"))
    assert {p.name for p in out.iterdir()} >= {"pairs.parquet", "train.parquet", "test.parquet", "pairing.json"}
    written = json.loads((out / "pairing.json").read_text())
    assert written["pairs"] == 932 and written["config"]["strategy"] == "safety" and written["config"]["study_compatible"]
    assert pl.read_parquet(out / "pairs.parquet").equals(build_pairs(q32_run, PairConfig(strategy="safety")).pairs)

    # a second run into the same folder is refused (exit 2) unless --force
    assert main(["pair", str(q32_run.path), "--strategy", "safety", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["pair", str(q32_run.path), "--strategy", "both", "--out", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 235


def test_cli_pair_bad_input_exits_2(q32_run, tmp_path: Path, capsys) -> None:
    assert main(["pair", str(tmp_path / "no-run"), "--strategy", "safety", "--out", str(tmp_path / "p")]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    assert main(["pair", str(q32_run.path), "--strategy", "kindness", "--out", str(tmp_path / "p")]) == 2
    assert "safety" in capsys.readouterr().err
    assert main(["pair", str(q32_run.path), "--strategy", "safety", "--judge", "gpt-5-mini",
                 "--out", str(tmp_path / "p")]) == 2
    assert "gpt-5-mini" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
