"""ToolEmu's scenario suite: ``all_cases.json`` (144 cases) and ``all_toolkits.json`` (38 toolkits).

The files are read through private models that mirror ToolEmu's keys exactly (``extra="forbid"``,
strict types), so a misspelt, missing or extra key fails with the file and the field path, and only
then become prefkit's records (``Scenario``, ``Toolkit``, ``Tool``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prefkit.errors import InputError
from prefkit.records import Scenario, Tool, ToolException, Toolkit, ToolParameter, ToolReturn
from prefkit.sources.reading import read_json, validate_as

SUITE = "toolemu"


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# all_cases.json -----------------------------------------------------------------------------------


class _Underspecifications(_FileModel):
    task_information: list[str] = Field(alias="Task Information")
    safety_constraints: list[str] = Field(alias="Safety & Security Constraints")


class _Case(_FileModel):
    name: str
    toolkits: list[str] = Field(alias="Toolkits")
    instruction: str = Field(alias="User Instruction")
    underspecifications: _Underspecifications = Field(alias="Underspecifications")
    expected_achievements: list[str] = Field(alias="Expected Achievements")
    risky_outcomes: list[str] = Field(alias="Potential Risky Outcomes")
    risky_actions: list[str] = Field(alias="Potential Risky Actions")


def load_cases(path: str | Path) -> list[Scenario]:
    """ToolEmu's cases as scenarios; ``Scenario.index`` is the list position (ToolEmu's ``case_idx``).

    Raises:
        InputError: the file is missing or not JSON, or a case has a missing, extra or mistyped key
            (the field names the case, e.g. ``cases[3].Toolkits``), or two cases share a name.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of cases, got a {type(data).__name__}", path=path)
    scenarios: list[Scenario] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data):
        case = validate_as(_Case, raw, path=path, where=f"cases[{index}]")
        if case.name in seen:
            raise InputError(f"case name {case.name!r} already used by case {seen[case.name]}", path=path,
                             field=f"cases[{index}].name")
        seen[case.name] = index
        scenarios.append(
            Scenario(
                id=case.name,
                suite=SUITE,
                index=index,
                instruction=case.instruction,
                toolkits=tuple(case.toolkits),
                underspecified_task_information=tuple(case.underspecifications.task_information),
                underspecified_safety_constraints=tuple(case.underspecifications.safety_constraints),
                expected_achievements=tuple(case.expected_achievements),
                risky_outcomes=tuple(case.risky_outcomes),
                risky_actions=tuple(case.risky_actions),
            )
        )
    return scenarios


# all_toolkits.json --------------------------------------------------------------------------------

_ParamType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]


class _Parameter(_FileModel):
    name: str
    type: _ParamType
    description: str
    required: bool = True  # two of ToolEmu's 726 parameters omit it; ToolEmu treats them as required


class _Return(_FileModel):
    name: str
    type: str
    description: str


class _Exception(_FileModel):
    name: str
    description: str


class _Tool(_FileModel):
    name: str
    summary: str
    parameters: list[_Parameter]
    returns: list[_Return]
    exceptions: list[_Exception] = []  # two tools have none


class _Toolkit(_FileModel):
    toolkit: str
    category: str | None = None  # only 15 of 38 toolkits have one
    name_for_model: str
    name_for_human: str
    description_for_model: str
    description_for_human: str
    tools: list[_Tool]


def load_toolkits(path: str | Path) -> list[Toolkit]:
    """ToolEmu's toolkits; each ``Tool.name`` is what the agent emits (``name_for_model`` + tool name,
    e.g. ``TodoistSearchTasks``) and ``Tool.toolkit`` is the toolkit's registry name.

    Raises:
        InputError: the file is missing or not JSON, a toolkit or tool has a missing, extra or
            mistyped key (the field names it, e.g. ``toolkits[2].tools[0].parameters[1].type``), or a
            toolkit or tool name is used twice.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of toolkits, got a {type(data).__name__}", path=path)
    toolkits: list[Toolkit] = []
    toolkit_names: set[str] = set()
    tool_names: set[str] = set()
    for index, raw in enumerate(data):
        spec = validate_as(_Toolkit, raw, path=path, where=f"toolkits[{index}]")
        if spec.toolkit in toolkit_names:
            raise InputError(f"toolkit {spec.toolkit!r} is defined twice", path=path, field=f"toolkits[{index}].toolkit")
        toolkit_names.add(spec.toolkit)
        tools = tuple(_tool(spec, t) for t in spec.tools)
        for t_index, tool in enumerate(tools):
            if tool.name in tool_names:
                raise InputError(f"tool name {tool.name!r} is used twice", path=path,
                                 field=f"toolkits[{index}].tools[{t_index}].name")
            tool_names.add(tool.name)
        toolkits.append(
            Toolkit(
                name=spec.toolkit,
                name_for_model=spec.name_for_model,
                name_for_human=spec.name_for_human,
                description_for_model=spec.description_for_model,
                description_for_human=spec.description_for_human,
                category=spec.category,
                tools=tools,
            )
        )
    return toolkits


def _tool(toolkit: _Toolkit, spec: _Tool) -> Tool:
    return Tool(
        name=toolkit.name_for_model + spec.name,
        toolkit=toolkit.toolkit,
        summary=spec.summary,
        parameters=tuple(
            ToolParameter(name=p.name, type=p.type, description=p.description, required=p.required)
            for p in spec.parameters
        ),
        returns=tuple(ToolReturn(name=r.name, type=r.type, description=r.description) for r in spec.returns),
        exceptions=tuple(ToolException(name=e.name, description=e.description) for e in spec.exceptions),
    )


# both together ------------------------------------------------------------------------------------


def check_scenario_toolkits(scenarios: Iterable[Scenario], toolkits: Iterable[Toolkit], *,
                            cases_path: str | Path) -> None:
    """Every toolkit a scenario names must exist.

    Raises:
        InputError: naming the cases file, the case (index and name) and the unknown toolkit.
    """
    known = {t.name for t in toolkits}
    for position, scenario in enumerate(scenarios):
        for t_index, name in enumerate(scenario.toolkits):
            if name not in known:
                raise InputError(
                    f"case {scenario.id} names toolkit {name!r}, which the toolkits file does not define",
                    path=cases_path,
                    field=f"cases[{position}].Toolkits[{t_index}]",
                )


def load_suite(cases_path: str | Path, toolkits_path: str | Path) -> tuple[list[Scenario], list[Toolkit]]:
    """Cases and toolkits, checked against each other (see ``check_scenario_toolkits``)."""
    scenarios = load_cases(cases_path)
    toolkits = load_toolkits(toolkits_path)
    check_scenario_toolkits(scenarios, toolkits, cases_path=cases_path)
    return scenarios, toolkits

