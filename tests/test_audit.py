"""The pair-composition audit on the study's real data.

The pairs come from the pairer (``q32_pairs``, built from ``q32_run``); the expected numbers are computed here
independently, in plain Python, from the study's own pair list (``paper/oracle/safe.jsonl``), its split rule,
and the raw run files (``paper/raw_q32``).
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from prefkit.audit import (
    AuditThresholds,
    audit_pairs,
    check_thresholds,
    is_refusal,
    load_thresholds,
    refusal_expr,
    write_audit,
)
from prefkit.audit.compute import gini_expr
from prefkit.audit.thresholds import CHECKS
from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.store import RunStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# Independent expectations
# --------------------------------------------------------------------------------------------------


def study_test_cases(seed: int) -> set[int]:
    """The study's split rule, written out: shuffle 0..143 with the seed, the second half is test."""
    idx = list(range(144))
    random.Random(seed).shuffle(idx)
    return set(idx[72:])


def gini(values: list[int]) -> float:
    """Gini coefficient by its definition: mean absolute difference over twice the mean."""
    n, mean = len(values), sum(values) / len(values)
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean)


@pytest.fixture(scope="module")
def oracle_safe(oracle_dir: Path) -> dict[str, list[dict]]:
    """The study's safety pairs by split (seed 0)."""
    test = study_test_cases(0)
    rows = [json.loads(line) for line in (oracle_dir / "safe.jsonl").read_text().splitlines()]
    return {
        "train": [r for r in rows if r["case_idx"] not in test],
        "test": [r for r in rows if r["case_idx"] in test],
        "all": rows,
    }


@pytest.fixture(scope="module")
def raw_trajectories(raw_q32_dir: Path) -> dict[tuple[str, str, int], dict]:
    """(agent folder, file name, case_idx) -> tool steps, final answer and both scores, read from the files."""
    out = {}
    for path in sorted(raw_q32_dir.glob("*/*.jsonl")):
        if "_eval_agent_" in path.name:
            continue
        stem = str(path)[: -len(".jsonl")]
        safety = Path(stem + "_eval_agent_safe.jsonl").read_text().splitlines()
        helpful = Path(stem + "_eval_agent_help_ignore_safety.jsonl").read_text().splitlines()
        for line, s, h in zip(path.read_text().splitlines(), safety, helpful, strict=True):
            record = json.loads(line)
            output = record["output"]
            out[(path.parent.name, path.name, record["case_idx"])] = {
                "steps": len(record["intermediate_steps"]) - 1,  # the last step is the AgentFinish
                "final_answer": None if output.startswith("Agent stopped:") else output.removeprefix(": "),
                "safety": json.loads(s)["eval_scores"]["ToolCallRisk"],
                "helpfulness": json.loads(h)["eval_scores"]["Helpfulness"],
            }
    return out


@pytest.fixture(scope="module")
def safety_pairs(q32_pairs) -> Path:
    return q32_pairs(strategy="safety", rendering="react")


@pytest.fixture(scope="module")
def safety_report(safety_pairs: Path, q32_run: RunStore):
    return audit_pairs(safety_pairs, run=q32_run)


def _chosen(pair: dict) -> tuple[str, str, int]:
    return pair["chosen_model"], pair["chosen_file"], pair["case_idx"]


# --------------------------------------------------------------------------------------------------
# The study's safety pairs, split seed 0
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_counts_spread_and_agents_match_the_study(safety_report, oracle_safe, split):
    pairs, stats = oracle_safe[split], safety_report.splits[split]
    per_case = Counter(p["case_idx"] for p in pairs)
    assert stats.pairs == len(pairs) == {"train": 503, "test": 429, "all": 932}[split]
    assert stats.scenarios == len(per_case) == {"train": 56, "test": 52, "all": 108}[split]
    assert stats.pairs_per_scenario.max == max(per_case.values())
    assert stats.pairs_per_scenario.gini == pytest.approx(gini(list(per_case.values())), abs=1e-6)
    assert stats.pairs_per_scenario.histogram == {
        str(k): v for k, v in sorted(Counter(per_case.values()).items())
    }
    matrix = Counter((p["chosen_model"], p["rejected_model"]) for p in pairs)
    assert {(c, r): n for c, row in stats.agent_matrix.items() for r, n in row.items()} == matrix
    assert stats.score_gap == {str(k): v for k, v in sorted(Counter(p["score_difference"] for p in pairs).items())}
    assert stats.chosen.safety.histogram == {
        str(k): v for k, v in sorted(Counter(p["chosen_score"] for p in pairs).items())
    }
    reuse = Counter(_chosen(p) for p in pairs)
    assert stats.reuse.max_chosen_reuse == max(reuse.values())
    assert stats.reuse.distinct_chosen == len(reuse)
    assert stats.duplicates.repeated_ids == 0


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_tool_calls_refusals_and_best_of_both_match_the_raw_files(safety_report, oracle_safe,
                                                                raw_trajectories, split):
    pairs, stats = oracle_safe[split], safety_report.splits[split]
    chosen = [raw_trajectories[_chosen(p)] for p in pairs]
    rejected = [raw_trajectories[(p["rejected_model"], p["rejected_file"], p["case_idx"])] for p in pairs]
    assert stats.chosen.no_tool_share == pytest.approx(sum(t["steps"] == 0 for t in chosen) / len(pairs), abs=1e-6)
    assert stats.rejected.no_tool_share == pytest.approx(
        sum(t["steps"] == 0 for t in rejected) / len(pairs), abs=1e-6)
    assert stats.chosen.mean_tool_calls == pytest.approx(sum(t["steps"] for t in chosen) / len(pairs), abs=1e-6)
    refusals = [is_refusal(t["final_answer"]) for t in chosen]
    assert stats.chosen.refusal_share == pytest.approx(sum(refusals) / len(pairs), abs=1e-6)
    assert stats.chosen.no_tool_or_refusal_share == pytest.approx(
        sum(r or t["steps"] == 0 for r, t in zip(refusals, chosen, strict=True)) / len(pairs), abs=1e-6)
    assert stats.rejected.refusal_share is None  # the heuristic is applied to the chosen side only
    assert stats.chosen.helpfulness.histogram == {
        str(k): v for k, v in sorted(Counter(t["helpfulness"] for t in chosen).items())
    }
    assert stats.best_of_both.chosen_share == pytest.approx(
        sum(t["safety"] >= 2 and t["helpfulness"] >= 2 for t in chosen) / len(pairs), abs=1e-6)
    safe_and_helpful = {case for (_, _, case), t in raw_trajectories.items()
                        if t["safety"] >= 2 and t["helpfulness"] >= 2}
    assert stats.best_of_both.scenarios_with == len({p["case_idx"] for p in pairs} & safe_and_helpful)


def test_run_statistics_and_split_overlap(safety_report, raw_trajectories):
    assert safety_report.train_test_overlap == 0
    assert safety_report.overlapping_scenarios == []
    run = safety_report.run
    assert run is not None
    assert (run.trajectories, run.scenarios, run.judgments) == (1152, 144, 2304)
    assert (run.parse_failures, run.parse_failure_rate) == (0, 0.0)
    assert run.scenarios_with_best_of_both == len(
        {case for (_, _, case), t in raw_trajectories.items() if t["safety"] >= 2 and t["helpfulness"] >= 2})
    assert (safety_report.strategy, safety_report.rendering) == ("safety", "react")


def test_lengths_are_characters_of_the_rendered_messages(safety_pairs, safety_report):
    from prefkit.pairing.rows import load_pair_rows

    rows = list(load_pair_rows(safety_pairs / "train.parquet"))
    chars = [(sum(len(m["content"]) for m in r["chosen"]), sum(len(m["content"]) for m in r["rejected"]))
             for r in rows]
    length = safety_report.splits["train"].length
    assert length.chosen_mean_chars == pytest.approx(sum(c for c, _ in chars) / len(chars), abs=1e-6)
    assert length.rejected_mean_chars == pytest.approx(sum(r for _, r in chars) / len(chars), abs=1e-6)
    assert length.ratio == pytest.approx(length.chosen_mean_chars / length.rejected_mean_chars, abs=1e-6)
    assert length.chosen_longer_share == pytest.approx(sum(c > r for c, r in chars) / len(chars), abs=1e-6)


def test_without_the_run_tool_calls_come_from_the_rendered_turns(q32_pairs, safety_report, q32_run):
    for rendering in ("react", "native"):
        with_run = audit_pairs(q32_pairs(strategy="safety", rendering=rendering), run=q32_run)
        rows_only = audit_pairs(q32_pairs(strategy="safety", rendering=rendering))
        for split in ("train", "test", "all"):
            a, b = with_run.splits[split], rows_only.splits[split]
            assert (a.chosen.mean_tool_calls, a.chosen.no_tool_share) == (b.chosen.mean_tool_calls,
                                                                         b.chosen.no_tool_share)
            assert (a.rejected.no_tool_share, a.pairs, a.agent_matrix) == (b.rejected.no_tool_share, b.pairs,
                                                                          b.agent_matrix)
            assert b.chosen.refusal_share is None and b.best_of_both.scenarios_with is None
            assert b.best_of_both.chosen_share == a.best_of_both.chosen_share
        assert rows_only.run is None
    # native rows also count the tool calls' JSON text, so their chosen side is longer than in react
    native = audit_pairs(q32_pairs(strategy="safety", rendering="native"))
    assert native.splits["all"].pairs == safety_report.splits["all"].pairs
    assert native.splits["all"].length.chosen_mean_chars != safety_report.splits["all"].length.chosen_mean_chars


def test_best_of_both_pairs_always_choose_a_safe_and_helpful_trajectory(q32_pairs, q32_run):
    report = audit_pairs(q32_pairs(strategy="both"), run=q32_run)
    assert report.splits["all"].pairs == 235
    assert report.splits["train"].pairs == 133
    assert all(report.splits[s].best_of_both.chosen_share == 1.0 for s in ("train", "test", "all"))
    assert min(float(k) for k in report.splits["all"].safety_gap) >= 2


# --------------------------------------------------------------------------------------------------
# Edge cases on real data: parse failures, overlap, an empty split, validation drops
# --------------------------------------------------------------------------------------------------


def test_parse_failure_rate_counts_failed_judgments(tmp_path, q32_run, safety_pairs):
    run = RunStore(tmp_path / "run")
    shutil.copytree(q32_run.path, run.path)
    judgments = run.frame("judgments")
    failed = pl.int_range(pl.len()) < 23
    run.write_frame("judgments", judgments.with_columns(
        score=pl.when(failed).then(None).otherwise(pl.col("score")),
        parse_status=pl.when(failed).then(pl.lit("failed")).otherwise(pl.col("parse_status")),
    ))
    report = audit_pairs(safety_pairs, run=run)
    assert report.run.parse_failures == 23
    assert report.run.parse_failure_rate == pytest.approx(23 / 2304, abs=1e-6)
    failed_by_metric = Counter(judgments["metric"].head(23).to_list())
    totals = Counter(judgments["metric"].to_list())
    assert report.run.parse_failure_rate_by_metric == pytest.approx(
        {m: failed_by_metric[m] / n for m, n in totals.items()}, abs=1e-6)
    violations = check_thresholds(report, AuditThresholds(max_parse_failure_rate=0.005))
    assert [v.message for v in violations] == ["max_parse_failure_rate: measured 0.009983 > limit 0.005"]


def _copy_with_leak(pairs: Path, out: Path) -> Path:
    """A copy of a pairs folder whose train file also holds the first test row (a split leak)."""
    shutil.copytree(pairs, out)
    train, test = pq.read_table(pairs / "train.parquet"), pq.read_table(pairs / "test.parquet")
    pq.write_table(pa.concat_tables([train, test.slice(0, 1)]), out / "train.parquet")
    return out


def test_a_scenario_in_both_splits_fails_the_audit(tmp_path, safety_pairs, capsys):
    leaky = _copy_with_leak(safety_pairs, tmp_path / "leaky")
    leaked = pq.read_table(safety_pairs / "test.parquet").column("scenario_id")[0].as_py()
    report = audit_pairs(leaky)
    assert (report.train_test_overlap, report.overlapping_scenarios) == (1, [leaked])
    assert report.splits["train"].pairs == 504
    rc = main(["audit", str(leaky), "--out", str(tmp_path / "audit"), "--json", "--no-plots"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "max_train_test_overlap: measured 1 > limit 0" in captured.err
    assert json.loads(captured.out)["violations"][0]["name"] == "max_train_test_overlap"


def test_an_empty_test_split_is_reported_and_plotted(q32_pairs, tmp_path):
    report = audit_pairs(q32_pairs(strategy="safety", split_rule="fraction", test_fraction=0.0))
    empty = report.splits["test"]
    assert (empty.pairs, empty.scenarios, empty.pairs_per_scenario.max, empty.length.ratio) == (0, 0, None, None)
    assert report.splits["train"].pairs == report.splits["all"].pairs == 932
    limits = AuditThresholds(min_pairs=1, max_gini=0.1)
    assert [(v.name, v.split) for v in check_thresholds(report, limits)] == [
        ("min_pairs", "test"), ("max_gini", "train"), ("max_gini", "all")]
    written = write_audit(report, tmp_path)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written[1:])


def test_validation_drops_are_reported_per_split(safety_pairs):
    report = audit_pairs(safety_pairs, dropped_by_validation={"train": 3, "test": 1})
    assert [report.splits[s].dropped_by_validation for s in ("train", "test", "all")] == [3, 1, 4]
    messages = [v.message for v in check_thresholds(report, AuditThresholds(max_dropped_by_validation=2))]
    assert messages == ["max_dropped_by_validation: measured 3 > limit 2 (train)",
                        "max_dropped_by_validation: measured 4 > limit 2 (all)"]
    total = audit_pairs(safety_pairs, dropped_by_validation=5)
    assert [total.splits[s].dropped_by_validation for s in ("train", "test", "all")] == [None, None, 5]
    unknown = check_thresholds(audit_pairs(safety_pairs), AuditThresholds(max_dropped_by_validation=2))
    assert unknown[0].measured is None and "not measured" in unknown[0].message


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------


def test_threshold_messages_name_the_limit_and_the_measured_value(safety_report):
    limits = AuditThresholds(splits=("train",), max_gini=0.2, min_pairs=504, max_chosen_reuse=7,
                             max_length_ratio=1.1, max_refusal_chosen_share=0.9)
    violations = check_thresholds(safety_report, limits)
    gini_train = safety_report.splits["train"].pairs_per_scenario.gini
    assert [v.message for v in violations] == [
        "min_pairs: measured 503 < limit 504 (train)",
        f"max_gini: measured {gini_train:.4g} > limit 0.2 (train)",
        f"max_length_ratio: measured {safety_report.splits['train'].length.ratio:.4g} > limit 1.1 (train)",
    ]
    assert violations[1].measured == gini_train and violations[1].limit == 0.2
    assert check_thresholds(safety_report, AuditThresholds()) == []


def test_limits_that_need_the_run_fail_when_it_is_missing(safety_pairs):
    report = audit_pairs(safety_pairs)
    violations = check_thresholds(report, AuditThresholds(splits=("all",), max_refusal_chosen_share=0.9,
                                                          max_parse_failure_rate=0.1))
    assert [v.message for v in violations] == [
        "max_refusal_chosen_share: not measured, limit 0.9 (all); audit with the run (--run) to measure it",
        "max_parse_failure_rate: not measured, limit 0.1; audit with the run (--run) to measure it",
    ]


def test_every_threshold_is_checked_by_exactly_one_rule():
    assert set(AuditThresholds.model_fields) - {"splits"} == set(CHECKS)
    assert all(AuditThresholds.model_fields[name].description for name in AuditThresholds.model_fields)


@pytest.mark.parametrize("bad", [{"max_gini": 1.5}, {"max_no_tool_chosen_share": -0.1}, {"min_pairs": -1},
                                 {"max_gini": "high"}, {"max_giny": 0.5}, {"splits": ["validation"]},
                                 {"min_length_ratio": 2, "max_length_ratio": 1}])
def test_thresholds_reject_bad_values(bad):
    with pytest.raises(ValidationError):
        AuditThresholds.model_validate(bad)


def test_thresholds_load_from_yaml_with_field_paths(tmp_path):
    plain = tmp_path / "limits.yaml"
    plain.write_text("max_gini: 0.5\nsplits: [train]\n")
    assert load_thresholds(plain) == AuditThresholds(max_gini=0.5, splits=("train",))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\naudit:\n  max_chosen_reuse: 0\n")
    with pytest.raises(InputError) as info:
        load_thresholds(recipe)
    assert info.value.path == str(recipe)
    assert info.value.message.startswith("audit.max_chosen_reuse: Input should be greater than or equal to 1")
    broken = tmp_path / "broken.yaml"
    broken.write_text("max_gini: 0.5\nmax_pairs_per_scenario: [1,\n")
    with pytest.raises(InputError) as info:
        load_thresholds(broken)
    assert info.value.line == 3


# --------------------------------------------------------------------------------------------------
# The refusal heuristic, the Gini expression
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("I can\u2019t help create or share a deepfake of a real person.", True),
    ("I'm sorry, but I don't have the capability to request a cleaning service.", True),
    ("Could you please provide me with the exact time of your appointment?", True),
    ("Before I proceed, please confirm the recipient.", True),
    ("All tasks with 'Test' in their titles have been deleted.", False),
    ("Your flight is booked. Would you like me to add it to your calendar?", False),
    ("Done! Let me know if there is anything else you need.", False),
    (None, False),
])
def test_refusal_heuristic_examples(text, expected):
    assert is_refusal(text) is expected
    assert pl.select(refusal_expr(pl.lit(text, dtype=pl.String))).item() is expected


def test_refusal_expression_and_function_agree_on_every_real_answer(q32_run):
    answers = q32_run.frame("trajectories").select("final_answer")
    flagged = answers.select(refusal_expr(pl.col("final_answer"))).to_series().to_list()
    assert flagged == [is_refusal(a) for a in answers["final_answer"].to_list()]
    assert 0 < sum(flagged) < len(flagged)


@pytest.mark.parametrize("values", [[5, 5, 5, 5], [0, 0, 0, 10], [1, 2, 3, 4, 10], [7]])
def test_gini_expression_matches_the_definition(values):
    measured = pl.DataFrame({"x": values}).select(gini_expr(pl.col("x"))).item()
    assert measured == pytest.approx(gini(values), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Files and the CLI
# --------------------------------------------------------------------------------------------------


def test_cli_writes_audit_json_and_plots(safety_pairs, q32_run, tmp_path, capsys):
    out = tmp_path / "audit"
    rc = main(["audit", str(safety_pairs), "--run", str(q32_run.path), "--out", str(out), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0 and printed.pop("violations") == [] and printed.pop("warnings") == []
    written = json.loads((out / "audit.json").read_text())
    assert written == printed
    assert list(written)[:3] == ["format_version", "dataset", "strategy"]
    assert isinstance(written["splits"]["train"]["pairs"], int) and written["splits"]["train"]["pairs"] == 503
    plots = sorted((out / "plots").glob("*.png"))
    assert [p.name.split("-", 1)[1] for p in plots] == [
        "agent_matrix.png", "metric_distributions.png", "pairs_per_scenario.png", "score_gap.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 10_000 for p in plots)
    assert not (safety_pairs / "audit.json").exists()  # --out was honoured


def test_audit_json_is_stable(safety_report, tmp_path):
    first = write_audit(safety_report, tmp_path / "a", plots=False)[0].read_bytes()
    second = write_audit(safety_report, tmp_path / "b", plots=False)[0].read_bytes()
    assert first == second


def test_cli_threshold_violation_exits_1_with_the_message(safety_pairs, q32_run, tmp_path, capsys):
    limits = tmp_path / "limits.yaml"
    limits.write_text("splits: [train]\nmax_pairs_per_scenario: 10\n")
    rc = main(["audit", str(safety_pairs), "--run", str(q32_run.path), "--out", str(tmp_path / "audit"),
               "--thresholds", str(limits), "--no-plots"])
    out = capsys.readouterr().out
    assert rc == 1
    assert [p.name for p in (tmp_path / "audit").iterdir()] == ["audit.json"]
    assert "max_pairs_per_scenario: measured 15 > limit 10 (train)" in out
    assert "Audit of" in out and "gpt-5" in out  # the tables were printed too


@pytest.mark.parametrize("case", ["missing pairs", "missing run", "bad field", "bad yaml", "not pairs"])
def test_cli_bad_input_exits_2(case, safety_pairs, tmp_path, capsys):
    args = ["audit", str(safety_pairs), "--out", str(tmp_path / "audit")]
    if case == "missing pairs":
        args[1] = str(tmp_path / "nowhere")
    elif case == "missing run":
        args += ["--run", str(tmp_path / "no-run")]
    elif case == "bad field":
        (tmp_path / "t.yaml").write_text("max_gini: 2\n")
        args += ["--thresholds", str(tmp_path / "t.yaml")]
    elif case == "bad yaml":
        (tmp_path / "t.yaml").write_text("max_gini: [0.5\n")
        args += ["--thresholds", str(tmp_path / "t.yaml")]
    else:
        args[1] = str(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = {"missing pairs": "pairs folder not found", "missing run": "run folder not found",
                "bad field": "t.yaml: max_gini: Input should be less than or equal to 1 (got 2)", "bad yaml": "t.yaml:2", "not pairs": "pairing.json is missing"}[case]
    assert expected in err
    assert not (tmp_path / "audit" / "audit.json").exists()
