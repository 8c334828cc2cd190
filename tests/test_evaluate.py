"""``prefkit eval`` end to end on CPU, then ``prefkit frontier`` on its runs.

The tiny source model and the tiny model trained by ``recipes/train/safe.yaml`` (``tiny_safety_model``)
are rolled out on the bundled ``starter`` suite's test scenarios for split seed 0, with the tiny model as
emulator and as judge on the transformers backend. A random tiny judge rarely writes a parseable
verdict: whatever it wrote is stored with its status (failed ones without a score). The runs are then
judged again by a scripted judge on the fake OpenAI server, so the frontier has scores to compare, and
its point is checked against a computation over the runs' own tables.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from prefkit.cli import main

STARTER_SIZE = 12


def starter_test_ids() -> list[str]:
    from prefkit.rollout import load_scenario_suite

    suite = load_scenario_suite("starter")
    assert len(suite.scenarios) == STARTER_SIZE
    idx = list(range(STARTER_SIZE))
    random.Random(0).shuffle(idx)
    test = set(idx[STARTER_SIZE // 2:])
    return [s.id for s in suite.scenarios if s.index in test]


def scripted_judge(offset: int):
    """A judge whose score depends on what it was shown, shifted by ``offset`` (the tiny models write much
    the same text, so the two runs get different offsets to give the frontier a change to measure)."""
    def verdict(body: dict, choice: int) -> str:
        text = body["messages"][-1]["content"]
        return f"Rationale: scripted.\nLabel: whatever\nScore: {(sum(map(ord, text)) + offset) % 4}"

    return verdict


def run_means(run: Path) -> dict[str, dict[str, float | None]]:
    """judge -> metric -> mean over scenarios of the run's scores, straight from its Parquet tables."""
    judgments = pl.read_parquet(run / "judgments.parquet")
    trajectories = pl.read_parquet(run / "trajectories.parquet").select("id", "scenario_id")
    out: dict[str, dict[str, float | None]] = {}
    for row in judgments.join(trajectories, left_on="trajectory_id", right_on="id").iter_rows(named=True):
        out.setdefault(row["judge"]["model"], {}).setdefault(row["metric"], []).append(row["score"])  # type: ignore[arg-type]
    return {judge: {m: (sum(v) / len(v) if (v := [s for s in scores if s is not None]) else None)
                    for m, scores in metrics.items()} for judge, metrics in out.items()}


@pytest.mark.slow
def test_eval_runs_judges_and_feeds_the_frontier(tiny_safety_model, tiny_model_dir, tmp_path, capsys, fake_openai):
    tiny = f"{tiny_model_dir}@transformers"
    common = ["--suite", "starter", "--split-seed", "0", "--emulator", tiny, "--judge", tiny, "--max-tokens", "16",
              "--token-budget", "16", "--judge-max-tokens", "8", "--json"]
    source_run, trained_run = tmp_path / "source", tmp_path / "trained"
    assert main(["eval", tiny, "--name", "tiny", "--out", str(source_run), *common]) == 0
    source = json.loads(capsys.readouterr().out)
    # A `prefkit train` output folder is evaluated through its merged model, under its own name.
    assert main(["eval", tiny_safety_model.out, "--out", str(trained_run), *common]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert (source["name"], trained["name"]) == ("tiny", "dpo_tiny_safe_q32_s0")
    assert trained["model"] == f"{Path(tiny_safety_model.out, 'model').resolve()}@transformers"

    test_ids = starter_test_ids()
    for summary, run in ((source, source_run), (trained, trained_run)):
        assert (summary["scenarios"], summary["trajectories"]) == (len(test_ids), len(test_ids))
        assert pl.read_parquet(run / "scenarios.parquet")["id"].to_list() == test_ids
        trajectories = pl.read_parquet(run / "trajectories.parquet")
        assert sorted(trajectories["scenario_id"]) == sorted(test_ids)
        assert trajectories["agent"].struct.field("name").unique().to_list() == [summary["name"]]
        # Every trajectory judged on both metrics; unparseable verdicts are kept as failed, without a score.
        judgments = pl.read_parquet(run / "judgments.parquet")
        assert judgments.height == 2 * len(test_ids) == sum(summary["judgments"].values())
        assert judgments.filter(pl.col("parse_status") == "failed")["score"].null_count() == summary["judgments"].get(
            "failed", 0)
        evaluation = json.loads((run / "manifest.json").read_text())["evaluation"]
        assert (evaluation["split_seed"], evaluation["suite_size"], evaluation["test_scenarios"]) == (0, 12, test_ids)

    # A second judge with parseable verdicts, then the frontier over both runs.
    for run, offset in ((source_run, 0), (trained_run, 1)):
        fake_openai.responder = scripted_judge(offset)
        assert main(["judge", str(run), "--judge", "scripted@openai", "--answer-format", "text", "--option",
                     f"base_url={fake_openai.base_url}"]) == 0
    capsys.readouterr()
    png = tmp_path / "frontier.png"
    assert main(["frontier", str(source_run), str(trained_run), "--json", "--bootstrap", "0", "--plot", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(p["source"], p["config"], p["models"]) for p in report["points"]] == [
        ("tiny", "S-0.1", ["dpo_tiny_safe_q32_s0"])]
    assert report["r2"] is None  # one point: no line to fit
    assert png.stat().st_size > 10_000

    # The point: per judge, the mean over the 6 scenarios; then the mean over judges that scored any.
    def config_mean(run: Path, metric: str) -> float:
        values = [m[metric] for m in run_means(run).values() if m.get(metric) is not None]
        return sum(values) / len(values)

    point = report["points"][0]
    for metric in ("safety", "helpfulness"):
        assert point[metric] == pytest.approx(config_mean(trained_run, metric), abs=1e-12)
        assert point[f"d_{metric}"] == pytest.approx(config_mean(trained_run, metric) - config_mean(source_run, metric),
                                                     abs=1e-12)
    assert "scripted" in report["judges"]
    assert (point["d_safety"], point["d_helpfulness"]) != (0, 0)  # a point the plot shows off the origin
