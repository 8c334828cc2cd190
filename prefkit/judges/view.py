"""The judge's view of a trajectory and the judge's prompt.

The judge sees a run as the study's evaluators did (paper-reference.md §3.3): for each tool step the
action, its input and the observation, then the final answer; never the agent's private reasoning
(its thoughts, ``<think>`` blocks) and never the emulator's notes. Everything here is a pure function
of records, so the same trajectory always gives the same prompt (and the same cache key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prefkit.judges.rubrics import AnswerFormat, load_template, rubric, template_text
from prefkit.records import Message, Scenario, Tool, Toolkit, Trajectory

_NONE = "(none)"


def trajectory_view(trajectory: Trajectory) -> str:
    """``Action`` / ``Action Input`` / ``Observation`` per step, then ``Final Answer``.

    A run that stopped without an answer says so, with its finish reason, instead of an answer.
    """
    blocks = [
        f"Action: {step.tool}\nAction Input: {step.tool_input.strip()}\nObservation: {step.observation.strip()}"
        for step in trajectory.steps
    ]
    if trajectory.final_answer is not None:
        blocks.append(f"Final Answer: {trajectory.final_answer.strip()}")
    else:
        blocks.append(f"Final Answer: (none: the run ended without one, reason {trajectory.finish_reason})")
    return "\n\n".join(blocks)


def _bullets(items: Iterable[str]) -> str:
    lines = [f"- {item.strip()}" for item in items if item.strip()]
    return "\n".join(lines) or _NONE


def _underspecifications(scenario: Scenario) -> str:
    return (
        f"About the task itself:\n{_bullets(scenario.underspecified_task_information)}\n"
        f"About safety and security constraints:\n{_bullets(scenario.underspecified_safety_constraints)}"
    )


def _tool_line(tool: Tool) -> str:
    # Names and types only: the judge needs to know what a call does, not how to make one.
    args = ", ".join(f"{p.name} ({p.type}{'' if p.required else ', optional'})" for p in tool.parameters)
    returns = ", ".join(f"{r.name} ({r.type})" for r in tool.returns)
    summary = tool.summary.strip().rstrip(".")
    return f"- {tool.name}: {summary}. Arguments: {args or 'none'}. Returns: {returns or 'nothing'}."


def tools_view(scenario: Scenario, toolkits: Sequence[Toolkit]) -> str:
    """The scenario's tools, one line each; toolkits the run does not hold are named without tools."""
    by_name = {t.name: t for t in toolkits}
    lines = []
    for name in scenario.toolkits:
        toolkit = by_name.get(name)
        if toolkit is None:
            lines.append(f"{name}: (no description available)")
            continue
        lines.append(f"{toolkit.name_for_model}: {toolkit.description_for_model.strip()}")
        lines.extend(_tool_line(tool) for tool in toolkit.tools)
    return "\n".join(lines) or _NONE


def judge_messages(trajectory: Trajectory, scenario: Scenario, toolkits: Sequence[Toolkit], *, metric: str,
                   answer_format: AnswerFormat) -> tuple[Message, Message]:
    """The system and user messages that ask a judge to grade ``trajectory`` on ``metric``.

    Raises:
        InputError: an unknown metric.
    """
    rub = rubric(metric)
    fields = {
        "instruction": scenario.instruction.strip(),
        "tools": tools_view(scenario, toolkits),
        "trajectory": trajectory_view(trajectory),
        "answer_format": template_text(f"answer_{answer_format}"),
    }
    if rub.shows_risks:
        fields |= {
            "underspecifications": _underspecifications(scenario),
            "risky_outcomes": _bullets(scenario.risky_outcomes),
            "risky_actions": _bullets(scenario.risky_actions),
        }
    return (
        Message(role="system", content=template_text("system")),
        Message(role="user", content=load_template(metric).substitute(fields)),
    )
