"""Case ``lone-surrogate`` (inspect_ai PR #3802): text that cannot be encoded never crashes prefkit.

A lone UTF-16 surrogate (``"\\ud83d"``, half an emoji: valid JSON that ``json.loads`` decodes to a string
nothing can encode) used to escape as a ``UnicodeEncodeError`` traceback from hashing deep inside the
importer. Now it becomes U+FFFD where text enters prefkit (the importers' file reading, the openai
backend's answers, the rollout loop's steps); the trajectory is flagged ``unencodable_text`` and
``prefkit inspect`` counts it, for judgments too (``judgment_flags``).

Inputs: the case's own ``make_input.py`` (the observation holds the escape), a second judged run of the
same class (a low surrogate in the final answer, a high one in the evaluator's thought and label), a file
that is not UTF-8 at all, and a loopback server (``tests/fake_openai.py``) whose answers hold lone
surrogates, as characters in its JSON and as escapes inside the answer's own JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefkit.cli import main
from prefkit.store import RunStore
from prefkit.text import REPLACEMENT_CHARACTER, clean_json_text

FFFD = REPLACEMENT_CHARACTER


@pytest.fixture
def case_dir(shared_dir: Path, tmp_path: Path) -> Path:
    """The case's scripts copied into tmp_path (``make_input.py`` writes next to itself)."""
    source = shared_dir / "cases" / "lone-surrogate"
    if not source.is_dir():
        pytest.skip(f"case missing: {source}")
    out = tmp_path / "case"
    out.mkdir()
    for name in ("make_input.py", "mkrun.py"):
        shutil.copy(source / name, out / name)
    return out


def make_input(case_dir: Path, shared_dir: Path, script: str = "make_input.py") -> Path:
    env = {**os.environ, "SHARED": str(shared_dir)}
    subprocess.run([sys.executable, script], cwd=case_dir, env=env, check=True, capture_output=True)
    return case_dir / "runs_in"


def import_run(runs_in: Path, out: Path, shared_dir: Path, capsys) -> int:
    toolemu = shared_dir / "data" / "toolemu"
    code = main(["import", "toolemu", str(runs_in), "--cases", str(toolemu / "all_cases.json"),
                 "--toolkits", str(toolemu / "all_toolkits.json"), "--out", str(out)])
    return code


def inspect_json(run: Path, capsys) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["inspect", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# Files --------------------------------------------------------------------------------------------


def test_case_input_imports_flags_and_pairs(case_dir, shared_dir, tmp_path, capsys):
    runs_in = make_input(case_dir, shared_dir)
    assert "\\ud83d" in next((runs_in / "agentA").glob("*Judge.jsonl")).read_text()  # the escape is in the file
    run = tmp_path / "run"
    assert import_run(runs_in, run, shared_dir, capsys) == 0
    assert "2 trajectories, 4 judgments" in capsys.readouterr().out

    by_agent = {t.agent.name: t for t in RunStore(run).read("trajectories")}
    assert by_agent["agentA"].steps[0].observation == '{"tasks": [{"task_id": "t1", "task_name": "Test ' + FFFD + '"}]}'
    assert "unencodable_text" in by_agent["agentA"].flags and "unencodable_text" not in by_agent["agentB"].flags
    summary = inspect_json(run, capsys)
    assert summary["flags"]["unencodable_text"] == 1
    assert summary["judgment_flags"] == {"unencodable_text": 0}  # the eval lines are clean

    # The run pairs: agentA (safety 3) is chosen over agentB (safety 0) on the one scenario.
    assert main(["pair", str(run), "--strategy", "safety", "--out", str(tmp_path / "pairs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 1


SECOND_INPUT = '''\
import sys, os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkrun import write, step
# The same fault class elsewhere: a low surrogate alone in the final answer, a high one in the judge's text.
write("runs_in", {"agentA": [{"steps": [step("TodoistSearchTasks", '{"keywords": "Test"}', "Search.", '{"tasks": []}')],
                              "answer": "Nothing found \\udc00", "safety": 3, "help": 2}],
                  "agentB": [{"steps": [], "answer": "Done \\ud83d\\ude00", "safety": 1, "help": 1}]})
'''


def test_a_second_input_of_the_class_judgments_too(case_dir, shared_dir, tmp_path, capsys):
    (case_dir / "second.py").write_text(SECOND_INPUT)
    runs_in = make_input(case_dir, shared_dir, "second.py")
    # The judge's thought and label of agentA hold a lone surrogate escape as well.
    evals = next((runs_in / "agentA").glob("*_eval_agent_safe.jsonl"))
    record = json.loads(evals.read_text())
    record["Evaluator Thought"] = "Safe \ud83d"
    record["Overall Qualitative Label"] = "Certain No Risk (3) \ud83d"
    evals.write_text(json.dumps(record) + "\n")
    run = tmp_path / "run"
    assert import_run(runs_in, run, shared_dir, capsys) == 0

    by_agent = {t.agent.name: t for t in RunStore(run).read("trajectories")}
    assert by_agent["agentA"].final_answer == "Nothing found " + FFFD
    assert by_agent["agentB"].final_answer == "Done \N{GRINNING FACE}"  # a valid pair is a character, not a flag
    assert [a for a, t in sorted(by_agent.items()) if "unencodable_text" in t.flags] == ["agentA"]
    [judged] = [j for j in RunStore(run).read("judgments") if j.rationale and FFFD in j.rationale]
    assert judged.label == "Certain No Risk (3) " + FFFD and FFFD in judged.raw_output and judged.score == 3
    summary = inspect_json(run, capsys)
    assert (summary["flags"]["unencodable_text"], summary["judgment_flags"]["unencodable_text"]) == (1, 1)
    # The stored raw line re-parses clean: rescoring rewrites the table without a crash or a change.
    assert main(["rescore", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scores_changed"] == 0


def test_a_file_that_is_not_utf8_is_named_with_its_line(case_dir, shared_dir, tmp_path, capsys):
    runs_in = make_input(case_dir, shared_dir)
    trajectory = next((runs_in / "agentA").glob("*Judge.jsonl"))
    # A surrogate written as raw bytes (what a "surrogatepass" writer leaves): not UTF-8, so not text.
    trajectory.write_bytes(trajectory.read_bytes().replace(b"\\ud83d", "\ud83d".encode("utf-8", "surrogatepass")))
    assert import_run(runs_in, tmp_path / "run", shared_dir, capsys) == 2
    err = capsys.readouterr().err
    assert f"{trajectory}:1: not UTF-8 text" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": "x \\ud83d y"}', {"a": "x \ufffd y"}),
    ('{"a": "\\ud83d\\ude00", "b": "\\ude00\\ud83d"}', {"a": "\N{GRINNING FACE}", "b": "\ufffd\ufffd"}),
    ('{"a": "\\\\ud83d"}', {"a": "\\ud83d"}),  # an escaped backslash, then plain text: nothing to replace
    ('{"a": "\\\\\\ud83d", "\\udfff": 1}', {"a": "\\\ufffd", "\ufffd": 1}),
])
def test_clean_json_text_replaces_exactly_the_lone_surrogate_escapes(text, expected):
    assert json.loads(clean_json_text(text)) == expected


# Server answers -----------------------------------------------------------------------------------


def test_judge_answers_with_lone_surrogates_are_stored_replaced(fake_openai, shared_dir, case_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert import_run(make_input(case_dir, shared_dir), run, shared_dir, capsys) == 0

    def answer(body: dict[str, Any], i: int) -> str:
        if not body["messages"][1]["content"].startswith("# Grading guide: risk"):  # helpfulness
            # a lone surrogate escaped inside the judge's own JSON answer
            return '{"rationale": "Helpful \\ud83d", "label": "Good (2)", "score": 2}'
        return "Rationale: careful \ud83d\nLabel: Certain No Risk (3)\nScore: 3"  # the server's JSON holds \ud83d

    fake_openai.responder = answer
    capsys.readouterr()
    assert main(["judge", str(run), "--judge", "judge@openai", "--option", f"base_url={fake_openai.base_url}",
                 "--metrics", "safety,helpfulness", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_status"]["failed"] == 0
    mine = [j for j in RunStore(run).read("judgments") if j.judge.model == "judge"]
    assert len(mine) == 4 and {j.score for j in mine} == {2, 3}
    assert all(FFFD in (j.raw_output + (j.rationale or "")) for j in mine)
    assert inspect_json(run, capsys)["judgment_flags"]["unencodable_text"] == 4
    assert main(["rescore", str(run)]) == 0


def test_rollout_answers_with_lone_surrogates_are_flagged(fake_openai, tmp_path, capsys):
    def answer(body: dict[str, Any], i: int) -> str:
        messages = body["messages"]
        if "# The call you answer now" in str(messages[1]["content"]):  # the emulator's request
            return '{"summary": "listed", "observation": {"files": ["old \\ud83d.txt"]}}'
        if any(str(m.get("content") or "").startswith("Observation:") for m in messages):
            return "Thought: I listed the folder.\nFinal Answer: Deleted nothing \udc00"
        return 'Thought: I will look first.\nAction: FileCabinetListFolder\nAction Input: {"path": "/Documents"}'

    fake_openai.responder = answer
    spec = ["--agent", "agent@openai", "--emulator", "emu@openai", "--agent-option",
            f"base_url={fake_openai.base_url}", "--emulator-option", f"base_url={fake_openai.base_url}"]
    run = tmp_path / "run"
    assert main(["rollout", "starter", "--scenarios", "starter_0", *spec, "--mode", "standard",
                 "--out", str(run), "--json"]) == 0
    [t] = RunStore(run).read("trajectories")
    assert t.finish_reason == "final_answer" and t.final_answer == "Deleted nothing " + FFFD
    assert [s.observation for s in t.steps] == ['{"files": ["old ' + FFFD + '.txt"]}']
    assert "unencodable_text" in t.flags
    assert inspect_json(run, capsys)["flags"]["unencodable_text"] == 1


def test_openai_tool_calls_and_text_with_lone_surrogates_are_cleaned():
    from fake_openai import FakeOpenAI

    from prefkit.backends import ChatRequest, create_backend, generate_sync
    from prefkit.records import Message

    class Server(FakeOpenAI):
        def answer(self, body: dict[str, Any]) -> dict[str, Any]:
            calls = [{"id": "call_1", "type": "function", "function": {
                "name": "NotesFind\ud83d", "arguments": '{"query": "keys \\ud83d", "ok": "\\ud83d\\ude00"}'}}]
            message = {"role": "assistant", "content": "Looking \udc00", "tool_calls": calls}
            return {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}

    with Server() as server:
        backend = create_backend("fake@openai", base_url=server.base_url)
        [[completion]] = generate_sync(backend, [ChatRequest(messages=(Message(role="user", content="find"),))])
    assert completion.text == "Looking " + FFFD
    [call] = completion.tool_calls
    assert call.name == "NotesFind" + FFFD
    assert json.loads(call.arguments) == {"query": "keys " + FFFD, "ok": "\N{GRINNING FACE}"}
