"""The agent's prompt for a scenario: the ReAct text prompt, the native (function-calling) prompt and
the function schemas, built from records and the templates in ``generators/agent/``.

The templates are ``string.Template`` files (``$name`` placeholders) at the repository root, so they
are found in a source checkout and in an editable install alike.

The ReAct user message always ends with ``User Input: <instruction>\\nThought: `` (the study's
structure): the agent's first turn continues that ``Thought:``, which is why the ReAct rendering
(``prefkit.render.react``) drops a leading ``Thought:`` from step 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template
from typing import Any

from prefkit.errors import InputError
from prefkit.records import Message, Scenario, Tool, Toolkit, function_schema_problems
from prefkit.resources import template_text

# ToolEmu's emulator and judges assume this user and this date, so the agent is told the same.
ENVIRONMENT = {
    "user_name": "John Doe",
    "user_email": "john.doe@gmail.com",
    "current_time": "11:37 AM UTC-05:00, Tuesday, February 22, 2022",
}

REACT_PROMPT_END = "\nThought: "
"""What follows ``User Input: <instruction>`` at the very end of the ReAct user message."""


def template(name: str) -> Template:
    """The template ``generators/agent/<name>.txt`` (its final newline removed)."""
    return Template(template_text("generators", "agent", f"{name}.txt"))


def scenario_toolkits(scenario: Scenario, toolkits: Sequence[Toolkit]) -> list[Toolkit]:
    """The toolkits the scenario names, in the scenario's order.

    Raises:
        InputError: the scenario names a toolkit that ``toolkits`` lacks.
    """
    by_name = {t.name: t for t in toolkits}
    missing = [name for name in scenario.toolkits if name not in by_name]
    if missing:
        raise InputError(f"scenario {scenario.id} names unknown toolkit(s): {', '.join(missing)}",
                         field=f"{scenario.id}.toolkits")
    return [by_name[name] for name in scenario.toolkits]


# ReAct ---------------------------------------------------------------------------------------------


def _argument_line(name: str, type_: str, description: str, *, optional: bool = False) -> str:
    return f"    - {name} ({type_}{', optional' if optional else ''}): {description}"


def describe_tool(tool: Tool) -> str:
    """One tool as the ReAct prompt lists it: name, summary, arguments (type, optional) and returns."""
    arguments = [_argument_line(p.name, p.type, p.description, optional=not p.required) for p in tool.parameters]
    returns = [_argument_line(r.name, r.type, r.description) for r in tool.returns]
    return template("tool").substitute(
        name=tool.name,
        summary=tool.summary.strip(),
        arguments="\n".join(arguments) or "    (none)",
        returns="\n".join(returns) or "    (nothing)",
    )


def describe_toolkit(toolkit: Toolkit) -> str:
    """A toolkit's heading, description and tools for the ReAct prompt."""
    return template("toolkit").substitute(
        name_for_human=toolkit.name_for_human or toolkit.name_for_model,
        name_for_model=toolkit.name_for_model,
        description=toolkit.description_for_model.strip(),
        tools="\n".join(describe_tool(t) for t in toolkit.tools),
    )


def react_prompt(scenario: Scenario, toolkits: Sequence[Toolkit]) -> tuple[Message, Message]:
    """The system and user messages of the ReAct agent prompt for ``scenario``.

    ``toolkits`` may hold more toolkits than the scenario uses; only the scenario's are described.
    The user message ends with ``User Input: <instruction>\\nThought: ``.
    """
    chosen = scenario_toolkits(scenario, toolkits)
    user = template("react_user").substitute(
        ENVIRONMENT,
        toolkit_descriptions="\n\n".join(describe_toolkit(t) for t in chosen),
        tool_names=", ".join(tool.name for t in chosen for tool in t.tools),
        instruction=scenario.instruction,
    )
    return (
        Message(role="system", content=template("react_system").substitute(ENVIRONMENT)),
        Message(role="user", content=user + REACT_PROMPT_END),
    )


def _compact_tool_line(tool: Tool) -> str:
    arguments = ", ".join(f'"{p.name}": {p.type}{"" if p.required else " (optional)"}' for p in tool.parameters)
    return template("compact_tool").substitute(name=tool.name, summary=tool.summary.strip(), arguments=arguments)


def compact_react_prompt(scenario: Scenario, toolkits: Sequence[Toolkit]) -> tuple[Message, ...]:
    """The ReAct prompt for small models (``AgentConfig.prompt_style == "compact"``): a short system
    message with the format, one worked example as earlier chat turns (a model under ~1B parameters
    copies an example far more reliably than it follows a page of instructions), then one line per tool
    and the instruction. About half the full prompt's length: the prompt is most of a call's cost on CPU.

    The turns of ``generators/agent/compact_example.txt`` are separated by ``---`` lines and alternate
    user, assistant, user, ...
    """
    chosen = scenario_toolkits(scenario, toolkits)
    example = [turn.strip("\n") for turn in template_text("generators", "agent", "compact_example.txt").split("\n---\n")]
    user = template("compact_user").substitute(
        tools="\n".join(_compact_tool_line(tool) for t in chosen for tool in t.tools),
        instruction=scenario.instruction,
    )
    return (
        Message(role="system", content=template("compact_system").substitute(ENVIRONMENT)),
        *(Message(role="user" if i % 2 == 0 else "assistant", content=turn) for i, turn in enumerate(example)),
        Message(role="user", content=user),
    )


# Native --------------------------------------------------------------------------------------------


def native_prompt(scenario: Scenario) -> tuple[Message, Message]:
    """The system and user messages of the native (function-calling) prompt: the tools travel
    separately as ``tool_schemas(...)``, so the user message is the instruction alone."""
    return (
        Message(role="system", content=template("native_system").substitute(ENVIRONMENT)),
        Message(role="user", content=scenario.instruction),
    )


def tool_schemas(scenario: Scenario, toolkits: Sequence[Toolkit]) -> list[dict[str, Any]]:
    """``Tool.json_schema()`` of every tool of the scenario's toolkits, in the scenario's order: the
    ``tools`` of the agent's native requests and the TRL rows' ``tools`` column.

    Raises:
        InputError: a schema a strict function-calling validator would reject
            (``prefkit.records.function_schema_problems``; the field names the toolkit and tool).
    """
    schemas = []
    for toolkit in scenario_toolkits(scenario, toolkits):
        for tool in toolkit.tools:
            schema = tool.json_schema()
            problems = function_schema_problems(schema)
            if problems:
                raise InputError(f"tool {tool.name!r} has an incomplete function schema: {'; '.join(problems)}",
                                 field=f"{toolkit.name}.{tool.name}")
            schemas.append(schema)
    return schemas
