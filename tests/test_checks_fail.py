"""Checks that fail say so: a command with nothing to work on names what is missing and exits 1.

- ``prefkit pair`` on a run without trajectories, without judgments on a metric its strategy reads, or with
  only failed judgments (it used to write "0 pairs", exit 0, with a leaked polars warning);
- ``prefkit frontier`` on results whose judgments all failed (it used to print R² null silently) and on
  trained models' results without their source model's evaluation (it used to print "n/a" everywhere);
  its JSON and plot are still written.

The inputs are the study's own files: the suite, raw_q32 imported (``q32_run``) and results_q32_s0.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest

from prefkit.cli import main
from prefkit.records import Judgment
from prefkit.store import RunStore, new_run

SOURCE = "Qwen_Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def results_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "paper" / "results_q32_s0"
    if not path.is_dir():
        pytest.skip(f"reference data missing: {path}")
    return path


def copy_run(q32_run: RunStore, out: Path, judgments: list[Judgment] | None) -> Path:
    """raw_q32's suite and trajectories, with ``judgments`` (none: no judgments table)."""
    with new_run(out, created_by="test") as store:
        for table in ("scenarios", "toolkits", "trajectories"):
            store.write(table, q32_run.read(table))
        if judgments is not None:
            store.write("judgments", judgments)
    return out


def failed(j: Judgment) -> Judgment:
    return j.model_copy(update={"score": None, "label": None, "parse_status": "failed"})


# prefkit pair -------------------------------------------------------------------------------------


def pair(run: Path, tmp_path: Path, capsys, *strategy: str) -> tuple[int, str]:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning may leak
        code = main(["pair", str(run), "--strategy", *strategy, "--out", str(tmp_path / "pairs")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_pair_without_judgments_names_the_metric_and_how_to_judge(q32_run, tmp_path, capsys):
    run = copy_run(q32_run, tmp_path / "unjudged", None)
    code, said = pair(run, tmp_path, capsys, "safety")
    assert code == 1
    assert f"no safety judgments in run {run}" in said
    assert f"prefkit judge {run} --judge MODEL@BACKEND --metrics safety" in said
    assert "0 safety pairs" not in said and not (tmp_path / "pairs").exists()


def test_pair_names_each_metric_the_strategy_reads(q32_run, tmp_path, capsys):
    # Judged on safety only: safety pairs are made, but `both` also reads helpfulness.
    safety_only = [j for j in q32_run.read("judgments") if j.metric == "safety"]
    run = copy_run(q32_run, tmp_path / "safety-only", safety_only)
    code, said = pair(run, tmp_path, capsys, "both")
    assert code == 1 and "no helpfulness judgments by judge 'Qwen_Qwen3-32B'" in said
    assert "--metrics helpfulness" in said
    code, said = pair(run, tmp_path, capsys, "safety")
    assert code == 0 and "932 safety pairs" in said


def test_pair_with_only_failed_judgments_says_they_failed(q32_run, tmp_path, capsys):
    judgments = [failed(j) if j.metric == "helpfulness" else j for j in q32_run.read("judgments")]
    run = copy_run(q32_run, tmp_path / "failed", judgments)
    code, said = pair(run, tmp_path, capsys, "helpfulness")
    assert code == 1 and "every helpfulness (1152 judgments) judgment by judge 'Qwen_Qwen3-32B'" in said
    assert f"prefkit rescore {run}" in said


def test_pair_on_a_suite_without_trajectories(toolemu_cases_path, toolemu_toolkits_path, tmp_path, capsys):
    suite = tmp_path / "suite"
    assert main(["import", "toolemu-cases", str(toolemu_cases_path), str(toolemu_toolkits_path),
                 "--out", str(suite)]) == 0
    code, said = pair(suite, tmp_path, capsys, "safety")
    assert code == 1 and f"run {suite} holds no trajectories" in said and "prefkit rollout" in said


# prefkit frontier ---------------------------------------------------------------------------------


def fail_evals(folder: Path) -> None:
    """Every eval line of a results folder turned into a judge error record (as ToolEmu writes them)."""
    for evals in folder.glob("*_eval_agent_*.jsonl"):
        lines = evals.read_text().splitlines()
        evals.write_text("".join(json.dumps({"error": "judge failed", "eval_id": i}) + "\n" for i in range(len(lines))))


def frontier(args: list[str], capsys) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["frontier", *args, "--json", "--bootstrap", "0"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_frontier_with_all_judgments_failed_names_the_models(results_dir, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(results_dir, results)
    broken = ["dpo_Qwen2.5-7B_help_q32_s0", "dpo_Qwen2.5-7B_safe_q32_s0"]
    for name in broken:
        fail_evals(results / name)
    png = tmp_path / "frontier.png"
    code, report, err = frontier([str(results), "--plot", str(png)], capsys)
    assert code == 1
    for metric in ("safety", "helpfulness"):
        assert f"no {metric} scores for {', '.join(broken)}:" in err
    assert report["problems"] and all(p in err for p in report["problems"])  # the JSON is still printed
    assert png.read_bytes()[:4] == b"\x89PNG"  # and the plot still drawn, from the 8 points that have scores
    assert [p["config"] for p in report["points"] if p["d_safety"] is None] == ["H-0.1", "S-0.1"]
    assert report["r2"] is not None

    # Every judgment of every model failed: nothing to fit, and every model is named.
    for folder in results.iterdir():
        fail_evals(folder)
    code, report, err = frontier([str(results)], capsys)
    assert code == 1 and report["r2"] is None
    assert f"no safety scores for {SOURCE}, dpo_Qwen2.5-7B_both_q32_beta-0.05_s0" in err and "and 7 more" in err


def test_frontier_of_a_prefkit_run_with_failed_judgments(results_dir, toolemu_cases_path, toolemu_toolkits_path,
                                                          tmp_path, capsys):
    # The same through a prefkit run (what `prefkit eval` writes): the source and one trained model imported.
    models = tmp_path / "models"
    for name in (SOURCE, "dpo_Qwen2.5-7B_safe_q32_s0"):
        shutil.copytree(results_dir / name, models / name)
    run = tmp_path / "run"
    assert main(["import", "toolemu", str(models), "--cases", str(toolemu_cases_path), "--toolkits",
                 str(toolemu_toolkits_path), "--out", str(run)]) == 0
    store = RunStore(run)
    trained = set(store.frame("trajectories").filter(
        pl.col("agent").struct.field("name") == "dpo_Qwen2.5-7B_safe_q32_s0")["id"])
    store.write("judgments", [failed(j) if j.trajectory_id in trained and j.metric == "safety" else j
                              for j in store.read("judgments")])
    code, report, err = frontier([str(run)], capsys)
    assert code == 1 and "no safety scores for dpo_Qwen2.5-7B_safe_q32_s0:" in err
    assert "helpfulness scores" not in err and report["points"][0]["d_helpfulness"] is not None


def test_frontier_without_the_source_names_it_and_how_it_is_found(results_dir, tmp_path, capsys):
    trained = [str(p) for p in sorted(results_dir.iterdir()) if p.name != SOURCE]
    code, report, err = frontier(trained, capsys)
    assert code == 1 and len(report["points"]) == 10 and report["r2"] is None
    assert "no evaluation of the source model Qwen2.5-7B among the inputs" in err
    assert "the results folder Qwen_Qwen2.5-7B-Instruct" in err and "--source NAME=Qwen2.5-7B" in err
    assert "(source models given: none)" in err

    # A source under a name that does not give the nickname: named as given, and --source fixes it.
    renamed = tmp_path / "base-model"
    shutil.copytree(results_dir / SOURCE, renamed)
    code, _, err = frontier([str(renamed), *trained], capsys)
    assert code == 1 and "source models given: base-model (as base-model)" in err
    code, report, err = frontier([str(renamed), *trained, "--source", "base-model=Qwen2.5-7B"], capsys)
    assert code == 0 and err == "" and report["problems"] == [] and report["r2"] is not None
