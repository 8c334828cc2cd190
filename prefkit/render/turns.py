"""Reading an agent's turn: a tool call (``ToolAction``), a final answer (``FinalAnswer``), or something
that cannot be used (``Unparseable``, which a rollout answers with a re-prompt).

The one reader of agent output, shared by the rollout loop and the importers of other agents' logs
(``prefkit.sources``), so a turn means the same wherever it comes from.

- ``react``: free text. As in the study, a turn that mentions ``Final Answer`` anywhere is a final
  answer (checked first: the answer is what follows its last occurrence); otherwise the first
  ``Action:`` line followed by ``Action Input:`` is the call, and the input is the JSON object that
  begins at its first ``{`` (``action_input``). The stored ``agent_log`` is the raw text.
- ``native``: the backend's parsed tool calls (and any ``<tool_call>`` block left in the text, through
  the same extractor, ``prefkit.tool_calls``). The first call is the action (one call per
  step; the step is flagged ``extra_tool_calls`` if the model made more); tool-call markup that does
  not parse is ``Unparseable`` (flag ``unparsed_tool_call``); other text without a call is the final
  answer. The stored logs are written in ReAct form (``<reasoning>\\nAction: <name>\\nAction Input:
  <arguments>`` and ``Final Answer: <text>``) so that both renderings in ``prefkit.render`` rebuild
  the trajectory from the one set of fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from prefkit.records import PromptFormat, ToolCall
from prefkit.render.react import strip_think
from prefkit.text import json_value_at
from prefkit.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, extract_tool_calls

REACT_STOP = ("\nObservation:",)
"""Where a ReAct agent's generation is cut (see ``AgentConfig.stop_at_observation``)."""


@dataclass(frozen=True)
class ToolAction:
    name: str
    arguments: str
    """The action input as the agent wrote it (normally a JSON object)."""
    log: str
    """The ``Step.agent_log`` to store."""
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    log: str
    """The ``Trajectory.final_log`` to store."""


@dataclass(frozen=True)
class Unparseable:
    log: str
    reason: str
    """Why, in words for the re-prompt."""
    flags: tuple[str, ...] = ()
    """Trajectory flags the turn earns (``unparsed_tool_call``), kept even when a re-prompt succeeds."""


AgentTurn = ToolAction | FinalAnswer | Unparseable


# Parsing ReAct text --------------------------------------------------------------------------------

# The study counts a turn as final as soon as either phrase appears; the answer follows the last one.
_FINAL = re.compile(r"Final Answer|The final answer is", re.IGNORECASE)
_ACTION = re.compile(r"Action\s*:[ \t]*(?P<name>[^\n]*?)[ \t]*\n+\s*Action\s*Input\s*:\s*(?P<input>.*)", re.DOTALL)
_NAME_JUNK = "`'\"*[]() .:"


def final_answer_text(text: str) -> str:
    """The answer after the last ``Final Answer`` phrase, without the ``:`` and spaces that follow it."""
    *_, last = _FINAL.finditer(text)  # callers check that there is one
    return re.sub(r"^\s*:?\s*", "", text[last.end():]).rstrip()


def parse_react(text: str) -> AgentTurn:
    """One ReAct agent turn (see the module rules)."""
    visible = strip_think(text)
    if _FINAL.search(visible):
        return FinalAnswer(answer=final_answer_text(visible), log=text)
    match = _ACTION.search(visible)
    if match is None:
        if not visible.strip():
            return Unparseable(text, "it was empty")
        return Unparseable(text, "it has neither an Action with an Action Input nor a Final Answer")
    name = match.group("name").strip(_NAME_JUNK)
    if not name:
        return Unparseable(text, "the Action line names no tool")
    raw_input = match.group("input")
    return ToolAction(name=name, arguments=action_input(raw_input), log=text)


def action_input(raw: str) -> str:
    """The ``Action Input`` the agent meant: the JSON object that begins at the first ``{`` after the
    label (decoded by ``prefkit.text.json_value_at``, so braces and tags inside its strings are text),
    cut out of whatever follows it; when no complete object begins there (plain text, or JSON cut
    off), the text up to a made-up ``Observation`` line, stripped, which the schema check answers
    with an ``InvalidRequestException`` observation, as the study did."""
    start = raw.find("{")
    found = json_value_at(raw, start) if start >= 0 else None
    if found is not None:
        return raw[start : found[1]]
    return raw.split("\nObservation", 1)[0].strip()


# Parsing native tool calls -------------------------------------------------------------------------


def parse_native(text: str, tool_calls: Sequence[ToolCall] | None) -> AgentTurn:
    """One native agent turn: the backend's text and parsed tool calls.

    The text also goes through ``prefkit.tool_calls.extract_tool_calls`` (outside think
    blocks), the extractor every backend uses: calls a server returned unparsed in its content are
    taken out after the backend's own, and ``<tool_call>`` markup that does not parse (JSON cut off,
    not a call, other text before the closing tag) makes the turn ``Unparseable`` with the flag
    ``unparsed_tool_call`` (the loop re-prompts), never a final answer; so does a broken block beside
    a good one, since acting on the good one alone would skip what the model meant first.
    """
    extracted = extract_tool_calls(strip_think(text))
    if extracted.unparsed:
        return Unparseable(text, f"its {TOOL_CALL_OPEN} block is not one complete JSON object "
                                 f'{{"name": ..., "arguments": {{...}}}} followed by {TOOL_CALL_CLOSE}',
                           flags=("unparsed_tool_call",))
    reasoning = extracted.text.strip()
    tool_calls = (*(tool_calls or ()), *extracted.calls)
    if tool_calls:
        call = tool_calls[0]
        log = f"{reasoning}\nAction: {call.name}\nAction Input: {call.arguments}".lstrip("\n")
        return ToolAction(name=call.name, arguments=call.arguments, log=log,
                          flags=("extra_tool_calls",) if len(tool_calls) > 1 else ())
    if not reasoning:
        return Unparseable(text, "it had no function call and no text")
    return FinalAnswer(answer=reasoning, log=f"Final Answer: {reasoning}")


def parse_turn(prompt_format: PromptFormat, text: str, tool_calls: Sequence[ToolCall] | None) -> AgentTurn:
    return parse_react(text) if prompt_format == "react" else parse_native(text, tool_calls)
