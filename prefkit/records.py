"""Typed records shared by every prefkit stage.

Every record is a frozen pydantic model that forbids unknown keys and round-trips losslessly through
JSON (``model_dump_json`` / ``model_validate_json``) and through the run store's Parquet tables.
Sequences are tuples so that records are hashable values; optional fields default to ``None``.

This module imports nothing from prefkit: it is the vocabulary every other module speaks.

WARNING: the fields below are an on-disk format. Changing a field (name, type or order) means bumping
``SCHEMA_VERSION``, re-exporting ``schemas/`` (``prefkit schemas export``) and updating the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 2
"""Version of the on-disk record format (Parquet tables and JSON Schemas). 2: stored native messages carry
9-alphanumeric call ids and render non-object action inputs as ReAct text (runs of version 1 are re-imported)."""

Role = Literal["system", "user", "assistant", "tool"]
Metric = Literal["safety", "helpfulness", "helpfulness_safe"]
FinishReason = Literal["final_answer", "max_steps", "token_budget", "error"]
ParseStatus = Literal["ok", "repaired", "failed"]
PromptFormat = Literal["react", "native"]
PairStrategy = Literal["safety", "helpfulness", "both", "average"]
Split = Literal["train", "test"]

METRICS: tuple[Metric, ...] = ("safety", "helpfulness", "helpfulness_safe")


class Record(BaseModel):
    """Base class: frozen, no unknown keys, strict about what it stores."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def content_hash(payload: Any, *, length: int = 16) -> str:
    """Hex SHA-256 of the canonical JSON of ``payload`` (sorted keys, no whitespace), truncated.

    The one hash every id and cache key in prefkit is made with.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# --------------------------------------------------------------------------------------------------
# Scenarios and tools
# --------------------------------------------------------------------------------------------------


class Scenario(Record):
    """One task given to an agent, with what makes it risky.

    Example: ToolEmu case 0, ``Scenario(id="official_0", index=0, suite="toolemu", ...)``.
    """

    id: str
    """Stable identifier within its suite, e.g. ``official_0``."""
    suite: str
    """Name of the scenario suite, e.g. ``toolemu``."""
    index: int | None = None
    """Position in the suite (ToolEmu's ``case_idx``); the study's split rule shuffles these."""
    instruction: str
    """The user's instruction shown to the agent."""
    toolkits: tuple[str, ...]
    """Names of the toolkits the agent may use (``Toolkit.name``)."""
    underspecified_task_information: tuple[str, ...] = ()
    """What the instruction leaves unsaid about the task itself."""
    underspecified_safety_constraints: tuple[str, ...] = ()
    """Safety and security constraints the user did not state."""
    expected_achievements: tuple[str, ...] = ()
    """What a good agent should achieve (never shown to the agent)."""
    risky_outcomes: tuple[str, ...] = ()
    """Potential harmful outcomes (shown to the adversarial emulator and the safety judge)."""
    risky_actions: tuple[str, ...] = ()
    """Potential risky actions (shown to the adversarial emulator and the safety judge)."""


class ToolParameter(Record):
    name: str
    type: str
    """JSON type name: string, integer, number, boolean, array or object."""
    description: str = ""
    required: bool = True


class ToolReturn(Record):
    name: str
    type: str
    description: str = ""


class ToolException(Record):
    name: str
    description: str = ""


_JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object", "null"}

# An array's item type, where the tool's spec states one: ToolEmu gives every array parameter the bare type
# "array" and says what it holds in words ("An array of strings, each string is a domain", "A list of objects,
# each includes ...", "The list of CSS selectors to match, each is a string"); other specs write it in the type
# ("array of strings", "array[string]", "array<string>"). Only these explicit statements count: "a list of
# keywords" names no JSON type, so its items stay unconstrained ({}).
_ITEM_TYPE = re.compile(
    r"\b(?:array|list)\s*(?:of\s+|\[\s*|<\s*)(string|object|integer|number|boolean)s?\b"
    r"|\beach(?:\s+(?:one|item|value|element))?\s+is\s+an?\s+(string|object|integer|number|boolean)\b",
    re.IGNORECASE,
)


def _value_schema(type_name: str) -> dict[str, Any]:
    """``{"type": ...}`` for a JSON type, complete for strict validators (an object gets ``properties``)."""
    return {"type": "object", "properties": {}} if type_name == "object" else {"type": type_name}


def parameter_schema(type_text: str, description: str) -> dict[str, Any]:
    """The JSON Schema of one tool parameter from its spec's type and description.

    A JSON type name gives ``{"type": ...}``; ``array`` (also written ``array of strings``/``array[string]``)
    gets ``items``: the item type stated in the type or the description (see ``_ITEM_TYPE``), else ``{}``;
    ``object`` gets ``properties: {}`` (ToolEmu describes an object's fields in words only). Any other type
    text gives no ``type`` (any value). The result always passes ``function_schema_problems``.
    """
    base = type_text.strip().lower()
    is_array = re.match(r"(?:array|list)\b", base) is not None
    schema: dict[str, Any] = {"description": description}
    if is_array:
        stated = _ITEM_TYPE.search(type_text) or _ITEM_TYPE.search(description)
        item = next((g.lower() for g in stated.groups() if g), None) if stated else None
        schema.update(type="array", items=_value_schema(item) if item else {})
    elif base in _JSON_TYPES:
        schema.update(_value_schema(base))
    return schema


# OpenAI's rule for function names (its API answers HTTP 400 otherwise); TRL and chat templates accept these.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def function_schema_problems(schema: Any) -> list[str]:
    """What a strict function-calling validator would reject in one function schema
    (``{"type": "function", "function": {"name", "description", "parameters"}}``), as
    ``"<JSON pointer>: <problem>"`` strings; empty when the schema is complete.

    Rules (OpenAI's function-calling validator, which answers HTTP 400 "array schema missing items", and
    fine-tuning APIs that check the ``tools`` of a dataset): the name matches ``^[A-Za-z0-9_-]{1,64}$``;
    ``parameters`` is an object schema; in every (sub)schema ``type`` is a JSON type name (or a list of
    them), an ``array`` has an ``items`` schema, an ``object`` has a ``properties`` object, and
    ``required`` lists only names among the properties. Checked recursively through ``properties``,
    ``items``, ``additionalProperties``, ``anyOf``/``oneOf``/``allOf`` and ``$defs``. That the schema
    is valid JSON Schema at all is the JSON Schema meta-schema's business (``jsonschema``'s
    ``check_schema``); this is the stricter part on top.
    """
    if not isinstance(schema, dict) or schema.get("type") != "function" or not isinstance(schema.get("function"), dict):
        return [': must be {"type": "function", "function": {...}}']
    function = schema["function"]
    problems: list[str] = []
    name = function.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        problems.append(f"/function/name: {name!r} must match {_FUNCTION_NAME.pattern}")
    if not isinstance(function.get("description", ""), str):
        problems.append("/function/description: must be a string")
    if "parameters" in function:
        parameters = function["parameters"]
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            problems.append('/function/parameters: must be an object schema ({"type": "object", ...})')
        else:
            problems.extend(_subschema_problems(parameters, "/function/parameters"))
    return problems


def _subschema_problems(node: Any, path: str) -> list[str]:
    if not isinstance(node, dict):
        return [f"{path}: a schema must be a JSON object, got {type(node).__name__}"]
    problems: list[str] = []
    declared = node.get("type")
    types = declared if isinstance(declared, list) else [] if declared is None else [declared]
    unknown = [t for t in types if t not in _JSON_TYPES]
    if unknown:
        problems.append(f"{path}/type: {unknown[0]!r} is not a JSON type name")
    if "array" in types and "items" not in node:
        problems.append(f"{path}: array schema missing items")
    properties = node.get("properties")
    if "object" in types and not isinstance(properties, dict):
        problems.append(f"{path}: object schema missing properties")
    required = node.get("required")
    if required is not None:
        known = properties if isinstance(properties, dict) else {}
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            problems.append(f"{path}/required: must be a list of property names")
        else:
            problems.extend(f"{path}/required: {r!r} is not a property" for r in required if r not in known)
    children: list[tuple[str, Any]] = []
    if isinstance(properties, dict):
        children += [(f"{path}/properties/{_pointer(k)}", v) for k, v in properties.items()]
    if "items" in node:
        children.append((f"{path}/items", node["items"]))
    if isinstance(node.get("additionalProperties"), dict):
        children.append((f"{path}/additionalProperties", node["additionalProperties"]))
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(key), list):
            children += [(f"{path}/{key}/{i}", v) for i, v in enumerate(node[key])]
    if isinstance(node.get("$defs"), dict):
        children += [(f"{path}/$defs/{_pointer(k)}", v) for k, v in node["$defs"].items()]
    for child_path, child in children:
        problems.extend(_subschema_problems(child, child_path))
    return problems


def _pointer(key: str) -> str:
    """A key escaped as a JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


class Tool(Record):
    """One callable tool of a toolkit; ``name`` is what the agent emits (``TodoistSearchTasks``)."""

    name: str
    toolkit: str
    summary: str = ""
    parameters: tuple[ToolParameter, ...] = ()
    returns: tuple[ToolReturn, ...] = ()
    exceptions: tuple[ToolException, ...] = ()

    def json_schema(self) -> dict[str, Any]:
        """The function schema OpenAI-style ``tools`` and TRL's ``tools`` column take, complete for strict
        validators (every array has ``items``, every object ``properties``: see ``parameter_schema`` and
        ``function_schema_problems``)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.summary,
                "parameters": {
                    "type": "object",
                    "properties": {p.name: parameter_schema(p.type, p.description) for p in self.parameters},
                    "required": [p.name for p in self.parameters if p.required],
                },
            },
        }


class Toolkit(Record):
    """A named group of tools, as in ToolEmu's ``all_toolkits.json``."""

    name: str
    """Registry name used by scenarios (ToolEmu's ``toolkit``)."""
    name_for_model: str
    name_for_human: str = ""
    description_for_model: str = ""
    description_for_human: str = ""
    category: str | None = None
    tools: tuple[Tool, ...] = ()


# --------------------------------------------------------------------------------------------------
# Messages and trajectories
# --------------------------------------------------------------------------------------------------


class ToolCall(Record):
    """A function call made by the assistant; ``arguments`` is the JSON text the agent wrote (see
    ``arguments_object``). prefkit's renderings give ``id`` 9 alphanumerics (``call00000``), the form
    every common chat template accepts (Mistral's require exactly that)."""

    id: str
    name: str
    arguments: str


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def arguments_object(text: str) -> dict[str, Any] | None:
    """The tool-call arguments (an action input) as a JSON object, or ``None`` when the text is not one:
    cut off, plain text, another JSON value (array, string, number) or ``NaN``/``Infinity``.

    THE rule for "the agent wrote a JSON object": the native rendering turns only such inputs into tool
    calls, and the ``non_object_arguments`` flag marks trajectories with any other input. Surrounding
    whitespace is allowed (as ``json.loads`` allows it). On the study's raw_q32, 8 of 1,272 inputs are not one.
    """
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError:  # JSONDecodeError, and the NaN/Infinity refusal above
        return None
    return value if isinstance(value, dict) else None


class Message(Record):
    """One chat message. ``tool_calls`` only on assistant messages, ``tool_call_id`` only on tool ones."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError(f"tool_calls are only allowed on assistant messages, not on role {self.role!r}")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError(f"tool_call_id is only allowed on tool messages, not on role {self.role!r}")
        return self


class SamplingParams(Record):
    """Sampling settings of a model call; ``None`` means "not recorded / backend default"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


class AgentIdentity(Record):
    """Who produced a trajectory. ``name`` is the agent configuration's display name (for imported
    ToolEmu data, the folder name); two configurations with the same model but different
    quantization are different agents."""

    name: str
    model: str
    backend: str = "unknown"
    quantization: str | None = None
    sampling: SamplingParams = SamplingParams()
    prompt_format: PromptFormat = "react"


class SourceRef(Record):
    """Where an imported record came from: file path (relative to the import root) and 0-based line."""

    file: str
    line: int


class Step(Record):
    """One agent step: a tool call and what the emulator returned for it.

    The raw texts are kept so that every rendering (ReAct text, native tool calls, the judge's view)
    can be rebuilt without loss.
    """

    tool: str
    """The tool name the agent emitted."""
    tool_input: str
    """The action input exactly as the agent wrote it (normally a JSON object)."""
    agent_log: str = ""
    """The agent's raw text for this step: reasoning plus the action."""
    observation: str = ""
    """The tool's (emulator's) answer; may be empty when the emulator's output did not parse."""
    emulator_summary: str = ""
    emulator_log: str = ""
    flags: tuple[str, ...] = ()
    """E.g. ``empty_observation``, ``invalid_call``."""


TRAJECTORY_FLAGS = (
    "empty_observation",  # a step whose observation is empty
    "hallucinated_actions",  # the final text contains made-up Action:/Observation: lines
    "token_limit",  # the agent hit its token budget
    "think_block",  # a <think> block appears in the agent's or emulator's text
    "no_final_answer",  # the run ended without a final answer
    "non_object_arguments",  # an action input that is not a JSON object (cut off, plain text)
    "unencodable_text",  # text that could not be encoded (lone surrogates) was replaced by U+FFFD
    "unparsed_tool_call",  # the agent wrote tool-call markup that could not be parsed (re-prompted)
)


class Trajectory(Record):
    """One agent rollout on one scenario.

    ``id`` is a content hash (see ``Trajectory.compute_id``): the same scenario, agent, emulator and
    content give the same id wherever and whenever they are imported or generated.
    """

    id: str
    scenario_id: str
    agent: AgentIdentity
    emulator: str | None = None
    """Model that played the tools."""
    sample_index: int = 0
    steps: tuple[Step, ...] = ()
    final_log: str = ""
    """The agent's raw text of its last turn (reasoning plus final answer)."""
    final_answer: str | None = None
    """The answer given to the user; ``None`` when the run stopped without one."""
    finish_reason: FinishReason
    messages: tuple[Message, ...] = ()
    """The agent's side of the conversation with native tool calls (assistant ``tool_calls`` and
    ``tool`` messages), without the prompt."""
    react_messages: tuple[Message, ...] = ()
    """The same in the study's ReAct rendering: assistant text turns and user ``Observation:`` turns."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    flags: tuple[str, ...] = ()
    source: SourceRef | None = None

    @staticmethod
    def compute_id(
        *,
        scenario_id: str,
        agent: AgentIdentity,
        emulator: str | None,
        sample_index: int,
        steps: tuple[Step, ...],
        final_log: str,
        final_answer: str | None,
    ) -> str:
        """The content hash that identifies a trajectory (its source file is deliberately left out,
        so the same rollout judged by two judges in two files is one trajectory)."""
        return content_hash(
            {
                "scenario_id": scenario_id,
                "agent": agent.model_dump(mode="json"),
                "emulator": emulator,
                "sample_index": sample_index,
                "steps": [s.model_dump(mode="json") for s in steps],
                "final_log": final_log,
                "final_answer": final_answer,
            }
        )

    @property
    def n_tool_calls(self) -> int:
        return len(self.steps)


# --------------------------------------------------------------------------------------------------
# Judgments
# --------------------------------------------------------------------------------------------------


class JudgeIdentity(Record):
    """Who judged: the model, its backend and the rubric version it was given."""

    model: str
    backend: str = "unknown"
    rubric_version: str = "unknown"


class Judgment(Record):
    """One judge's answer about one trajectory on one metric (one replicate)."""

    id: str
    trajectory_id: str
    metric: Metric
    score: int | None = Field(default=None, ge=0, le=3)
    """0-3; ``None`` when the answer could not be parsed (``parse_status == "failed"``)."""
    label: str | None = None
    """The qualitative label as the judge wrote it, e.g. ``Possible Mild Risk (2)``."""
    rationale: str | None = None
    raw_output: str = ""
    """The judge's answer exactly as received (for imports: the eval record's JSON line)."""
    judge: JudgeIdentity
    replicate: int = 0
    parse_status: ParseStatus = "ok"
    attempts: int = 1
    distribution: tuple[float, ...] | None = None
    """Probabilities of scores 0..3 for logprob judging."""
    judge_tokens: int | None = None
    source: SourceRef | None = None

    @model_validator(mode="after")
    def _check_score_status(self) -> Judgment:
        if self.parse_status == "failed" and self.score is not None:
            raise ValueError("a judgment with parse_status 'failed' must not carry a score")
        if self.parse_status != "failed" and self.score is None:
            raise ValueError(f"a judgment with parse_status {self.parse_status!r} needs a score")
        return self

    @staticmethod
    def compute_id(*, trajectory_id: str, metric: str, judge: JudgeIdentity, replicate: int) -> str:
        """Cache key of a judgment: (trajectory, metric, judge, rubric version, replicate)."""
        return content_hash(
            {"trajectory_id": trajectory_id, "metric": metric, "judge": judge.model_dump(mode="json"), "replicate": replicate}
        )


# --------------------------------------------------------------------------------------------------
# Pairs (the build recipe lives in prefkit/recipe.py)
# --------------------------------------------------------------------------------------------------


class PreferencePair(Record):
    """A chosen/rejected pair of trajectories of one scenario, with the scores that made it."""

    id: str
    strategy: PairStrategy
    scenario_id: str
    scenario_index: int | None = None
    split: Split | None = None
    chosen_id: str
    rejected_id: str
    chosen_agent: str
    rejected_agent: str
    chosen_safety: float | None = None
    rejected_safety: float | None = None
    chosen_helpfulness: float | None = None
    rejected_helpfulness: float | None = None
    chosen_score: float
    """Score of the chosen side on the strategy's first metric."""
    rejected_score: float
    margin: float
    """``chosen_score - rejected_score``."""
    chosen_source: SourceRef | None = None
    rejected_source: SourceRef | None = None


RECORD_TYPES: dict[str, type[Record]] = {
    "Scenario": Scenario,
    "Toolkit": Toolkit,
    "Tool": Tool,
    "Message": Message,
    "Trajectory": Trajectory,
    "Judgment": Judgment,
    "PreferencePair": PreferencePair,
}
"""The record types whose JSON Schemas ``prefkit schemas export`` writes to ``schemas/``."""
