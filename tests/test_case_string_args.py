"""Case ``string-args``: tool-call arguments reach the training rows as the agent wrote them.

A cut-off action input used to become a tool call whose ``arguments`` was a JSON *string*, which templates
that apply ``tojson`` (Qwen2.5's) quote a second time (oumi-ai/oumi PR #2599). Now the native rendering shows
such a step as the study's ReAct text, every native call's arguments is a JSON object, the trajectory is
flagged ``non_object_arguments`` and counted by inspect, validate and the audit, and
``exclude_chosen_flags`` keeps flagged trajectories off the chosen side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from prefkit.backends.base import message_dicts
from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.inspect import summarize_run
from prefkit.pairing import PairConfig, build_pairs
from prefkit.pairing.pairs import pair_run
from prefkit.pairing.rows import row_messages
from prefkit.pairing.validate import load_rows, load_tokenizer, validate_pairs_path
from prefkit.records import AgentIdentity, Message, Step, ToolCall, Trajectory
from prefkit.render.native import native_messages
from prefkit.render.react import react_messages

REPO = Path(__file__).resolve().parents[1]
FLAG = "non_object_arguments"


def _calls(messages: list[dict]) -> list[dict]:
    return [c for m in messages for c in (m.get("tool_calls") or [])]


@pytest.fixture(scope="module")
def case_run(tmp_path_factory, shared_dir: Path, toolemu_cases_path: Path, toolemu_toolkits_path: Path) -> Path:
    """The case's judged run (make_input.py), imported with the CLI."""
    folder = tmp_path_factory.mktemp("string-args")
    for name in ("make_input.py", "mkrun.py"):
        shutil.copy(shared_dir / "cases" / "string-args" / name, folder / name)
    subprocess.run([sys.executable, "make_input.py"], cwd=folder, check=True, timeout=120,
                   env={**os.environ, "SHARED": str(shared_dir)})
    assert main(["import", "toolemu", str(folder / "runs_in"), "--cases", str(toolemu_cases_path),
                 "--toolkits", str(toolemu_toolkits_path), "--out", str(folder / "run")]) == 0
    return folder


def test_case_rows_hold_objects_only_and_validate_counts_the_flagged_row(case_run: Path, tiny_model_dir: Path,
                                                                          capsys) -> None:
    pairs = case_run / "pairs"
    assert main(["pair", str(case_run / "run"), "--strategy", "safety", "--render", "native", "--out", str(pairs),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["validate", str(pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "100000", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["valid"], summary["invalid"]) == (1, 1, 0)
    assert summary[FLAG] == {"rows": 1, "chosen": 1, "rejected": 0}
    assert summary["files"]["test.parquet"][FLAG] == {"rows": 1, "chosen": 1, "rejected": 0}

    [row] = load_rows(pairs / "test.parquet")
    assert row["chosen_flags"] == [FLAG] and row["rejected_flags"] == []
    # the cut-off input is the study's ReAct text for that step, exactly as the agent wrote it
    assert [m["role"] for m in row["chosen"]] == ["assistant", "user", "assistant"]
    assert row["chosen"][0]["content"] == ('I will search first.\nAction: TodoistSearchTasks\n'
                                           'Action Input: {"keywords": "Test", "max_results":\n\n')
    assert row["chosen"][1]["content"] == 'Observation: {"error": "InvalidRequestException: invalid JSON"}'
    assert _calls(row["chosen"]) == []
    assert [c["function"]["arguments"] for c in _calls(row["rejected"])] == [{"task_id": "t1"}]
    # what the model trains on (TRL's qwen2_5 template): no argument string quoted a second time
    tokenizer = load_tokenizer(tiny_model_dir)
    for side in ("chosen", "rejected"):
        text = tokenizer.apply_chat_template(row["prompt"] + row[side], tools=json.loads(row["tools"]), tokenize=False)
        assert '"arguments": "' not in text
    text = tokenizer.apply_chat_template(row["prompt"] + row["rejected"], tools=json.loads(row["tools"]), tokenize=False)
    assert '{"name": "TodoistDeleteTask", "arguments": {"task_id": "t1"}}' in text

    # keeping flagged trajectories off the chosen side removes the only pair
    assert main(["pair", str(case_run / "run"), "--strategy", "safety", "--render", "native", "--out",
                 str(case_run / "pairs-excluded"), "--exclude-chosen-flags", FLAG, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 0


def test_inspect_counts_the_case_and_the_study(case_run: Path, q32_run, capsys) -> None:
    from prefkit.store import RunStore

    case = summarize_run(RunStore(case_run / "run"))
    assert case["flags"][FLAG] == 1 and case["action_inputs"] == {"total": 2, "non_object": 1}
    study = summarize_run(q32_run)
    assert study["action_inputs"] == {"total": 1272, "non_object": 8}
    assert study["flags"][FLAG] == 7  # two of the 8 inputs are in one trajectory
    assert main(["inspect", str(q32_run.path)]) == 0
    assert "action inputs: 1,272, of which 8 are not a JSON" in capsys.readouterr().out


def _trajectory(inputs: list[str]) -> Trajectory:
    steps = tuple(Step(tool="Search", tool_input=text, agent_log=f"Thought: try {i}\nAction: Search\nAction Input: {text}\n",
                       observation=f'{{"n": {i}}}') for i, text in enumerate(inputs))
    agent = AgentIdentity(name="a", model="m")
    return Trajectory(id="t", scenario_id="s", agent=agent, steps=steps, final_log="Thought: done\nFinal Answer: ok",
                      final_answer="ok", finish_reason="final_answer")


def test_second_input_of_the_class_every_non_object_input_is_react_text() -> None:
    """Other non-object inputs (a JSON array, a JSON string, plain text, NaN) between object inputs."""
    inputs = ['["a", "b"]', '{"q": "x"}', '"just a string"', 'find the file please', '{"q": NaN}', ' {"q": [1, 2]} ']
    t = _trajectory(inputs)
    native = native_messages(t)
    react = react_messages(t)
    calls = [c for m in native if m.tool_calls for c in m.tool_calls]
    assert [(c.id, c.arguments) for c in calls] == [("call00001", '{"q": "x"}'), ("call00005", '{"q": [1, 2]}')]
    assert [m.tool_call_id for m in native if m.role == "tool"] == ["call00001", "call00005"]
    # each non-object step is exactly the ReAct rendering of that step (one rule, reused)
    for i in (0, 2, 3, 4):
        assert native[2 * i: 2 * i + 2] == react[2 * i: 2 * i + 2]
        assert f"Action Input: {inputs[i]}" in native[2 * i].content
    # one converter: rows and backends speak the same dicts; arguments objects for templates, text on the wire
    rows = row_messages(native)
    assert rows == message_dicts(native, arguments="object", every_key=True)
    assert all(isinstance(c["function"]["arguments"], dict) for c in _calls(rows))
    wire = message_dicts(native, arguments="text")
    assert [c["function"]["arguments"] for c in _calls(wire)] == ['{"q": "x"}', '{"q": [1, 2]}']
    assert all(set(m) == {"role", "content", "tool_calls", "tool_call_id"} for m in rows)
    # a foreign message whose arguments are not an object keeps its text (validate rejects such a row)
    foreign = Message(role="assistant", tool_calls=(ToolCall(id="call00000", name="Search", arguments="[1]"),))
    assert message_dicts([foreign], arguments="object")[0]["tool_calls"][0]["function"]["arguments"] == "[1]"


def test_q32_native_rows_hold_only_object_arguments_and_validate_counts_flagged_rows(q32_pairs, tiny_model_dir):
    folder = q32_pairs(strategy="safety", rendering="native")
    train = load_rows(folder / "train.parquet")
    assert all(isinstance(c["function"]["arguments"], dict)
               for row in train for side in ("chosen", "rejected") for c in _calls(row[side]))
    reports = validate_pairs_path(folder / "train.parquet", tokenizer=tiny_model_dir, max_length=1 << 20)
    # the study's native pairs hold such a step on the chosen side of 2 safety-train rows
    assert reports["train.parquet"].non_object_arguments.model_dump() == {"rows": 5, "chosen": 2, "rejected": 3}
    assert reports["train.parquet"].invalid == 0


def test_exclude_chosen_flags_is_one_rule_of_the_pairing(q32_run, tmp_path: Path) -> None:
    study = build_pairs(q32_run, PairConfig(strategy="safety", study_compatible=True)).pairs
    assert study.height == 932  # the default keeps the study's counts
    excluded = build_pairs(q32_run, PairConfig(strategy="safety", exclude_chosen_flags=(FLAG,))).pairs
    flagged = set(q32_run.frame("trajectories").filter(pl.col("flags").list.contains(FLAG))["id"])
    expected = study.filter(~pl.col("chosen_id").is_in(list(flagged)))
    assert excluded.height == expected.height == 932 - 8
    assert excluded["id"].to_list() == expected["id"].to_list()  # same pairs, same order, nothing else changes
    assert excluded.filter(pl.col("rejected_id").is_in(list(flagged))).height > 0  # still rejected sometimes

    with pytest.raises(ValueError, match="study_compatible forbids .*exclude_chosen_flags"):
        PairConfig(strategy="safety", study_compatible=True, exclude_chosen_flags=(FLAG,))
    with pytest.raises(ValueError, match="unknown trajectory flag"):
        PairConfig(strategy="safety", exclude_chosen_flags=("non_object_args",))
    with pytest.raises(InputError, match="unknown trajectory flag"):
        pair_run(q32_run.path, tmp_path / "p", strategy="safety", exclude_chosen_flags=("typo",))

    from prefkit.recipe import load_recipe

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        "name: x\nsource: {kind: toolemu, path: runs, cases: c.json, toolkits: t.json}\n"
        "datasets:\n  - {name: safety, strategy: safety, exclude_chosen_flags: [non_object_arguments]}\n")
    recipe = load_recipe(recipe_file, check_inputs=False)
    assert recipe.datasets[0].pair_config(recipe.split).exclude_chosen_flags == (FLAG,)


def test_the_paper_build_audit_counts_flagged_chosen_sides(tmp_path: Path, raw_q32_dir: Path, toolemu_cases_path: Path,
                                                          toolemu_toolkits_path: Path) -> None:
    from prefkit.audit import print_audit
    from prefkit.audit.report import AuditReport

    out = tmp_path / "out"
    assert main(["build", str(REPO / "recipes" / "paper-q32.yaml"), "--quiet", "--out", str(out),
                 "--set", f"source.path={raw_q32_dir}", "--set", f"source.cases={toolemu_cases_path}",
                 "--set", f"source.toolkits={toolemu_toolkits_path}"]) == 0
    audit = json.loads((out / "audit.json").read_text())["datasets"]
    train_chosen = {name: report["splits"]["train"]["chosen"]["flags"][FLAG] for name, report in audit.items()}
    assert train_chosen == {"safety": 2, "helpfulness": 1, "both": 1}
    assert audit["safety"]["splits"]["all"]["chosen"]["flags"][FLAG] == 8
    console = Console(width=200, record=True)
    print_audit(AuditReport.model_validate(audit["safety"]), console)
    lines = [line for line in console.export_text().splitlines() if "non-object arguments" in line]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    assert cells == [["chosen: non-object arguments (pairs)", "2", "6", "8"],
                     ["rejected: non-object arguments (pairs)", "3", "0", "3"]]
