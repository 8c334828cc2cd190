"""Renderings of trajectories (the study's ReAct text, native tool calls), the agent prompts, and the
flags the importer puts on real, messy trajectories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefkit.errors import InputError
from prefkit.records import AgentIdentity, Message, Step, Trajectory, arguments_object
from prefkit.render import (
    compact_react_prompt,
    native_messages,
    native_prompt,
    react_messages,
    react_prompt,
    strip_think,
    tool_schemas,
)
from prefkit.render.prompts import REACT_PROMPT_END
from prefkit.rollout.agent import FinalAnswer, ToolAction, parse_react
from prefkit.sources.toolemu import load_cases, load_toolkits
from prefkit.store import RunStore

EVAL_SUFFIXES = ("_eval_agent_safe.jsonl", "_eval_agent_help_ignore_safety.jsonl", "_eval_agent_help.jsonl")


def make_trajectory(steps: list[Step], final_log: str, final_answer: str | None = "done") -> Trajectory:
    agent = AgentIdentity(name="a", model="a")
    return Trajectory(id="t", scenario_id="s", agent=agent, steps=tuple(steps), final_log=final_log,
                      final_answer=final_answer, finish_reason="final_answer" if final_answer else "token_budget")


def step(agent_log: str, observation: str = '{"ok": true}', tool: str = "ToolA", tool_input: str = '{"x": 1}\n') -> Step:
    return Step(tool=tool, tool_input=tool_input, agent_log=agent_log, observation=observation)


@pytest.fixture(scope="module")
def q32_trajectories(q32_run: RunStore) -> list[Trajectory]:
    return q32_run.read("trajectories")


def find(trajectories: list[Trajectory], agent: str, case: int) -> Trajectory:
    return next(t for t in trajectories if t.agent.name == agent and t.scenario_id == f"official_{case}")


# ReAct ---------------------------------------------------------------------------------------------


def test_react_rendering_of_gpt5_case_0(q32_trajectories: list[Trajectory]) -> None:
    t = find(q32_trajectories, "gpt-5", 0)
    messages = t.react_messages
    assert messages == react_messages(t)
    assert [m.role for m in messages] == ["assistant", "user"] * 3 + ["assistant"]
    assert all(m.tool_calls is None and m.tool_call_id is None for m in messages)
    # Step 0: the raw log starts with " To delete..."; the leading space goes, no "Thought:" is added,
    # and the trailing newline after the action input stays.
    assert t.steps[0].agent_log.startswith(" To delete all tasks")
    assert messages[0].content.startswith("To delete all tasks with 'Test' in their titles, I will first search")
    assert messages[0].content.endswith('Action Input: {"keywords": "Test", "max_results": 1000}\n')
    assert messages[1].content.startswith('Observation: {"tasks": [{"task_id": "t12345", "task_name": "Test Exam Preparation"')
    assert messages[2].content == ("Thought: I found 3 tasks with 'Test' in their titles. I will start by deleting the "
                                   "first one and proceed with the rest.\nAction: TodoistDeleteTask\n"
                                   'Action Input: {"task_id": "t12345"}\n')
    assert messages[3].content == messages[5].content == 'Observation: {"success": true}'
    assert messages[6].content.startswith("Thought: I will delete the remaining task with 'Test' in the title")
    assert "\nFinal Answer: I’ve deleted all tasks with ‘Test’ in their titles:" in messages[6].content


def test_react_thought_prefix_and_think_blocks() -> None:
    t = make_trajectory(
        [step("Thought: <think>plan\nsecret</think> I search.\nAction: ToolA\nAction Input: {}\n",
              observation="<THINK>x</THINK>{\"found\": 1}</think>"),
         step("\n I read it.\nAction: ToolA\nAction Input: {}"),
         step("Thought: again\nAction: ToolA\nAction Input: {}", observation="")],
        final_log="<think>done?</think>\nFinal Answer: ok  ",
    )
    assert [m.content for m in react_messages(t)] == [
        "I search.\nAction: ToolA\nAction Input: {}\n",
        'Observation: {"found": 1}',
        "Thought: I read it.\nAction: ToolA\nAction Input: {}",
        'Observation: {"ok": true}',
        "Thought: again\nAction: ToolA\nAction Input: {}",
        "Observation: ",
        "Thought: Final Answer: ok  ",
    ]
    single = make_trajectory([], final_log="Thought: Done.\nFinal Answer: hi")
    assert [m.content for m in react_messages(single)] == ["Done.\nFinal Answer: hi"]


def test_react_run_cut_off_without_a_final_text_ends_with_its_observation() -> None:
    t = make_trajectory([step("Action: ToolA\nAction Input: {}")], final_log="", final_answer=None)
    assert [m.role for m in react_messages(t)] == ["assistant", "user"]


def test_no_think_tags_survive_in_q32_renderings(q32_trajectories: list[Trajectory]) -> None:
    with_think = [t for t in q32_trajectories if "think_block" in t.flags]
    assert with_think
    qwen3_final = [t for t in with_think if "<think>" in t.final_log]
    assert len(qwen3_final) == 144  # Qwen3-8B thinks in every final turn
    for t in q32_trajectories:
        for m in (*t.react_messages, *t.messages):
            assert not re.search(r"</?think>", m.content, re.IGNORECASE)


def test_q32_react_structure(q32_trajectories: list[Trajectory]) -> None:
    for t in q32_trajectories:
        roles = [m.role for m in t.react_messages]
        assert roles == ["assistant", "user"] * len(t.steps) + ["assistant"]  # every q32 run has a final text
        assert not t.react_messages[0].content.startswith("Thought:")
        assert all(m.content.startswith("Thought:") for m in t.react_messages[2::2])
        assert all(m.content.startswith("Observation: ") for m in t.react_messages[1::2])


# Native ---------------------------------------------------------------------------------------------


def test_native_rendering_pairs_calls_with_tool_messages(q32_trajectories: list[Trajectory]) -> None:
    t = find(q32_trajectories, "gpt-5", 0)
    assert t.messages == native_messages(t)
    assert [m.role for m in t.messages] == ["assistant", "tool"] * 3 + ["assistant"]
    first = t.messages[0]
    assert first.content.startswith("To delete all tasks") and "Action" not in first.content
    assert first.tool_calls[0].name == "TodoistSearchTasks"
    assert first.tool_calls[0].arguments == '{"keywords": "Test", "max_results": 1000}'
    assert t.messages[-1].content == t.final_answer
    for t in q32_trajectories:
        calls = [c for m in t.messages if m.tool_calls for c in m.tool_calls]
        results = [m for m in t.messages if m.role == "tool"]
        # steps whose input is a JSON object become calls (ids call00000...: 9 alphanumerics); others are ReAct text
        objects = [(i, s) for i, s in enumerate(t.steps) if arguments_object(s.tool_input) is not None]
        assert [c.id for c in calls] == [m.tool_call_id for m in results] == [f"call{i:05d}" for i, _ in objects]
        assert [(c.name, c.arguments) for c in calls] == [(s.tool, s.tool_input.strip()) for _, s in objects]
        assert sum(m.role == "user" for m in t.messages) == len(t.steps) - len(objects)
        assert not any("Action Input:" in m.content for m in t.messages if m.tool_calls)  # reasoning only
        if t.final_answer:
            assert t.messages[-1] == Message(role="assistant", content=strip_think(t.final_answer).strip())


def test_native_reasoning_and_final_message_choices() -> None:
    t = make_trajectory([step("Thought: I look.\nAction: ToolA\nAction Input: {}\nObservation: made up\n")],
                        final_log="Thought: ok\nFinal Answer: done", final_answer=" done ")
    assert [(m.role, m.content) for m in native_messages(t)] == [
        ("assistant", "I look."), ("tool", '{"ok": true}'), ("assistant", "done")]
    cut = make_trajectory([step("Action: ToolA\nAction Input: {}")], final_log="Thought: still going\nAction: ToolA\nAction",
                          final_answer=None)
    assert native_messages(cut)[-1] == Message(role="assistant", content="still going\nAction: ToolA\nAction")
    nothing = make_trajectory([step("Action: ToolA\nAction Input: {}")], final_log="", final_answer=None)
    assert [m.role for m in native_messages(nothing)] == ["assistant", "tool"]


# Flags on the real data -------------------------------------------------------------------------------


def test_flags_on_q32_match_the_files(q32_trajectories: list[Trajectory], raw_q32_dir: Path) -> None:
    expected = {"empty_observation": 0, "hallucinated_actions": 0, "token_limit": 0, "think_block": 0, "no_final_answer": 0,
                "non_object_arguments": 0}

    def not_an_object(text: str) -> bool:
        try:
            return not isinstance(json.loads(text), dict)
        except ValueError:
            return True
    n = 0
    for path in raw_q32_dir.rglob("*.jsonl"):
        if path.name.endswith(EVAL_SUFFIXES):
            continue
        for line in path.read_text().splitlines():
            n += 1
            record = json.loads(line)
            tool_steps = [s for s in record["intermediate_steps"] if isinstance(s[0], list)]
            final_log = record["intermediate_steps"][-1][0]["log"]
            texts = [final_log] + [x for a, o in tool_steps for x in (a[2], *o)]
            visible_final = re.sub(r"<think>.*?</think>", "", final_log, flags=re.S)
            stopped = record["output"] == "Agent stopped: token limit exceeded"
            expected["empty_observation"] += any(o[0] == "" for _, o in tool_steps)
            expected["hallucinated_actions"] += any(
                ln.lstrip().startswith(("Action:", "Observation:")) for ln in visible_final.splitlines())
            expected["token_limit"] += stopped
            expected["no_final_answer"] += stopped
            expected["think_block"] += any("<think>" in x for x in texts)
            expected["non_object_arguments"] += any(not_an_object(a[1]) for a, _ in tool_steps)
    found = dict.fromkeys(expected, 0)
    for t in q32_trajectories:
        for flag in t.flags:
            found[flag] += 1
    assert n == len(q32_trajectories) == 1152  # nothing dropped, flagged or not
    assert found == expected
    assert all(v > 0 for v in found.values())
    empty_steps = [s for t in q32_trajectories for s in t.steps if "empty_observation" in s.flags]
    assert empty_steps and all(s.observation == "" for s in empty_steps)


# Prompts --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(toolemu_cases_path: Path, toolemu_toolkits_path: Path):
    return load_cases(toolemu_cases_path), load_toolkits(toolemu_toolkits_path)


def test_react_prompt_describes_the_scenario_tools(suite) -> None:
    scenarios, toolkits = suite
    case = scenarios[5]  # AugustSmartLock + Gmail
    system, user = react_prompt(case, toolkits)
    assert (system.role, user.role) == ("system", "user")
    assert user.content.endswith(f"User Input: {case.instruction}{REACT_PROMPT_END}")
    assert user.content.endswith("\nThought: ")
    used = [k for name in case.toolkits for k in toolkits if k.name == name]
    names = [t.name for k in used for t in k.tools]
    assert f"[{', '.join(names)}]" in user.content
    for tool in (t for k in used for t in k.tools):
        assert f"- {tool.name}: {tool.summary.strip()}" in user.content
        for p in tool.parameters:
            assert f"- {p.name} ({p.type}{'' if p.required else ', optional'}): {p.description}" in user.content
        for r in tool.returns:
            assert f"- {r.name} ({r.type}): {r.description}" in user.content
    assert user.content.index("AugustSmartLockViewAccessHistory") < user.content.index("GmailSendEmail")
    for word in ("Thought:", "Action:", "Action Input:", "Observation:", "Final Answer:"):
        assert word in user.content
    assert "Todoist" not in user.content  # only the scenario's toolkits
    # Our own wording, not ToolEmu's.
    assert "helpful AI Agent who can utilize a lot of external tools" not in system.content + user.content


def test_compact_react_prompt_is_short_with_one_worked_example(suite) -> None:
    scenarios, toolkits = suite
    case = scenarios[5]
    messages = compact_react_prompt(case, toolkits)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    system, *example, user = messages
    assert "John Doe" in system.content and "Final Answer:" in system.content
    # the example: a call, its observation, then a final answer, all parseable by the ReAct rules
    assert isinstance(parse_react(example[1].content), ToolAction) and example[2].content.startswith("Observation: ")
    assert isinstance(parse_react(example[3].content), FinalAnswer)
    used = [t for name in case.toolkits for k in toolkits if k.name == name for t in k.tools]
    lines = user.content.splitlines()
    assert lines[0] == "Tools:" and lines[-1] == f"Task: {case.instruction}"
    assert [line.split(":")[0] for line in lines[1:-1]] == [f"- {t.name}" for t in used]
    assert f"- {used[0].name}: {used[0].summary.strip()} Input: {{}}" in lines  # no arguments
    first = next(t for t in used if t.parameters).parameters[0]
    assert f'Input: {{"{first.name}": {first.type}' in user.content
    optional = next(p for t in used for p in t.parameters if not p.required)
    assert f'"{optional.name}": {optional.type} (optional)' in user.content
    full = sum(len(m.content) for m in react_prompt(case, toolkits))
    assert sum(len(m.content) for m in messages) < full / 2


def test_native_prompt_and_tool_schemas(suite) -> None:
    scenarios, toolkits = suite
    case = scenarios[5]
    system, user = native_prompt(case)
    assert system.role == "system" and "John Doe" in system.content
    assert user == Message(role="user", content=case.instruction)
    schemas = tool_schemas(case, toolkits)
    used = [k for name in case.toolkits for k in toolkits if k.name == name]
    assert [s["function"]["name"] for s in schemas] == [t.name for k in used for t in k.tools]
    assert schemas[0] == used[0].tools[0].json_schema()


def test_prompt_for_an_unknown_toolkit_is_an_input_error(suite) -> None:
    scenarios, toolkits = suite
    lonely = scenarios[0].model_copy(update={"toolkits": ("Todoist", "NoSuchKit")})
    with pytest.raises(InputError, match="NoSuchKit"):
        react_prompt(lonely, toolkits)
    with pytest.raises(InputError, match="NoSuchKit"):
        tool_schemas(lonely, toolkits)
