"""`prefkit import chat`: OpenAI-format chat JSONL (messages, tools, a scenario key, score fields) as a run.

The round-trip tests write the study's own trajectories (raw_q32) as chat lines, in prefkit's native and
ReAct renderings, and import them back: the imported trajectories must render to the very same TRL rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.cli import main
from prefkit.pairing.rows import row_messages
from prefkit.render.prompts import native_prompt, tool_schemas
from prefkit.render.react import strip_think
from prefkit.rollout.agent import ToolAction, Unparseable, parse_react
from prefkit.store import RunStore

BOOKING_TOOLS = [{"type": "function", "function": {
    "name": "book", "description": "Book a table.",
    "parameters": {"type": "object", "properties": {
        "time": {"type": "string", "description": "When."},
        "guests": {"type": ["integer", "null"], "description": "How many."},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["time"]}}}]

NATIVE = {"id": "booking", "model": "agent-a", "judge": {"safety": 3, "helpful": "yes"}, "tools": BOOKING_TOOLS,
          "messages": [
              {"role": "developer", "content": "You book tables."},
              {"role": "user", "content": "Book a table at 19:00."},
              {"role": "assistant", "content": None, "tool_calls": [
                  {"id": "c1", "type": "function", "function": {"name": "book", "arguments": "{\"time\": \"19:00\"}"}},
                  {"id": "c2", "type": "function", "function": {"name": "book", "arguments": {"time": "19:30"}}}]},
              {"role": "tool", "tool_call_id": "c2", "content": "booked 19:30"},
              {"role": "tool", "tool_call_id": "c1", "content": "booked 19:00"},
              {"role": "user", "content": "Go on."},
              {"role": "assistant", "content": [{"type": "text", "text": "Booked for 19:00"},
                                                {"type": "text", "text": "and 19:30."}]}]}

REACT = {"id": "booking", "model": "agent-b", "judge": {"safety": 1, "helpful": "no"},
         "messages": [
             {"role": "user", "content": "Book a table at 19:00."},
             {"role": "assistant", "content": "I book it.\nAction: book\nAction Input: {\"time\": \"20:00\"}"},
             {"role": "user", "content": "Observation: booked 20:00"},
             {"role": "assistant", "content": "Thought: It is booked.\nFinal Answer: Booked at 20:00."}]}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def import_chat(files: list[Path], out: Path, *extra: str, capsys=None) -> tuple[int, str]:
    code = main(["import", "chat", *map(str, files), "--out", str(out), *extra])
    return code, (capsys.readouterr().err if capsys is not None else "")


def test_native_and_react_lines_become_trajectories_with_mapped_scores(tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", [NATIVE, REACT])
    out = tmp_path / "run"
    code, _ = import_chat([chats], out, "--scenario-key", "id", "--agent-key", "model",
                          "--score", "judge.safety=safety", "--score", "judge.helpful=helpfulness:yes=3,no=0")
    assert code == 0
    run = RunStore(out)
    (scenario,) = run.read("scenarios")
    assert (scenario.id, scenario.suite, scenario.index, scenario.instruction, scenario.toolkits) == (
        "booking", "chat", 0, "Book a table at 19:00.", ("book",))
    (toolkit,) = run.read("toolkits")
    assert [(p.name, p.type, p.required) for p in toolkit.tools[0].parameters] == [
        ("time", "string", True), ("guests", "integer", False), ("tags", "array[string]", False)]
    assert toolkit.tools[0].json_schema()["function"]["parameters"]["properties"]["tags"] == {
        "description": "", "type": "array", "items": {"type": "string"}}

    native, react = run.read("trajectories")
    # Two parallel calls are two steps (the second answered first: results are matched by id); the
    # "Go on." turn the trajectory cannot hold is left out and flagged.
    assert [(s.tool, s.tool_input, s.observation) for s in native.steps] == [
        ("book", '{"time": "19:00"}', "booked 19:00"), ("book", '{"time": "19:30"}', "booked 19:30")]
    assert (native.agent.name, native.agent.backend, native.agent.prompt_format) == ("agent-a", "chat", "native")
    assert (native.final_answer, native.finish_reason) == ("Booked for 19:00\nand 19:30.", "final_answer")
    assert "dropped_turns" in native.flags
    assert row_messages(native.messages)[:2] == [
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call00000", "type": "function", "function": {
            "name": "book", "arguments": {"time": "19:00"}}}], "tool_call_id": None},
        {"role": "tool", "content": "booked 19:00", "tool_calls": None, "tool_call_id": "call00000"}]

    assert (react.agent.name, react.agent.prompt_format, react.final_answer) == ("agent-b", "react", "Booked at 20:00.")
    assert [(s.tool, s.tool_input, s.observation) for s in react.steps] == [("book", '{"time": "20:00"}', "booked 20:00")]
    assert [m.content for m in react.react_messages] == [
        REACT["messages"][1]["content"], "Observation: booked 20:00", REACT["messages"][3]["content"]]

    scores = {(j.trajectory_id, j.metric): (j.score, j.label) for j in run.read("judgments")}
    assert scores == {(native.id, "safety"): (3, "3"), (native.id, "helpfulness"): (3, "yes"),
                      (react.id, "safety"): (1, "1"), (react.id, "helpfulness"): (0, "no")}


def test_without_a_scenario_key_the_instruction_is_the_scenario(tmp_path):
    chats = write_jsonl(tmp_path / "my-agent.jsonl", [REACT, REACT, {**REACT, "messages": [
        {"role": "user", "content": "Another task."}, {"role": "assistant", "content": "Final Answer: no."}]}])
    out = tmp_path / "run"
    assert import_chat([chats], out)[0] == 0
    run = RunStore(out)
    scenarios = run.read("scenarios")
    assert [s.instruction for s in scenarios] == ["Book a table at 19:00.", "Another task."]
    assert all(s.id.startswith("chat-") for s in scenarios)
    trajectories = run.read("trajectories")
    # The same conversation twice: two samples of one scenario, kept apart by their sample index.
    assert [(t.scenario_id, t.sample_index, t.agent.name) for t in trajectories] == [
        (scenarios[0].id, 0, "my-agent"), (scenarios[0].id, 1, "my-agent"), (scenarios[1].id, 0, "my-agent")]
    # No `tools` in the lines: the scenario gets the tool it called, by name.
    assert scenarios[0].toolkits == ("book",) and scenarios[1].toolkits == ()


@pytest.mark.parametrize("rendering", ["native", "react"])
def test_rows_of_the_studys_trajectories_survive_a_round_trip(rendering, q32_run, tmp_path):
    scenarios = {s.id: s for s in q32_run.read("scenarios")}
    toolkits = q32_run.read("toolkits")
    # The trajectories whose actions prefkit's ReAct parser reads as ToolEmu recorded them (1,142 of 1,152): the
    # rest hold inputs ToolEmu cut differently (e.g. wrapped in backticks), which an import of their text
    # reads as a prefkit rollout would, not as ToolEmu did.
    every = [t for t in q32_run.read("trajectories") if all(
        (lambda turn: isinstance(turn, ToolAction) and (turn.name, turn.arguments) == (s.tool, s.tool_input.strip()))(
            parse_react(s.agent_log)) for s in t.steps)]
    # The first 40, and every trajectory whose rows are out of the ordinary: an action input that is not a JSON
    # object (a ReAct step among native calls), a run cut off without a final answer, think blocks.
    odd = {t.id: t for flag in ("non_object_arguments", "no_final_answer", "think_block")
           for t in [t for t in every[40:] if flag in t.flags][:15]}
    originals = every[:40] + list(odd.values())
    assert {"non_object_arguments", "no_final_answer"} <= {f for t in originals for f in t.flags}
    column = "messages" if rendering == "native" else "react_messages"
    if rendering == "react":  # a text alone is ReAct only when it says so (a final answer in ReAct form)
        originals = [t for t in originals if t.steps or not isinstance(parse_react(t.final_log), Unparseable)]
    lines = [{"scenario": t.scenario_id, "agent": t.agent.name,
              "tools": tool_schemas(scenarios[t.scenario_id], toolkits),
              "messages": row_messages((*native_prompt(scenarios[t.scenario_id]), *getattr(t, column)))}
             for t in originals]
    out = tmp_path / "run"
    code, _ = import_chat([write_jsonl(tmp_path / "rows.jsonl", lines)], out, "--scenario-key", "scenario",
                          "--agent-key", "agent")
    assert code == 0
    imported = RunStore(out).read("trajectories")
    assert len(imported) == len(originals)
    for original, back in zip(originals, imported, strict=True):
        assert row_messages(getattr(back, column)) == row_messages(getattr(original, column)), original.id
        assert [(s.tool, s.observation) for s in back.steps] == [(s.tool, strip_think(s.observation))
                                                                 for s in original.steps]
    # The imported scenarios carry the study's tools, so the rows' `tools` column is the study's too.
    back_scenarios = {s.id: s for s in RunStore(out).read("scenarios")}
    some = originals[0].scenario_id
    assert tool_schemas(back_scenarios[some], RunStore(out).read("toolkits")) == tool_schemas(scenarios[some], toolkits)


@pytest.mark.parametrize(("line", "field", "needle"), [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]},
     "messages[1].role", "unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "42"}]},
     "messages[1].tool_call_id", "tool result without its call"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "b", "content": "42"}]},
     "messages[2].tool_call_id", "tool result without its call"),
    ({"messages": [{"role": "assistant", "content": "hello"}]}, "messages[0]", "no user message"),
    ({"conversation": []}, "messages", "expected a non-empty list of messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]},
     "tools[0].function.name", "a tool needs a name"),
])
def test_bad_lines_are_one_error_naming_file_line_and_field(line, field, needle, tmp_path, capsys):
    chats = write_jsonl(tmp_path / "chats.jsonl", [REACT, line])
    out = tmp_path / "run"
    code, err = import_chat([chats], out, capsys=capsys)
    assert code == 2
    assert f"chats.jsonl:2 [{field}]" in err and needle in err, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".run.*"))  # nothing half-written


def test_score_mappings_guess_nothing(tmp_path, capsys):
    chats = write_jsonl(tmp_path / "chats.jsonl", [NATIVE, REACT])
    out = tmp_path / "run"
    code, err = import_chat([chats], out, "--score", "judge.helpful=helpfulness:yes=3", capsys=capsys)
    assert code == 2 and "chats.jsonl:2 [judge.helpful]" in err and "'no' is not in the mapping" in err
    code, err = import_chat([chats], out, "--score", "judge.helpful=helpfulness", capsys=capsys)
    assert code == 2 and "'yes' is not an integer score 0-3" in err
    code, err = import_chat([chats], out, "--score", "judge.safty=safety", capsys=capsys)
    assert code == 2 and "no imported conversation has the score 'judge.safty'" in err
    code, err = import_chat([chats], out, "--score", "judge.safety=harm", capsys=capsys)
    assert code == 2 and "unknown metric 'harm'" in err
    code, err = import_chat([chats], out, "--score", "judge.safety=safety:1=5", capsys=capsys)
    assert code == 2 and "VALUE=SCORE with a score 0-3" in err
    assert not out.exists()


def test_chat_source_of_a_build_recipe(tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", [NATIVE, REACT])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
name: bookings
source:
  kind: chat
  paths: [{chats}]
  scenario_key: id
  agent_key: model
  scores: ["judge.safety=safety", "judge.helpful=helpfulness:yes=3,no=0"]
datasets:
  - {{name: safety, strategy: safety, rendering: native}}
split: {{rule: fraction, seed: 0, test_fraction: 0}}
""", encoding="utf-8")
    out = tmp_path / "built"
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    import datasets

    rows = datasets.load_dataset("parquet", data_dir=str(out / "data" / "safety"), cache_dir=str(tmp_path / "cache"))
    (row,) = rows["train"]
    assert (row["chosen_agent"], row["rejected_agent"], row["chosen_safety"], row["rejected_safety"]) == (
        "agent-a", "agent-b", 3.0, 1.0)
    assert row["prompt"][-1] == {"role": "user", "content": "Book a table at 19:00.", "tool_calls": None,
                                 "tool_call_id": None}
    assert [t["function"]["name"] for t in json.loads(row["tools"])] == ["book"]
