"""The study's ReAct rendering of a trajectory's agent side: assistant text turns and user
``Observation:`` turns, as the DPO rows of the paper hold them.

Rules (paper-reference §4 item 6), with whitespace exactly as the study's script treats it:

- ``<think>...</think>`` blocks, and stray ``<think>``/``</think>`` tags, are removed (case-insensitive)
  from agent texts and observations; nothing else of an observation is touched.
- Each agent text then loses its leading whitespace. The prompt already ends with ``Thought: ``, so
  the first turn (step 0) drops a leading ``Thought:`` and the whitespace after it; every later
  turn starts with ``Thought:``, and gets ``Thought: `` prepended when it does not. Trailing
  whitespace is kept.
- Per tool step: an assistant turn with the agent's text, then a user turn ``"Observation: " +
  observation``. The final turn is the agent's last text (``Trajectory.final_log``), counted as the
  step after the last tool step; it is left out only when that text is empty (a run cut off
  before the agent produced one, so the rendering then ends with an observation).
"""

from __future__ import annotations

import re

from prefkit.records import Message, Step, Trajectory

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_TAG = re.compile(r"</?think>", re.IGNORECASE)

THOUGHT = "Thought:"
OBSERVATION_PREFIX = "Observation: "


def strip_think(text: str) -> str:
    """``text`` without ``<think>...</think>`` blocks and without stray think tags."""
    return _THINK_TAG.sub("", _THINK_BLOCK.sub("", text))


def has_think(text: str) -> bool:
    """Whether ``text`` holds a think tag (opening or closing)."""
    return _THINK_TAG.search(text) is not None


def agent_turn(text: str, step_index: int) -> str:
    """One agent text as the study renders it at position ``step_index`` (see the module rules)."""
    body = strip_think(text).lstrip()
    if step_index == 0:
        return body[len(THOUGHT):].lstrip() if body.startswith(THOUGHT) else body
    return body if body.startswith(THOUGHT) else f"{THOUGHT} {body}"


def observation_turn(step: Step) -> str:
    return OBSERVATION_PREFIX + strip_think(step.observation)


def react_step(step: Step, step_index: int) -> tuple[Message, Message]:
    """One tool step as the study renders it: the assistant turn (``agent_turn``) and the user
    ``Observation:`` turn. The native rendering uses it too, for a step it cannot show as a tool call."""
    return (Message(role="assistant", content=agent_turn(step.agent_log, step_index)),
            Message(role="user", content=observation_turn(step)))


def react_messages(trajectory: Trajectory) -> tuple[Message, ...]:
    """The agent side of ``trajectory`` in the study's ReAct rendering (the prompt not included).

    Example: a run with one tool step gives ``(assistant "I will search...\\nAction: ...",
    user "Observation: {...}", assistant "Thought: Done.\\nFinal Answer: ...")``.
    """
    messages: list[Message] = []
    for index, step in enumerate(trajectory.steps):
        messages.extend(react_step(step, index))
    if trajectory.final_log:
        messages.append(Message(role="assistant", content=agent_turn(trajectory.final_log, len(trajectory.steps))))
    return tuple(messages)
