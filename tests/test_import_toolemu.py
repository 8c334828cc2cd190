"""ToolEmu import: the scenario suite, the study's judged run files (raw_q32), and bad input.

Expected values are re-read from the reference files independently of prefkit's importer.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from jsonschema import Draft202012Validator

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.sources.toolemu import (
    import_toolemu_cases,
    import_toolemu_runs,
    load_cases,
    load_toolkits,
    write_toolemu_import,
)
from prefkit.sources.toolemu_files import RunFileName
from prefkit.store import RunStore

EVAL_SUFFIXES = ("_eval_agent_safe.jsonl", "_eval_agent_help_ignore_safety.jsonl", "_eval_agent_help.jsonl")
GPT5_STEM = "gpt-5_emu-Qwen_Qwen3-8B_eval-Qwen_Qwen3-32B_r0-15_2601_145907"
SAFE = "_eval_agent_safe.jsonl"
HELP = "_eval_agent_help_ignore_safety.jsonl"


def trajectory_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*.jsonl") if not p.name.endswith(EVAL_SUFFIXES)),
                  key=lambda p: p.relative_to(root).parts)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def copy_gpt5_run(raw_q32_dir: Path, dest: Path, *, stem: str = GPT5_STEM) -> Path:
    """Copy gpt-5's r0-15 trajectory file and its two eval files into ``dest`` (renamed to ``stem``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".jsonl", SAFE, HELP):
        shutil.copyfile(raw_q32_dir / "gpt-5" / f"{GPT5_STEM}{suffix}", dest / f"{stem}{suffix}")
    return dest


@pytest.fixture
def small_runs(tmp_path: Path, raw_q32_dir: Path) -> Path:
    """A runs folder holding one real run (gpt-5, cases 0-14) to corrupt."""
    copy_gpt5_run(raw_q32_dir, tmp_path / "runs" / "gpt-5")
    return tmp_path / "runs"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, " ".join(captured.err.split())  # rich wraps long lines


def import_args(runs: Path, out: Path, cases: Path, toolkits: Path) -> list:
    return ["import", "toolemu", runs, "--cases", cases, "--toolkits", toolkits, "--out", out]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "a partial run was left"


# The scenario suite --------------------------------------------------------------------------------


def test_all_cases_load_as_scenarios(toolemu_cases_path: Path) -> None:
    raw = json.loads(toolemu_cases_path.read_text())
    scenarios = load_cases(toolemu_cases_path)
    assert len(scenarios) == len(raw) == 144
    for index, (s, case) in enumerate(zip(scenarios, raw, strict=True)):
        assert (s.id, s.index, s.suite) == (f"official_{index}", index, "toolemu")
        assert s.instruction == case["User Instruction"]
        assert list(s.toolkits) == case["Toolkits"]
        assert list(s.underspecified_task_information) == case["Underspecifications"]["Task Information"]
        assert list(s.underspecified_safety_constraints) == case["Underspecifications"]["Safety & Security Constraints"]
        assert list(s.expected_achievements) == case["Expected Achievements"]
        assert list(s.risky_outcomes) == case["Potential Risky Outcomes"]
        assert list(s.risky_actions) == case["Potential Risky Actions"]


def test_all_toolkits_load_with_330_tools(toolemu_toolkits_path: Path) -> None:
    toolkits = load_toolkits(toolemu_toolkits_path)
    assert len(toolkits) == 38
    tools = {t.name: t for k in toolkits for t in k.tools}
    assert len(tools) == 330
    assert tools["TodoistSearchTasks"].toolkit == "Todoist"
    assert tools["TerminalExecute"].parameters[0].name == "command"
    # The two parameters without "required" count as required; the two tools without exceptions have none.
    redirect = {p.name: p for p in tools["EmergencyDispatchSystemRedirectDispatchResources"].parameters}
    assert redirect["target_type"].required and redirect["incident_id_or_new_location"].required
    assert tools["FedExShipManagerSearchSavedAddresses"].exceptions == ()
    assert tools["TrafficControlCheckTrafficLightsStates"].exceptions == ()
    optional = [p for t in tools.values() for p in t.parameters if not p.required]
    assert optional and all(p.name not in t.json_schema()["function"]["parameters"]["required"]
                            for t in tools.values() for p in t.parameters if not p.required)


def _example_value(type_: str) -> object:
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}[type_]


def test_every_tool_schema_is_a_valid_json_schema(toolemu_toolkits_path: Path) -> None:
    tools = [t for k in load_toolkits(toolemu_toolkits_path) for t in k.tools]
    assert len(tools) == 330
    for tool in tools:
        schema = tool.json_schema()
        assert schema["type"] == "function" and schema["function"]["name"] == tool.name
        parameters = schema["function"]["parameters"]
        Draft202012Validator.check_schema(parameters)
        for prop in parameters["properties"].values():
            Draft202012Validator.check_schema(prop)
        # The schema accepts a call with every required argument and rejects one that lacks one.
        validator = Draft202012Validator(parameters)
        call = {p.name: _example_value(p.type) for p in tool.parameters if p.required}
        validator.validate(call)
        if call:
            assert not validator.is_valid(dict(list(call.items())[1:]))


# raw_q32 ------------------------------------------------------------------------------------------


def test_q32_import_counts(q32_run: RunStore) -> None:
    assert q32_run.counts() == {"scenarios": 144, "toolkits": 38, "trajectories": 1152, "judgments": 2304}
    per_agent = q32_run.frame("trajectories").select(pl.col("agent").struct.field("name")).to_series().value_counts()
    assert per_agent.height == 8 and per_agent["count"].to_list() == [144] * 8
    per_case = q32_run.frame("trajectories").group_by("scenario_id").len()
    assert per_case.height == 144 and set(per_case["len"]) == {8}
    judgments = q32_run.frame("judgments")
    assert judgments["parse_status"].unique().to_list() == ["ok"]
    assert sorted(judgments.group_by("metric").len().rows()) == [("helpfulness", 1152), ("safety", 1152)]


def test_q32_scores_equal_the_eval_files(q32_run: RunStore, raw_q32_dir: Path) -> None:
    expected = {}  # (trajectory file, line, metric) -> eval_scores value
    for traj in trajectory_files(raw_q32_dir):
        rel = traj.relative_to(raw_q32_dir).as_posix()
        for suffix, metric, key in ((SAFE, "safety", "ToolCallRisk"), (HELP, "helpfulness", "Helpfulness")):
            for line, record in enumerate(read_lines(traj.with_name(traj.name.removesuffix(".jsonl") + suffix))):
                expected[(rel, line, metric)] = record["eval_scores"][key]
    sources = q32_run.frame("trajectories").select(
        pl.col("id").alias("trajectory_id"),
        pl.col("source").struct.field("file"),
        pl.col("source").struct.field("line"),
    )
    got = q32_run.frame("judgments").join(sources, on="trajectory_id", how="left")
    assert got["file"].null_count() == 0
    found = {(f, line, m): s for f, line, m, s in got.select("file", "line", "metric", "score").rows()}
    assert len(expected) == 2304
    assert found == expected


def test_q32_trajectories_follow_the_study_order_and_files(q32_run: RunStore, raw_q32_dir: Path) -> None:
    trajectories = q32_run.read("trajectories")
    expected = [(p.relative_to(raw_q32_dir).as_posix(), line)
                for p in trajectory_files(raw_q32_dir) for line in range(len(read_lines(p)))]
    assert [(t.source.file, t.source.line) for t in trajectories] == expected
    folders = list(dict.fromkeys(t.agent.name for t in trajectories))
    assert folders.index("gpt-5") == folders.index("gpt-5-nano") - 1  # path parts, not plain strings
    first = trajectories[0]
    record = read_lines(raw_q32_dir / first.source.file)[0]
    assert first.agent.model == first.agent.name == "Qwen_Qwen2.5-7B-Instruct"
    assert (first.agent.backend, first.agent.quantization, first.agent.sampling.temperature) == ("toolemu", None, 0.0)
    assert first.emulator == "Qwen_Qwen3-8B" and first.scenario_id == f"official_{record['case_idx']}"
    tool_steps = [s for s in record["intermediate_steps"] if isinstance(s[0], list)]
    assert [(s.tool, s.tool_input, s.agent_log, s.observation, s.emulator_summary, s.emulator_log)
            for s in first.steps] == [(*a, *o) for a, o in tool_steps]
    assert first.final_log == record["intermediate_steps"][-1][0]["log"]
    for t in trajectories:
        assert (t.final_answer is None) == (t.finish_reason == "token_budget")
        assert t.final_answer is None or not t.final_answer.startswith(": ")


def test_import_twice_gives_identical_bytes_and_records(q32_run: RunStore, raw_q32_dir: Path,
                                                        toolemu_cases_path: Path, toolemu_toolkits_path: Path,
                                                        tmp_path: Path) -> None:
    result = import_toolemu_runs(raw_q32_dir, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    again = write_toolemu_import(result, tmp_path / "again")
    for name in ("scenarios", "toolkits", "trajectories", "judgments"):
        assert again.table_path(name).read_bytes() == q32_run.table_path(name).read_bytes(), name
    assert (again.path / "manifest.json").read_bytes() == (q32_run.path / "manifest.json").read_bytes()
    # Record round trip: what was written reads back equal, ids included.
    assert again.read("trajectories") == list(result.trajectories)
    assert again.read("judgments") == list(result.judgments)
    assert again.read("scenarios") == list(result.scenarios)
    assert again.read("toolkits") == list(result.toolkits)
    assert len({t.id for t in result.trajectories}) == 1152 and len({j.id for j in result.judgments}) == 2304
    inputs = again.manifest()["inputs"]
    assert set(inputs) == {"cases", "toolkits", "runs"} and all(len(h) == 64 for h in inputs.values())


def test_suite_import_writes_scenarios_and_toolkits_only(toolemu_cases_path: Path, toolemu_toolkits_path: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "suite"
    rc, stdout, _ = run_cli(["import", "toolemu-cases", toolemu_cases_path, toolemu_toolkits_path, "--out", out], capsys)
    assert rc == 0 and "144 scenarios" in stdout and "38 toolkits" in stdout
    store = RunStore(out)
    assert store.counts() == {"scenarios": 144, "toolkits": 38}
    assert set(store.manifest()["inputs"]) == {"cases", "toolkits"}
    assert store.read("scenarios") == list(import_toolemu_cases(toolemu_cases_path, toolemu_toolkits_path).scenarios)


# Other shapes of run folders ------------------------------------------------------------------------


def test_one_rollout_judged_in_two_folders_is_kept_once(raw_q32_dir: Path, tmp_path: Path,
                                                        toolemu_cases_path: Path, toolemu_toolkits_path: Path) -> None:
    # The study keeps each judge's copy of the same runs in its own folder (q32/, gpt5m/), one level deeper.
    copy_gpt5_run(raw_q32_dir, tmp_path / "runs" / "q32" / "gpt-5")
    copy_gpt5_run(raw_q32_dir, tmp_path / "runs" / "gpt5m" / "gpt-5",
                  stem=GPT5_STEM.replace("eval-Qwen_Qwen3-32B", "eval-gpt-5-mini"))
    result = import_toolemu_runs(tmp_path / "runs", cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    assert len(result.trajectories) == 15
    assert {t.source.file.split("/")[0] for t in result.trajectories} == {"gpt5m"}  # gpt5m/ sorts first
    assert len(result.judgments) == 60
    by_judge = Counter((j.judge.model, j.metric) for j in result.judgments)
    assert by_judge == {("gpt-5-mini", "safety"): 15, ("gpt-5-mini", "helpfulness"): 15,
                        ("Qwen_Qwen3-32B", "safety"): 15, ("Qwen_Qwen3-32B", "helpfulness"): 15}
    assert {j.trajectory_id for j in result.judgments} == {t.id for t in result.trajectories}


def test_replicates_error_records_and_help_safe_evals(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path,
                                                      toolemu_toolkits_path: Path) -> None:
    folder = small_runs / "gpt-5"
    safe = folder / f"{GPT5_STEM}{SAFE}"
    records = read_lines(safe)
    first = {k: v for k, v in records[0].items() if k != "eval_id"}
    second = {**first, "eval_scores": {"ToolCallRisk": 0}}
    records[0] = {"eval_id": 0, "replicates": [first, second], "consistency": {"scores": [first["eval_scores"]["ToolCallRisk"], 0]}}
    records[1] = {"error": "evaluator output was cut by the length limit", "eval_id": 1}
    safe.write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copyfile(folder / f"{GPT5_STEM}{HELP}", folder / f"{GPT5_STEM}_eval_agent_help.jsonl")

    result = import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    first_traj, second_traj = result.trajectories[0].id, result.trajectories[1].id
    safety = [j for j in result.judgments if j.metric == "safety"]
    on_first = [j for j in safety if j.trajectory_id == first_traj]
    assert [(j.replicate, j.score) for j in on_first] == [(0, first["eval_scores"]["ToolCallRisk"]), (1, 0)]
    assert len({j.id for j in on_first}) == 2 and on_first[0].raw_output == safe.read_text().splitlines()[0]
    (failed,) = [j for j in safety if j.trajectory_id == second_traj]
    assert (failed.score, failed.parse_status, failed.source.line) == (None, "failed", 1)
    help_safe = [j for j in result.judgments if j.metric == "helpfulness_safe"]
    assert len(help_safe) == 15 and help_safe[0].judge.rubric_version == "toolemu:agent_help"
    store = write_toolemu_import(result, tmp_path / "run")
    assert store.read("judgments") == list(result.judgments)


def test_file_name_grammar() -> None:
    name = RunFileName.parse("Qwen_Qwen3-32B_emu-Qwen_Qwen3-8B_eval-gpt-5-mini_int8_r15-30_2601_115149.jsonl",
                             shown_as="x")
    assert (name.agent, name.emulator, name.evaluator, name.quantization) == (
        "Qwen_Qwen3-32B", "Qwen_Qwen3-8B", "gpt-5-mini", "int8")
    assert (name.start, name.end, name.timestamp) == (15, 30, "2601_115149")
    bare = RunFileName.parse("a_emu-b_eval-c.jsonl", shown_as="x")
    assert (bare.evaluator, bare.quantization, bare.start, bare.timestamp) == ("c", None, None, None)
    with pytest.raises(InputError, match="file name does not follow"):
        RunFileName.parse("gpt-5_r0-15.jsonl", shown_as="x")


# Bad input: exit code 2, a message naming file and line, and no run left behind ----------------------


def test_malformed_json_line(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path, toolemu_toolkits_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    traj = small_runs / "gpt-5" / f"{GPT5_STEM}.jsonl"
    lines = traj.read_text().splitlines()
    lines[2] = lines[2][:50]
    traj.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    rc, _, err = run_cli(import_args(small_runs, out, toolemu_cases_path, toolemu_toolkits_path), capsys)
    assert rc == 2
    assert f"{GPT5_STEM}.jsonl:3:" in err and "not valid JSON" in err
    assert_nothing_written(out)


def test_missing_eval_file(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path, toolemu_toolkits_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    (small_runs / "gpt-5" / f"{GPT5_STEM}{HELP}").unlink()
    out = tmp_path / "out"
    rc, _, err = run_cli(import_args(small_runs, out, toolemu_cases_path, toolemu_toolkits_path), capsys)
    assert rc == 2
    assert f"{GPT5_STEM}.jsonl:" in err and f"{GPT5_STEM}{HELP} is missing" in err
    assert_nothing_written(out)


def test_eval_file_length_mismatch(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path,
                                   toolemu_toolkits_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    safe = small_runs / "gpt-5" / f"{GPT5_STEM}{SAFE}"
    safe.write_text("\n".join(safe.read_text().splitlines()[:14]) + "\n")
    out = tmp_path / "out"
    rc, _, err = run_cli(import_args(small_runs, out, toolemu_cases_path, toolemu_toolkits_path), capsys)
    assert rc == 2
    assert f"{GPT5_STEM}{SAFE}:15:" in err and "14 eval records for 15 trajectories" in err
    assert_nothing_written(out)


def test_unknown_toolkit_in_cases_file(toolemu_cases_path: Path, toolemu_toolkits_path: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = json.loads(toolemu_cases_path.read_text())
    cases[3]["Toolkits"].append("TeleportationDesk")
    bad = tmp_path / "all_cases.json"
    bad.write_text(json.dumps(cases, indent=1))
    out = tmp_path / "out"
    rc, _, err = run_cli(["import", "toolemu-cases", bad, toolemu_toolkits_path, "--out", out], capsys)
    assert rc == 2
    assert str(bad) in err and "official_3" in err and "'TeleportationDesk'" in err and "cases[3].Toolkits[" in err
    assert_nothing_written(out)


def test_case_index_outside_the_file_range(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path,
                                           toolemu_toolkits_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traj = small_runs / "gpt-5" / f"{GPT5_STEM}.jsonl"
    records = read_lines(traj)
    records[-1]["case_idx"] = 20  # the file is r0-15
    traj.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    rc, _, err = run_cli(import_args(small_runs, out, toolemu_cases_path, toolemu_toolkits_path), capsys)
    assert rc == 2
    assert f"{GPT5_STEM}.jsonl:15" in err and "case_idx 20 is outside the file name's range r0-15" in err
    assert_nothing_written(out)


def test_eval_id_not_equal_to_line(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path,
                                   toolemu_toolkits_path: Path) -> None:
    help_file = small_runs / "gpt-5" / f"{GPT5_STEM}{HELP}"
    records = read_lines(help_file)
    records[4]["eval_id"] = 5
    help_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError) as info:
        import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    assert info.value.line == 5 and info.value.field == "eval_id" and info.value.path.endswith(HELP)


def test_case_indices_must_increase(small_runs: Path, toolemu_cases_path: Path, toolemu_toolkits_path: Path) -> None:
    traj = small_runs / "gpt-5" / f"{GPT5_STEM}.jsonl"
    lines = traj.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    traj.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="does not follow case_idx 4") as info:
        import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    assert info.value.line == 5


def test_overlapping_ranges_of_one_configuration(small_runs: Path, toolemu_cases_path: Path,
                                                 toolemu_toolkits_path: Path) -> None:
    later = GPT5_STEM.replace("r0-15", "r10-25")
    for suffix in (".jsonl", SAFE, HELP):
        shutil.copyfile(small_runs / "gpt-5" / f"{GPT5_STEM}{suffix}", small_runs / "gpt-5" / f"{later}{suffix}")
    with pytest.raises(InputError, match="r10-25 overlaps r0-15") as info:
        import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    assert info.value.path.endswith(f"{later}.jsonl")


def test_unparseable_file_name_and_orphan_eval_file(small_runs: Path, toolemu_cases_path: Path,
                                                    toolemu_toolkits_path: Path) -> None:
    stray = small_runs / "gpt-5" / "notes.jsonl"
    stray.write_text("{}\n")
    with pytest.raises(InputError, match="file name does not follow"):
        import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    stray.rename(small_runs / "gpt-5" / f"elsewhere{SAFE}")
    with pytest.raises(InputError, match="eval file without its trajectory file"):
        import_toolemu_runs(small_runs, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)


def test_mistyped_case_field(toolemu_cases_path: Path, toolemu_toolkits_path: Path, tmp_path: Path) -> None:
    cases = json.loads(toolemu_cases_path.read_text())
    cases[7]["User Instruction"] = ["not", "a", "string"]
    bad = tmp_path / "all_cases.json"
    bad.write_text(json.dumps(cases))
    with pytest.raises(InputError, match="valid string") as info:
        load_cases(bad)
    assert info.value.field == "cases[7].User Instruction"
    del cases[7]["User Instruction"]
    cases[7]["Instruction"] = "x"
    bad.write_text(json.dumps(cases))
    with pytest.raises(InputError, match="field required"):
        load_cases(bad)


def test_existing_output_needs_force(small_runs: Path, tmp_path: Path, toolemu_cases_path: Path,
                                     toolemu_toolkits_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = import_args(small_runs, out, toolemu_cases_path, toolemu_toolkits_path)
    rc, stdout, _ = run_cli(args, capsys)
    assert rc == 0 and "15 trajectories" in stdout and "60" not in stdout and "30 judgments" in stdout
    rc, _, err = run_cli(args, capsys)
    assert rc == 2 and "--force" in err
    rc, _, _ = run_cli([*args, "--force"], capsys)
    assert rc == 0 and RunStore(out).counts()["trajectories"] == 15
