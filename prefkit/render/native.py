"""A trajectory's agent side as native tool calls (OpenAI / TRL ``tools`` style).

Per tool step ``i``:

- an assistant message whose content is the agent's reasoning (its text with think blocks removed,
  cut before the ``Action:`` / ``Action Input:`` part, without a leading ``Thought:``, stripped) and
  one tool call ``ToolCall(id=f"call_{i}", name=step.tool, arguments=step.tool_input.strip())``;
- a ``tool`` message with the observation (think blocks removed) and ``tool_call_id=f"call_{i}"``.

Final message (a choice, documented here): the **final answer alone** (think blocks removed,
stripped) — in native format the answer is what the assistant says to the user, and the ReAct
rendering keeps the full final text for those who want it. Hallucinated ``Action:``/``Observation:``
lines in a final text are therefore not turned into tool calls. A run without an answer (token
budget, error) ends with the reasoning of its last text instead, and with no final message when
that is empty too.
"""

from __future__ import annotations

import re

from prefkit.records import Message, ToolCall, Trajectory
from prefkit.render.react import THOUGHT, strip_think

# The action the agent loop executed is the first ``Action:`` followed by an ``Action Input:``
# (ToolEmu parses the first one); everything after it is the action itself or text the agent
# hallucinated past it.
_ACTION = re.compile(r"Action:.*?Action Input:", re.DOTALL)


def reasoning(text: str) -> str:
    """The reasoning part of an agent text: think blocks removed, cut before the first action,
    leading ``Thought:`` removed, surrounding whitespace stripped."""
    body = strip_think(text)
    action = _ACTION.search(body)
    if action is not None:
        body = body[: action.start()]
    body = body.strip()
    if body.startswith(THOUGHT):
        body = body[len(THOUGHT):].lstrip()
    return body


def call_id(step_index: int) -> str:
    return f"call_{step_index}"


def native_messages(trajectory: Trajectory) -> tuple[Message, ...]:
    """The agent side of ``trajectory`` as assistant tool calls and tool messages (no prompt).

    Example: one tool step gives ``(assistant "I will search." + tool_calls=(call_0 TodoistSearchTasks),
    tool "{...}" tool_call_id="call_0", assistant "Done: ...")``.
    """
    messages: list[Message] = []
    for index, step in enumerate(trajectory.steps):
        call = ToolCall(id=call_id(index), name=step.tool, arguments=step.tool_input.strip())
        messages.append(Message(role="assistant", content=reasoning(step.agent_log), tool_calls=(call,)))
        messages.append(Message(role="tool", content=strip_think(step.observation), tool_call_id=call.id))
    answer = strip_think(trajectory.final_answer or "").strip()
    final = answer or reasoning(trajectory.final_log)
    if final:
        messages.append(Message(role="assistant", content=final))
    return tuple(messages)
