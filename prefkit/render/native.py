"""A trajectory's agent side as native tool calls (OpenAI / TRL ``tools`` style).

Per tool step ``i`` whose action input is a JSON object (``prefkit.records.arguments_object``):

- an assistant message whose content is the agent's reasoning (its text with think blocks removed,
  cut before the ``Action:`` / ``Action Input:`` part, without a leading ``Thought:``, stripped) and
  one tool call ``ToolCall(id=call_id(i), name=step.tool, arguments=step.tool_input.strip())``;
- a ``tool`` message with the observation (think blocks removed) and ``tool_call_id=call_id(i)``.

Call ids are ``call`` plus the step index in 5 digits (``call00000``): 9 alphanumerics, the one form
every common chat template accepts (Mistral-family templates refuse any other), deterministic, and unique
within a trajectory.

A step whose action input is **not** a JSON object (cut off, plain text, a JSON array or string) is not
turned into a tool call: a call's ``arguments`` would then be a string, which templates that apply
``tojson`` (Qwen2.5's and others) quote a second time, so the model would learn a quoted string where an
object belongs. Such a step is rendered as the study's ReAct text for that one step instead
(``prefkit.render.react.react_step``): an assistant turn with the reasoning and ``Action: NAME`` /
``Action Input: <the text exactly as written>``, then a user ``Observation: ...`` turn. Every native
tool call's arguments are therefore a JSON object; such trajectories carry the ``non_object_arguments``
flag (set by ``prefkit.sources.toolemu_records.trajectory_flags``).

Final message (a choice, documented here): the **final answer alone** (think blocks removed,
stripped) — in native format the answer is what the assistant says to the user, and the ReAct
rendering keeps the full final text for those who want it. Hallucinated ``Action:``/``Observation:``
lines in a final text are therefore not turned into tool calls. A run without an answer (token
budget, error) ends with the reasoning of its last text instead, and with no final message when
that is empty too.
"""

from __future__ import annotations

import re

from prefkit.records import Message, ToolCall, Trajectory, arguments_object
from prefkit.render.react import THOUGHT, react_step, strip_think

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
    """The id of step ``step_index``'s tool call: ``call`` + 5 digits (9 alphanumerics, e.g. ``call00003``)."""
    if not 0 <= step_index < 100_000:
        raise ValueError(f"step index {step_index} has no 9-character call id (0..99999)")
    return f"call{step_index:05d}"


def native_messages(trajectory: Trajectory) -> tuple[Message, ...]:
    """The agent side of ``trajectory`` as assistant tool calls and tool messages (no prompt).

    Example: one tool step gives ``(assistant "I will search." + tool_calls=(call00000 TodoistSearchTasks),
    tool "{...}" tool_call_id="call00000", assistant "Done: ...")``; with a cut-off action input, the
    step is ``(assistant "I will search.\\nAction: TodoistSearchTasks\\nAction Input: {...", user
    "Observation: ...")`` instead (see the module docstring).
    """
    messages: list[Message] = []
    for index, step in enumerate(trajectory.steps):
        if arguments_object(step.tool_input) is None:
            messages.extend(react_step(step, index))
            continue
        call = ToolCall(id=call_id(index), name=step.tool, arguments=step.tool_input.strip())
        messages.append(Message(role="assistant", content=reasoning(step.agent_log), tool_calls=(call,)))
        messages.append(Message(role="tool", content=strip_think(step.observation), tool_call_id=call.id))
    answer = strip_think(trajectory.final_answer or "").strip()
    final = answer or reasoning(trajectory.final_log)
    if final:
        messages.append(Message(role="assistant", content=final))
    return tuple(messages)
