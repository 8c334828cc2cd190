"""Case tool-call-tag-in-args: JSON-aware tool-call extraction (NousResearch/hermes-agent #22696).

A lazy ``<tool_call>(.*?)</tool_call>`` regex ends a call at a closing tag inside a JSON string, and
markup that did not parse fell through to a final answer. The fault class: tool-call extraction by a
non-JSON-aware scan, with a silent fallback that turns unparsed markup into a final answer. Covered
here: the case's two inputs, more inputs of the class for both formats (native ``<tool_call>`` blocks,
ReAct ``Action Input``), an OpenAI-compatible server without a tool-call parser, and a whole rollout.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from prefkit.backends import ChatRequest, GenerateConfig, create_backend, extract_tool_calls, generate_sync
from prefkit.backends.base import parse_tool_calls
from prefkit.records import Message
from prefkit.rollout import (
    AgentConfig,
    EmulatorConfig,
    RolloutConfig,
    RolloutItem,
    RolloutLimits,
    load_scenario_suite,
    run_rollouts,
)
from prefkit.rollout.agent import FinalAnswer, ToolAction, Unparseable, parse_native, parse_react
from prefkit.rollout.calls import check_call

# The case's inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_outputs(shared_dir: Path) -> dict[str, str]:
    """The two model outputs of the case, read from its check.py (which also runs through the API)."""
    script = shared_dir / "cases" / "tool-call-tag-in-args" / "check.py"
    if not script.exists():
        pytest.skip(f"case missing: {script}")
    return runpy.run_path(str(script), run_name="case")["outputs"]


def _turn(text: str):
    rest, calls = parse_tool_calls(text)
    return parse_native(rest, calls)


def test_case_closing_tag_inside_a_string_argument(case_outputs):
    turn = _turn(case_outputs["tag_inside_string"])
    assert isinstance(turn, ToolAction) and turn.name == "TerminalExecute"
    assert json.loads(turn.arguments) == {"command": "echo '</tool_call>' >> notes.txt"}


def test_case_call_cut_off_at_end_of_turn(case_outputs):
    text = case_outputs["unclosed_at_eos"]
    # Its JSON is complete: the call is parsed although the closing tag was never written.
    turn = _turn(text)
    assert isinstance(turn, ToolAction) and turn.name == "TodoistDeleteTask"
    assert json.loads(turn.arguments) == {"task_id": "t1"}
    # Cut inside the JSON: nothing to execute, and never a final answer made of markup.
    for cut in (text.index('"arguments"'), text.index('"t1"') + 2, text.rindex("}")):
        truncated = text[:cut]
        assert parse_tool_calls(truncated) == (truncated, None)
        turn = _turn(truncated)
        assert isinstance(turn, Unparseable) and turn.flags == ("unparsed_tool_call",), truncated
        assert turn.log == truncated and "<tool_call>" in turn.reason


# More inputs of the class: native <tool_call> blocks ---------------------------------------------------


@pytest.mark.parametrize(("text", "rest", "calls"), [
    # two calls, prose around them, the closing tag and braces inside strings
    ('Two things.\n<tool_call>\n{"name": "Write", "arguments": {"text": "a </tool_call> b"}}\n</tool_call>\n'
     '<tool_call>{"name": "Find", "arguments": {"query": "} {x"}}</tool_call> done',
     "Two things.\n\n done", [("Write", {"text": "a </tool_call> b"}), ("Find", {"query": "} {x"})]),
    # the tag inside a string, then another block: the first call must not swallow the second
    ('<tool_call>{"name": "A", "arguments": {"s": "<tool_call>{\\"name\\": \\"B\\"}</tool_call>"}}</tool_call>\n'
     '<tool_call>{"name": "C", "arguments": {}}</tool_call>',
     "", [("A", {"s": '<tool_call>{"name": "B"}</tool_call>'}), ("C", {})]),
    # complete JSON cut off before </tool_call> (whitespace after it), after an earlier closed block
    ('<tool_call>{"name": "A", "arguments": {"n": 1}}</tool_call><tool_call>\n{"name": "B", "arguments": {"n": 2}}\n\n',
     "", [("A", {"n": 1}), ("B", {"n": 2})]),
    # arguments as JSON text, the ``parameters`` alias, null arguments, the OpenAI function shape, a list
    ('<tool_call>{"name": "A", "arguments": "{\\"k\\": \\"v\\"}"}</tool_call>', "", [("A", {"k": "v"})]),
    ('<tool_call>{"name": "A", "parameters": {"k": 1}}</tool_call>', "", [("A", {"k": 1})]),
    ('<tool_call>{"name": "A", "arguments": null}</tool_call>', "", [("A", {})]),
    ('<tool_call>{"type": "function", "function": {"name": "A", "arguments": {"k": 1}}}</tool_call>', "", [("A", {"k": 1})]),
    ('<tool_call>[{"name": "A", "arguments": {}}, {"name": "B", "arguments": {"z": "ü"}}]</tool_call>',
     "", [("A", {}), ("B", {"z": "ü"})]),
])
def test_blocks_are_read_as_json(text, rest, calls):
    found = extract_tool_calls(text)
    assert found.text == rest and not found.unparsed
    assert [(c.name, json.loads(c.arguments)) for c in found.calls] == calls
    assert parse_tool_calls(text) == (rest, found.calls)


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "A", "arguments": {"text": "cut',  # JSON cut off
    '<tool_call>{"name": "A", "arguments": {}} and then</tool_call>',  # text between the JSON and the tag
    '<tool_call>{"note": "no name"}</tool_call>',  # not a call
    '<tool_call>{not json}</tool_call>',
    'I am done.</tool_call>',  # a stray closing tag
    'Answer: use <tool_call> tags',
])
def test_markup_that_does_not_parse_stays_and_is_reported(text):
    found = extract_tool_calls(text)
    assert found == extract_tool_calls(text) and found.text == text and found.calls == () and found.unparsed
    turn = parse_native(text, None)
    assert isinstance(turn, Unparseable) and turn.flags == ("unparsed_tool_call",)


def test_a_broken_block_beside_a_good_one_is_not_acted_on():
    text = ('<tool_call>{"name": "Delete", "arguments": {"id": </tool_call>\n'
            '<tool_call>{"name": "Find", "arguments": {}}</tool_call>')
    found = extract_tool_calls(text)
    assert [c.name for c in found.calls] == ["Find"] and found.unparsed
    assert found.text == '<tool_call>{"name": "Delete", "arguments": {"id": </tool_call>'
    # The model meant two calls and the first did not parse: ask again rather than run the second.
    assert isinstance(_turn(text), Unparseable)


def test_call_ids_are_nine_alphanumerics_and_deterministic():
    text = '<tool_call>{"name": "A", "arguments": {}}</tool_call><tool_call>{"name": "A", "arguments": {}}</tool_call>'
    first, second = extract_tool_calls(text).calls
    assert all(len(c.id) == 9 and c.id.isalnum() for c in (first, second))
    assert first.id != second.id and extract_tool_calls(text).calls == (first, second)


def test_native_turns_use_the_one_extractor():
    # Calls a server left in its content (no tool parser) become the action, as from any backend.
    turn = parse_native('Checking.\n<tool_call>{"name": "Find", "arguments": {"q": "</tool_call>"}}</tool_call>', None)
    assert turn == ToolAction(name="Find", arguments='{"q": "</tool_call>"}',
                              log='Checking.\nAction: Find\nAction Input: {"q": "</tool_call>"}')
    # Markup mentioned inside a think block is reasoning, not a call.
    assert parse_native("<think>maybe <tool_call> here</think>All done.", None) == \
        FinalAnswer(answer="All done.", log="Final Answer: All done.")


# More inputs of the class: ReAct Action Input ---------------------------------------------------------


def test_react_action_input_is_read_as_json(toolemu_toolkits_path):
    from prefkit.sources.toolemu import load_toolkits

    tools = {t.name: t for tk in load_toolkits(toolemu_toolkits_path) for t in tk.tools}
    text = ('Thought: note it.\nAction: TerminalExecute\nAction Input: {"command": "echo \'</tool_call> }{\' >> notes.txt"}'
            '\nObservation: {"output": ""}')
    turn = parse_react(text)
    assert isinstance(turn, ToolAction) and turn.name == "TerminalExecute"
    assert json.loads(turn.arguments) == {"command": "echo '</tool_call> }{' >> notes.txt"}
    assert check_call(turn.name, turn.arguments, tools) is None
    fenced = parse_react('Action: TerminalExecute\nAction Input: ```json\n{"command": "ls"}\n```')
    assert fenced.arguments == '{"command": "ls"}'
    # Cut off: the text goes to the schema check as written (not an inner object that happens to be
    # complete), which answers with the study's InvalidRequestException observation.
    cut = parse_react('Action: TerminalExecute\nAction Input: {"command": "ls", "env": {"A": "1"}')
    assert isinstance(cut, ToolAction) and cut.arguments == '{"command": "ls", "env": {"A": "1"}'
    assert json.loads(check_call(cut.name, cut.arguments, tools))["error"].startswith("InvalidRequestException")


# Every backend, and a whole rollout ---------------------------------------------------------------------

_CUT = '<tool_call>\n{"name": "HomeHubListDevices", "arguments": {"room": "living'
_GOOD = ('Listing first.\n<tool_call>\n{"name": "HomeHubListDevices", "arguments": {"room": "</tool_call> room"}}\n'
         '</tool_call>')
_EMULATOR_OK = '{"summary": "fine", "observation": {"devices": []}}'


def _agent_without_tool_parser(body: dict, choice: int) -> str:
    """A model behind a server that leaves its ``<tool_call>`` blocks in the content."""
    if not body.get("tools"):
        return _EMULATOR_OK  # the emulator
    messages = body["messages"]
    if any("Lock every door" in str(m.get("content")) for m in messages):
        return _CUT  # starter_11: never a usable call
    if messages[-1]["role"] == "tool":
        return "No devices there."
    if any(m["role"] == "assistant" for m in messages):
        return _GOOD  # after the re-prompt
    return _CUT


def test_openai_server_without_a_tool_parser(fake_openai):
    fake_openai.tool_parser, fake_openai.responder = False, _agent_without_tool_parser
    backend = create_backend("fake@openai", base_url=fake_openai.base_url)
    tools = ({"type": "function", "function": {"name": "HomeHubListDevices", "parameters": {"type": "object"}}},)
    retried = (Message(role="user", content="hi"), Message(role="assistant", content="?"),
               Message(role="user", content="again"))
    asked = [ChatRequest(messages=m, tools=tools, config=GenerateConfig())
             for m in (retried, (Message(role="user", content="Lock every door"),))]
    [[called]], [[cut]] = generate_sync(backend, asked[:1]), generate_sync(backend, asked[1:])
    assert called.text == "Listing first." and called.finish_reason == "tool_calls"
    assert [json.loads(c.arguments) for c in called.tool_calls] == [{"room": "</tool_call> room"}]
    assert called.tool_calls == parse_tool_calls(_GOOD)[1]
    assert cut.text == _CUT and cut.tool_calls is None and cut.finish_reason == "stop"


def test_rollout_never_records_markup_as_a_final_answer(fake_openai):
    fake_openai.tool_parser, fake_openai.responder = False, _agent_without_tool_parser
    backend = create_backend("fake@openai", base_url=fake_openai.base_url)
    suite = load_scenario_suite("starter").select(["starter_9", "starter_11"])
    config = RolloutConfig(agent=AgentConfig(model="fake@openai", prompt_format="native"),
                           emulator=EmulatorConfig(model="fake@openai"), limits=RolloutLimits(max_reprompts=2))
    items = [RolloutItem(s.id, s, 0) for s in suite.scenarios]
    recovered, stuck = run_rollouts(items, suite.toolkits, config, agent=backend, emulator=backend)

    # starter_9: the cut-off call is re-prompted, the next one (a closing tag in its argument) runs.
    assert recovered.finish_reason == "final_answer" and recovered.final_answer == "No devices there."
    assert [(s.tool, json.loads(s.tool_input)) for s in recovered.steps] == \
        [("HomeHubListDevices", {"room": "</tool_call> room"})]
    assert {"reprompted", "unparsed_tool_call"} <= set(recovered.flags)
    assert recovered.steps[0].flags == ("reprompted",)
    # starter_11: markup every time -> re-prompted, then an error, never a final answer.
    assert stuck.finish_reason == "error" and stuck.final_answer is None and stuck.steps == ()
    assert {"reprompted", "unparsed_tool_call", "no_final_answer"} <= set(stuck.flags)
    assert stuck.final_log == _CUT
    agent_requests = [b for b in fake_openai.requests if b.get("tools")]
    assert len(agent_requests) == 3 + 3  # starter_9: cut, good call, answer; starter_11: first try + 2 re-prompts
