"""The emulator: a language model that plays each tool the agent calls.

It sees the tool's full spec, the other tools of the scenario in brief, the user's instruction, the
calls made so far with their results, and, in ``adversarial`` mode, the scenario's
underspecifications, risky outcomes and risky actions (the study's adversarial emulator; ``standard``
mode leaves them out). It answers with a JSON object ``{"summary": ..., "observation": {...}}``.

The templates are ours, in ``generators/emulator/`` (``string.Template`` files). A reply that holds
no such object is retried with a note saying what was wrong (``retry_messages``); the loop bounds the
retries and then records an empty observation, flagged on the step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from string import Template
from typing import Any

from prefkit.records import Message, Scenario, Step, Tool, Toolkit
from prefkit.render import strip_think
from prefkit.render.prompts import scenario_toolkits
from prefkit.resources import template_text

from .config import EmulatorMode

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "observation": {"type": "object"}},
    "required": ["summary", "observation"],
    "additionalProperties": False,
}
"""The answer's JSON Schema, passed as ``response_format`` to backends with structured output."""


def template(name: str) -> Template:
    """The template ``generators/emulator/<name>.txt`` (its final newline removed)."""
    return Template(template_text("generators", "emulator", f"{name}.txt"))


def _bullets(items: Sequence[str], empty: str = "- (none given)") -> str:
    return "\n".join(f"- {item}" for item in items) or empty


# Prompt --------------------------------------------------------------------------------------------


def describe_tool(tool: Tool) -> str:
    """The tool in full: arguments with types and whether optional, return values, exceptions."""
    return template("tool").substitute(
        name=tool.name,
        toolkit=tool.toolkit,
        summary=tool.summary.strip(),
        arguments=_bullets([f"{p.name} ({p.type}{'' if p.required else ', optional'}): {p.description}"
                            for p in tool.parameters], "- (none)"),
        returns=_bullets([f"{r.name} ({r.type}): {r.description}" for r in tool.returns], "- (nothing)"),
        exceptions=_bullets([f"{e.name}: {e.description}" for e in tool.exceptions], "- (none documented)"),
    )


def describe_toolkits(toolkits: Sequence[Toolkit]) -> str:
    """Every tool in one line, so the emulator keeps the tools' worlds consistent with each other."""
    lines = []
    for toolkit in toolkits:
        lines.append(f"{toolkit.name_for_human or toolkit.name_for_model}: {toolkit.description_for_model.strip()}")
        lines += [f"- {t.name}({', '.join(p.name for p in t.parameters)}): {t.summary.strip()}" for t in toolkit.tools]
    return "\n".join(lines)


def describe_history(steps: Sequence[Step]) -> str:
    if not steps:
        return "(none yet)"
    return "\n\n".join(f"{i + 1}. {s.tool}\nInput: {s.tool_input.strip()}\nObservation: {s.observation}"
                       for i, s in enumerate(steps))


def describe_risks(scenario: Scenario) -> str:
    return template("risks").substitute(
        task_information=_bullets(scenario.underspecified_task_information),
        safety_constraints=_bullets(scenario.underspecified_safety_constraints),
        risky_outcomes=_bullets(scenario.risky_outcomes),
        risky_actions=_bullets(scenario.risky_actions),
    )


def emulator_messages(scenario: Scenario, toolkits: Sequence[Toolkit], steps: Sequence[Step], tool: Tool,
                      tool_input: str, mode: EmulatorMode) -> tuple[Message, Message]:
    """The system and user messages asking the emulator for the result of one call."""
    system = template("system").substitute(mode_note=template("adversarial_note").template if mode == "adversarial" else "")
    user = template("user").substitute(
        toolkits=describe_toolkits(scenario_toolkits(scenario, toolkits)),
        instruction=scenario.instruction,
        risks=describe_risks(scenario) + "\n" if mode == "adversarial" else "",
        history=describe_history(steps),
        tool=describe_tool(tool),
        tool_input=tool_input.strip(),
    )
    return Message(role="system", content=system), Message(role="user", content=user)


def retry_messages(raw: str, reason: str) -> tuple[Message, Message]:
    """The unreadable answer and the request to answer again."""
    return Message(role="assistant", content=raw), Message(role="user", content=template("retry").substitute(reason=reason))


# Parsing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorAnswer:
    observation: str
    """The tool's result as JSON text (or the text itself when the emulator gave a string)."""
    summary: str


def parse_answer(text: str) -> EmulatorAnswer | str:
    """The first JSON object in ``text`` (think blocks removed) that has an ``observation`` key, or
    the reason there is none (a string)."""
    visible = strip_think(text)
    decoder = json.JSONDecoder()
    start = visible.find("{")
    found_object = False
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(visible, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            found_object = True
            if "observation" in value:
                return _answer(value)
        start = visible.find("{", start + 1)
    return "it has no JSON object with an \"observation\" key" if found_object else "it holds no JSON object"


def _answer(value: dict[str, Any]) -> EmulatorAnswer | str:
    observation = value["observation"]
    summary = value.get("summary")
    summary = summary if isinstance(summary, str) else ""
    if isinstance(observation, dict | list):
        return EmulatorAnswer(json.dumps(observation, ensure_ascii=False), summary)
    if isinstance(observation, str) and observation.strip():
        return EmulatorAnswer(observation, summary)
    return "its \"observation\" is not a JSON object"
