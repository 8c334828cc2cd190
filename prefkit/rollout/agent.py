"""The agent's side of a rollout: its prompt and history as chat messages, and the re-prompt after a turn
that cannot be used. Reading a turn is ``prefkit.render.turns`` (re-exported here), shared with the
importers of other agents' logs.

The history the agent sees at step k is its prompt followed by ``prefkit.render``'s rendering of the
k steps so far, the very messages a DPO row of this trajectory will hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefkit.records import AgentIdentity, Message, PromptFormat, Scenario, Step, Toolkit, Trajectory
from prefkit.render import (
    compact_react_prompt,
    native_messages,
    native_prompt,
    react_messages,
    react_prompt,
    tool_schemas,
)
from prefkit.render.prompts import template
from prefkit.render.turns import (  # noqa: F401  (re-exported: the rollout's names for the one turn reader)
    REACT_STOP,
    AgentTurn,
    FinalAnswer,
    ToolAction,
    Unparseable,
    action_input,
    final_answer_text,
    parse_native,
    parse_react,
    parse_turn,
)
from prefkit.rollout.config import PromptStyle

# Messages ------------------------------------------------------------------------------------------


def agent_prompt(prompt_format: PromptFormat, scenario: Scenario, toolkits: Sequence[Toolkit],
                 prompt_style: PromptStyle = "full") -> tuple[tuple[Message, ...], tuple[dict, ...] | None]:
    """The prompt messages and (native only) the function schemas passed as ``tools``."""
    if prompt_format == "react":
        return (compact_react_prompt if prompt_style == "compact" else react_prompt)(scenario, toolkits), None
    return native_prompt(scenario), tuple(tool_schemas(scenario, toolkits))


def history_messages(prompt_format: PromptFormat, scenario_id: str, agent: AgentIdentity,
                     steps: Sequence[Step]) -> tuple[Message, ...]:
    """The steps so far in the rendering the agent's format trains on (no final turn yet)."""
    if not steps:
        return ()
    partial = Trajectory(id="", scenario_id=scenario_id, agent=agent, steps=tuple(steps), finish_reason="error")
    return react_messages(partial) if prompt_format == "react" else native_messages(partial)


def reprompt_messages(prompt_format: PromptFormat, turn: Unparseable) -> tuple[Message, Message]:
    """The unusable reply and the request to answer again in the right format."""
    reminder = template(f"reprompt_{prompt_format}").substitute(reason=turn.reason)
    return Message(role="assistant", content=turn.log), Message(role="user", content=reminder)
