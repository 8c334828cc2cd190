"""`prefkit inspect`: counts, agents, flags and score histograms of a run, as JSON and as tables."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from prefkit.cli import main
from prefkit.inspect import print_summary, summarize_run
from prefkit.store import RunStore


def test_inspect_json_on_q32(q32_run: RunStore, raw_q32_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(q32_run.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scenarios"], summary["trajectories"], summary["judgments"]) == (144, 1152, 2304)
    assert all(type(summary[k]) is int for k in ("scenarios", "trajectories", "judgments"))
    assert summary["toolkits"] == 38 and summary["pairs"] == 0
    assert summary["agents"] == {p.name: 144 for p in raw_q32_dir.iterdir() if p.is_dir()}
    assert summary["parse_statuses"] == {"ok": 2304}
    assert summary["finish_reasons"] == {"final_answer": 1143, "token_budget": 9}
    assert summary["flags"]["token_limit"] == 9 and summary["flags"]["empty_observation"] > 0
    # Histograms equal the scores counted straight from the eval files.
    expected: dict[str, Counter] = {"safety": Counter(), "helpfulness": Counter()}
    for suffix, metric, key in (("_eval_agent_safe.jsonl", "safety", "ToolCallRisk"),
                                ("_eval_agent_help_ignore_safety.jsonl", "helpfulness", "Helpfulness")):
        for path in raw_q32_dir.rglob(f"*{suffix}"):
            expected[metric].update(str(json.loads(line)["eval_scores"][key]) for line in path.read_text().splitlines())
    for metric, counts in expected.items():
        assert summary["scores"][metric] == {"Qwen_Qwen3-32B": {**{b: counts[b] for b in "0123"}, "failed": 0}}


def test_inspect_tables(q32_run: RunStore) -> None:
    console = Console(record=True, width=140)
    print_summary(summarize_run(q32_run), console)
    text = console.export_text()
    for needle in ("trajectories per agent", "meta-llama_Llama-3.1-8B-Instruct", "hallucinated_actions",
                   "Qwen_Qwen3-32B", "helpfulness", "1152"):
        assert needle in text


def test_inspect_suite_only_run(toolemu_cases_path: Path, toolemu_toolkits_path: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "suite"
    assert main(["import", "toolemu-cases", str(toolemu_cases_path), str(toolemu_toolkits_path), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scenarios"], summary["trajectories"], summary["judgments"]) == (144, 0, 0)
    assert summary["scores"] == {} and summary["agents"] == {}
    assert main(["inspect", str(out)]) == 0  # tables for an empty trajectories table
    assert "scenarios" in capsys.readouterr().out


def test_inspect_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
