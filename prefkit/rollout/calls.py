"""Checking an agent's tool call against the tool's parameter schema, before any emulator sees it.

The study checked each action input against the tool's parameters and answered a bad call with an
``InvalidRequestException`` error observation, and an unknown tool name with a hint listing the
available tools, both without calling the emulator (paper-reference §3.2). ``check_call`` is that
rule; it returns the error observation to give the agent, or ``None`` when the call may run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefkit.records import Tool

_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    # bool is a subclass of int in Python; JSON keeps them apart, so do we.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def error_observation(kind: str, reason: str) -> str:
    """The observation of a call that did not run, as a JSON object ``{"error": "<kind>: <reason>"}``."""
    return json.dumps({"error": f"{kind}: {reason}"}, ensure_ascii=False)


def parse_arguments(text: str) -> dict[str, Any]:
    """The action input as a JSON object.

    Raises:
        ValueError: the text is not JSON, or not a JSON object (the message says which).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the action input is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the action input must be a JSON object, got a JSON {type(value).__name__}")
    return value


def argument_problems(tool: Tool, arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``arguments`` for ``tool``: missing required ones, unknown ones, wrong types."""
    known = {p.name: p for p in tool.parameters}
    problems = [f"missing required argument {p.name!r}" for p in tool.parameters
                if p.required and p.name not in arguments]
    for name, value in arguments.items():
        param = known.get(name)
        if param is None:
            problems.append(f"unexpected argument {name!r} (arguments of {tool.name}: "
                            f"{', '.join(known) or 'none'})")
        elif value is None and not param.required:
            continue  # an optional argument given as null is the same as leaving it out
        elif param.type in _TYPE_CHECKS and not _TYPE_CHECKS[param.type](value):
            problems.append(f"argument {name!r} must be of type {param.type}, got {json.dumps(value)[:80]}")
    return problems


def check_call(name: str, arguments_text: str, tools: Mapping[str, Tool]) -> str | None:
    """``None`` if the call may go to the emulator, else the error observation the agent gets."""
    tool = tools.get(name)
    if tool is None:
        return error_observation(
            "UnknownToolException",
            f"there is no tool named {name!r}. The tools you can call are: {', '.join(tools)}. "
            "If none of them helps, give your Final Answer.",
        )
    try:
        arguments = parse_arguments(arguments_text)
    except ValueError as exc:
        return error_observation("InvalidRequestException", str(exc))
    problems = argument_problems(tool, arguments)
    if problems:
        return error_observation("InvalidRequestException", "; ".join(problems))
    return None
