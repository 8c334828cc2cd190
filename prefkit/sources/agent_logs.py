"""Trajectories from the logs of agents run elsewhere: what ``prefkit import inspect`` (Inspect eval logs,
``prefkit.sources.inspect_logs``) and ``prefkit import chat`` (OpenAI-format chat JSONL,
``prefkit.sources.chat_jsonl``) share. Each reader turns its format into ``LogMessage``s; from there the
rules are the same.

A conversation becomes a ``Trajectory`` whose ``steps`` are stored exactly as a prefkit rollout stores them,
so both renderings (``prefkit.render``), the judge's view, pairing and validation treat it like a rollout:

- **Prompt.** The leading system/user messages, up to the agent's first turn. They are not stored: rows get
  prefkit's prompt for the scenario, whose instruction the reader takes from the log (Inspect: the sample's
  input; chat: the prompt's user text).
- **Native** (the usual case: assistant ``tool_calls`` and ``tool`` results). Each call is one ``Step``; its
  ``agent_log`` is written by the native agent parser's rule (``prefkit.render.turns.parse_native``:
  ``<reasoning>\\nAction: <name>\\nAction Input: <arguments>``), the message's text going with its first call.
  A tool result is matched to its call by ``tool_call_id`` (by order when it has none); its text is the
  step's ``observation``. An assistant text answered by a user ``Observation:`` turn is a step in ReAct text
  (how prefkit's native rendering shows a step whose input is not a JSON object). The last assistant message
  without a call is the final answer (``Final Answer: <text>`` as ``final_log``).
- **ReAct** (no ``tool_calls`` and no ``tool`` messages, and an assistant text that the ReAct agent parser,
  ``prefkit.render.turns.parse_react``, reads as an action or a final answer): each assistant text answered
  by a user ``Observation:`` turn is one step, the text kept whole as ``agent_log``; the last assistant text
  is the final turn. Such trajectories get ``prompt_format: react``.
- **Turns a trajectory cannot hold** (a user or system message after the prompt, e.g. an agent framework's
  "please continue"; an assistant text without a call before the final turn) are left out, and the
  trajectory is flagged ``dropped_turns``. A call never answered gets an empty observation
  (``empty_observation``), as a rollout whose emulator failed.

Bad input is one ``InputError`` naming the file, the sample (or line) and the field: a message of an unknown
role, a tool result without its call (or a second one for the same call), no user message before the agent's
first turn, a malformed tool schema or score.

Scores are imported as judgments only through explicit mappings (``ScoreMapping``; nothing is guessed).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prefkit.errors import InputError
from prefkit.records import (
    METRICS,
    AgentIdentity,
    FinishReason,
    JudgeIdentity,
    Judgment,
    Metric,
    PromptFormat,
    Scenario,
    SourceRef,
    Step,
    Tool,
    ToolCall,
    Toolkit,
    ToolParameter,
    Trajectory,
    content_hash,
)
from prefkit.render.native import native_messages
from prefkit.render.react import OBSERVATION_PREFIX, has_think, react_messages
from prefkit.render.turns import FinalAnswer, ToolAction, Unparseable, parse_native, parse_react
from prefkit.sources.toolemu_records import trajectory_flags
from prefkit.store import RunStore, file_sha256, new_run
from prefkit.text import clean_text

ROLES = ("system", "user", "assistant", "tool")
"""The roles a conversation may hold (OpenAI's ``developer`` is read as ``system``)."""

IMPORT_FLAGS = ("dropped_turns", "unparsed_tool_call")
"""Trajectory flags an import may add to ``prefkit.sources.toolemu_records.trajectory_flags``'s."""


class Where:
    """Where a conversation came from, to make errors that name the file, the line or sample, and the field."""

    def __init__(self, file: str, *, line: int | None = None, prefix: str = "") -> None:
        self.file = file
        self.line = line
        """1-based line (chat JSONL), ``None`` for Inspect logs (the sample is in ``prefix``)."""
        self.prefix = prefix
        """Field prefix naming the sample, e.g. ``samples[id=3, epoch=1].``."""

    def error(self, message: str, field: str | None = None) -> InputError:
        name = f"{self.prefix}{field or ''}".rstrip(".") or None
        return InputError(message, path=self.file, line=self.line, field=name)


# --------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogCall:
    """One tool call as a log holds it; ``arguments`` is the JSON text (normally an object)."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class LogMessage:
    """One message as a reader found it. ``text`` is what the model saw (for a tool result that failed, the
    reader's rendering of the error); ``field`` names it in the log (``messages[3]``)."""

    role: str
    text: str = ""
    tool_calls: tuple[LogCall, ...] = ()
    tool_call_id: str | None = None
    field: str = ""


@dataclass(frozen=True)
class Conversation:
    """What a conversation becomes: the fields of a ``Trajectory`` and its prompt."""

    prompt: tuple[LogMessage, ...]
    steps: tuple[Step, ...]
    final_log: str
    final_answer: str | None
    finish_reason: FinishReason
    prompt_format: PromptFormat
    flags: tuple[str, ...]
    """Import flags (``IMPORT_FLAGS``) that apply."""


def read_conversation(messages: Sequence[LogMessage], where: Where, *, limit: FinishReason | None = None,
                      fallback_answer: str | None = None) -> Conversation:
    """Steps, final turn and format of one logged conversation (see the module rules).

    Args:
        messages: the whole conversation, prompt included.
        where: for errors.
        limit: how the run ended when the log says it hit a limit (``token_budget``, ``max_steps``,
            ``error``); otherwise it ended with a final answer or, failing one, ``error``.
        fallback_answer: the answer the log recorded apart from the messages (Inspect's
            ``output.completion``), used when the conversation ends without a final assistant text.

    Raises:
        InputError: an unknown role, no user message before the agent's first turn, a tool result without
            its call or a second result for one call.
    """
    for m in messages:
        if m.role not in ROLES:
            raise where.error(f"unknown role {m.role!r} (expected one of {', '.join(ROLES)})", f"{m.field}.role")
    start = next((i for i, m in enumerate(messages) if m.role not in ("system", "user")), len(messages))
    prompt, rest = tuple(messages[:start]), list(messages[start:])
    if rest and rest[0].role == "tool":
        raise where.error("tool result without its call: no assistant message before it", f"{rest[0].field}.tool_call_id")
    if not any(m.role == "user" for m in prompt):
        first = rest[0].field if rest else "messages"
        raise where.error("no user message before the agent's first turn (the prompt needs the task)", first)
    react = _is_react(rest)
    walk = _walk_react(rest) if react else _walk_native(rest, where)
    final_log, final_answer = walk.final_log, walk.final_answer
    if final_answer is None and not final_log and fallback_answer and fallback_answer.strip() and limit is None:
        final_log, final_answer = _final_turn(fallback_answer, react=False)
    if limit is not None:
        finish: FinishReason = limit
    elif final_answer is not None:
        finish = "final_answer"
    else:
        finish = "error"
    return Conversation(prompt=prompt, steps=tuple(walk.steps), final_log=final_log, final_answer=final_answer,
                        finish_reason=finish, prompt_format="react" if react else "native",
                        flags=tuple(f for f in IMPORT_FLAGS if f in walk.flags))


@dataclass
class _Walk:
    steps: list[Step] = field(default_factory=list)
    final_log: str = ""
    final_answer: str | None = None
    flags: set[str] = field(default_factory=set)


def _is_react(rest: Sequence[LogMessage]) -> bool:
    """ReAct text: no tool calls and no tool results, and an assistant text that the ReAct parser reads as
    an action or a final answer."""

    if any(m.role == "tool" or m.tool_calls for m in rest):
        return False
    return any(m.role == "assistant" and not isinstance(parse_react(m.text), Unparseable) for m in rest)


def _is_observation(text: str) -> bool:
    return text.lstrip().startswith(OBSERVATION_PREFIX.strip())


def _observation_text(text: str) -> str:
    """A user ``Observation:`` turn's observation (``prefkit.render.react.observation_turn`` reversed)."""
    body = text.lstrip()
    return body[len(OBSERVATION_PREFIX):] if body.startswith(OBSERVATION_PREFIX) else body[len(OBSERVATION_PREFIX.strip()):]


def _final_index(rest: Sequence[LogMessage]) -> int | None:
    """The final assistant turn: the last message that is not a user/system one, when it is an assistant
    text without calls."""
    for i in range(len(rest) - 1, -1, -1):
        if rest[i].role in ("user", "system"):
            continue
        return i if rest[i].role == "assistant" and not rest[i].tool_calls else None
    return None


def _step(tool: str, tool_input: str, agent_log: str, observation: str = "", flags: Iterable[str] = ()) -> Step:
    step_flags = list(flags)
    if not observation.strip():
        step_flags.append("empty_observation")
    if has_think(agent_log) or has_think(observation):
        step_flags.append("think_block")
    return Step(tool=tool, tool_input=tool_input, agent_log=agent_log, observation=observation, flags=tuple(step_flags))


def _final_turn(text: str, *, react: bool) -> tuple[str, str | None]:
    """``(final_log, final_answer)`` of a final assistant text, by the agent parser of its format."""

    turn = parse_react(text) if react else parse_native(text, None)
    if isinstance(turn, FinalAnswer):
        return turn.log, turn.answer
    return text, None  # ReAct text without a Final Answer, or nothing but whitespace


def _walk_native(rest: Sequence[LogMessage], where: Where) -> _Walk:

    walk = _Walk()
    final = _final_index(rest)
    observed: set[int] = set()  # user messages read as a ReAct step's observation
    calls_made: list[tuple[str, str, str]] = []  # (tool, arguments, agent_log) per call, in order
    observations: dict[int, str] = {}
    pending: dict[str, int] = {}  # call id -> its index in calls_made, for calls not answered yet
    answered: set[str] = set()
    for i, m in enumerate(rest):
        if m.role == "assistant":
            if i == final:
                walk.final_log, walk.final_answer = _final_turn(m.text, react=False)
                continue
            calls = [ToolCall(id=c.id or f"#{len(calls_made) + k}", name=c.name, arguments=c.arguments)
                     for k, c in enumerate(m.tool_calls)]
            answer = rest[i + 1] if i + 1 < len(rest) else None
            if not calls and answer is not None and answer.role == "user" and _is_observation(answer.text):
                # A step in ReAct text among native calls: how prefkit's native rendering shows a step whose
                # input is not a JSON object (prefkit.render.native).
                react_turn = parse_react(m.text)
                if isinstance(react_turn, ToolAction):
                    observed.add(i + 1)
                    observations[len(calls_made)] = _observation_text(answer.text)
                    calls_made.append((react_turn.name, react_turn.arguments, m.text))
                    continue
            turn = parse_native(m.text, calls[:1] or None)
            if not isinstance(turn, ToolAction) and calls:  # markup in the text that does not parse
                walk.flags.add("unparsed_tool_call")
                turn = parse_native("", calls[:1])
            if not isinstance(turn, ToolAction):  # a text before the final turn: nothing to hold it
                walk.flags.add("dropped_turns")
                continue
            if not calls:  # a call written as text (<tool_call> markup) that the log did not parse
                calls = [ToolCall(id=f"#{len(calls_made)}", name=turn.name, arguments=turn.arguments)]
            for k, call in enumerate(calls):
                if call.id in pending or call.id in answered:
                    raise where.error(f"tool call id {call.id!r} is used twice", f"{m.field}.tool_calls[{k}].id")
                # The message's text goes with its first call; each further call is a step of its own.
                log = turn.log if k == 0 else parse_native("", [call]).log  # type: ignore[union-attr]
                pending[call.id] = len(calls_made)
                calls_made.append((call.name, call.arguments, log))
        elif m.role == "tool":
            call_id = m.tool_call_id
            if call_id is None and pending:
                call_id = next(iter(pending))  # no id: it answers the oldest open call
            if call_id in answered:
                raise where.error(f"a second tool result for call {call_id!r}", f"{m.field}.tool_call_id")
            if call_id not in pending:
                shown = "it names no call and every call is answered" if m.tool_call_id is None else \
                    f"no assistant message before it made call {call_id!r}"
                raise where.error(f"tool result without its call: {shown}", f"{m.field}.tool_call_id")
            observations[pending.pop(call_id)] = m.text
            answered.add(call_id)
        elif i not in observed:  # a user or system message after the prompt
            walk.flags.add("dropped_turns")
    walk.steps = [_step(tool, arguments, log, observations.get(i, ""))
                  for i, (tool, arguments, log) in enumerate(calls_made)]
    return walk


def _walk_react(rest: Sequence[LogMessage]) -> _Walk:

    walk = _Walk()
    final = _final_index(rest)
    consumed: set[int] = set()
    for i, m in enumerate(rest):
        if i in consumed:
            continue
        if m.role != "assistant":
            walk.flags.add("dropped_turns")
            continue
        answer = rest[i + 1] if i + 1 < len(rest) else None
        if answer is not None and answer.role == "user" and _is_observation(answer.text):
            consumed.add(i + 1)
            observation = _observation_text(answer.text)
            turn = parse_react(m.text)
            if isinstance(turn, ToolAction):
                walk.steps.append(_step(turn.name, turn.arguments, m.text, observation))
            else:  # answered as a tool call, but no Action the parser can read: kept, with no tool
                walk.steps.append(_step("", "", m.text, observation, ["unparsed_action"]))
        elif i == final:
            walk.final_log, walk.final_answer = _final_turn(m.text, react=True)
        else:
            turn = parse_react(m.text)
            if isinstance(turn, ToolAction) and i == len(rest) - 1:  # an action the log never answered
                walk.steps.append(_step(turn.name, turn.arguments, m.text))
            else:
                walk.flags.add("dropped_turns")
    return walk


# --------------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------------

_ITEM_TYPES = ("string", "object", "integer", "number", "boolean")


def _parameter_type(schema: Mapping[str, Any]) -> str:
    """A JSON Schema property as ``ToolParameter.type``: its JSON type (the non-null one of a nullable
    type or ``anyOf``), ``array[<item type>]`` for arrays of a plain type, ``any`` when none is stated."""
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), None)
    if declared is None and isinstance(schema.get("anyOf"), list):
        options = [o for o in schema["anyOf"] if isinstance(o, dict) and o.get("type") != "null"]
        if len(options) == 1:
            return _parameter_type(options[0])
    if not isinstance(declared, str):
        return "any"
    items = schema.get("items")
    if declared == "array" and isinstance(items, dict) and items.get("type") in _ITEM_TYPES:
        return f"array[{items['type']}]"
    return declared


def tool_from_schema(schema: Any, where: Where, field_name: str) -> Tool:
    """A ``Tool`` from a function schema: OpenAI's ``{"type": "function", "function": {"name", "description",
    "parameters"}}`` or the bare ``{"name", "description", "parameters"}`` (Inspect's ``ToolInfo``). Each
    property of ``parameters`` becomes a ``ToolParameter`` (type as ``_parameter_type``, required when listed
    in ``required``); ``Tool.json_schema()`` rebuilds the schema TRL's ``tools`` column takes (nested
    constraints such as ``enum`` are not kept). The ``toolkit`` is the tool's name (``ToolIndex`` may suffix it).

    Raises:
        InputError: not an object, no name, or ``parameters`` / ``properties`` that are not objects.
    """
    if isinstance(schema, dict) and isinstance(schema.get("function"), dict):
        schema, field_name = schema["function"], f"{field_name}.function"
    if not isinstance(schema, dict):
        raise where.error(f"expected a function schema object, got {type(schema).__name__}", field_name)
    name = schema.get("name")
    if not isinstance(name, str) or not name:
        raise where.error("a tool needs a name (a non-empty string)", f"{field_name}.name")
    parameters = schema.get("parameters") or {}
    properties = parameters.get("properties", {}) if isinstance(parameters, dict) else None
    if not isinstance(properties, dict) or not all(isinstance(p, dict) for p in properties.values()):
        raise where.error("expected an object schema whose properties are objects", f"{field_name}.parameters")
    required = parameters.get("required") or []
    return Tool(
        name=name,
        toolkit=name,
        summary=clean_text(str(schema.get("description") or "")),
        parameters=tuple(
            ToolParameter(name=key, type=_parameter_type(prop), description=clean_text(str(prop.get("description") or "")),
                          required=key in required)
            for key, prop in properties.items()
        ),
    )


def name_only_tool(name: str) -> Tool:
    """A tool the log called without describing it (no schema recorded): its name alone."""
    return Tool(name=name, toolkit=name)


class ToolIndex:
    """The toolkits of an import: one per tool definition, named after the tool. A later, different
    definition of a tool name (another task's ``bash``) becomes its own toolkit, ``<name>~<hash>``, so a
    scenario always names the tools it was offered."""

    def __init__(self) -> None:
        self._by_name: dict[str, Toolkit] = {}

    def add(self, tool: Tool) -> str:
        """The name of the toolkit holding ``tool`` (added when new)."""
        first = self._by_name.get(tool.name)
        if first is not None and first.tools[0] == tool:
            return first.name
        name = tool.name if first is None else f"{tool.name}~{content_hash(tool.model_dump(mode='json'), length=8)}"
        if name not in self._by_name:
            self._by_name[name] = Toolkit(name=name, name_for_model=tool.name, name_for_human=tool.name,
                                          description_for_model=tool.summary,
                                          tools=(tool.model_copy(update={"toolkit": name}),))
        return name

    def toolkits(self) -> tuple[Toolkit, ...]:
        return tuple(self._by_name.values())


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------

SCORE_SYNTAX = "SOURCE=METRIC or SOURCE=METRIC:VALUE=SCORE,VALUE=SCORE,..."


@dataclass(frozen=True)
class ScoreMapping:
    """How one score the log holds becomes a judgment: ``--score includes=helpfulness:C=3,I=0``.

    ``source`` is the Inspect scorer (``scorer.key`` for a key of a scorer's dict value) or the chat line's
    field (a dotted path, ``scores.safety``). Without a table the value must already be an integer 0-3
    (``1.0`` counts as ``1``); with one, the value's text (``score_text``) must be one of its keys. Any other
    value is an error: nothing is guessed.
    """

    spec: str
    """The mapping as written (the judgments' ``rubric_version``)."""
    source: str
    metric: Metric
    table: Mapping[str, int] | None = None

    def convert(self, value: Any, where: Where, field_name: str) -> int:
        """The score 0-3 for ``value``.

        Raises:
            InputError: a value the mapping does not cover.
        """
        text = score_text(value)
        if self.table is not None:
            if text not in self.table:
                raise where.error(f"value {text!r} is not in the mapping {self.spec!r} "
                                  f"(it maps {', '.join(map(repr, self.table))})", field_name)
            return self.table[text]
        if isinstance(value, bool) or not isinstance(value, int | float) or value not in (0, 1, 2, 3):
            raise where.error(f"value {text!r} is not an integer score 0-3; give the conversion, e.g. "
                              f"--score {self.source}={self.metric}:{text}=3,...", field_name)
        return int(value)


def score_text(value: Any) -> str:
    """A score value as a mapping's keys are written: strings as they are, ``true``/``false``, integers
    and integral floats as integers (``1.0`` -> ``1``), other numbers by ``repr``, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)
    return json.dumps(value, sort_keys=True, default=str)


def parse_score_mapping(text: str, *, option: str = "--score") -> ScoreMapping:
    """``SOURCE=METRIC`` or ``SOURCE=METRIC:VALUE=SCORE,...`` as a ``ScoreMapping`` (see its docstring).

    Raises:
        InputError: another shape, an unknown metric, a score that is not 0-3 or a value mapped twice.
    """
    source, eq, rest = text.partition("=")
    metric, colon, table_text = rest.partition(":")
    source, metric = source.strip(), metric.strip()
    if not eq or not source or not metric:
        raise InputError(f"expected {SCORE_SYNTAX}, got {text!r}", field=option)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r} in {text!r} (metrics: {', '.join(METRICS)})", field=option)
    table: dict[str, int] | None = None
    if colon:
        table = {}
        for item in table_text.split(","):
            value, eq, score = item.rpartition("=")
            if not eq or not value.strip() or score.strip() not in ("0", "1", "2", "3"):
                raise InputError(f"expected VALUE=SCORE with a score 0-3, got {item!r} in {text!r}", field=option)
            if value.strip() in table:
                raise InputError(f"value {value.strip()!r} is mapped twice in {text!r}", field=option)
            table[value.strip()] = int(score)
    return ScoreMapping(spec=text.strip(), source=source, metric=metric, table=table)  # type: ignore[arg-type]


def parse_score_mappings(texts: Iterable[str], *, option: str = "--score") -> tuple[ScoreMapping, ...]:
    """Every mapping; a metric given twice is an error (one score per metric and trajectory)."""
    mappings = tuple(parse_score_mapping(t, option=option) for t in texts)
    metrics = [m.metric for m in mappings]
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise InputError(f"metric {twice[0]!r} is mapped twice; give one score per metric", field=option)
    return mappings


def score_judgment(mapping: ScoreMapping, value: Any, *, trajectory_id: str, judge_model: str, where: Where,
                   field_name: str, source: SourceRef, label: str | None = None, rationale: str | None = None,
                   raw: Mapping[str, Any] | None = None) -> Judgment:
    """The judgment a mapped score gives (judge ``judge_model``, backend ``import``, rubric = the mapping)."""
    judge = JudgeIdentity(model=judge_model, backend="import", rubric_version=mapping.spec)
    return Judgment(
        id=Judgment.compute_id(trajectory_id=trajectory_id, metric=mapping.metric, judge=judge, replicate=0),
        trajectory_id=trajectory_id,
        metric=mapping.metric,
        score=mapping.convert(value, where, field_name),
        label=label if label is not None else score_text(value),
        rationale=rationale,
        raw_output=json.dumps(dict(raw) if raw is not None else {"value": value}, ensure_ascii=False, default=str),
        judge=judge,
        source=source,
    )


# --------------------------------------------------------------------------------------------------
# Assembling an import
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentLogImport:
    """What an import read, ready to be written as a run (``write_agent_log_import``)."""

    scenarios: tuple[Scenario, ...]
    toolkits: tuple[Toolkit, ...]
    trajectories: tuple[Trajectory, ...]
    judgments: tuple[Judgment, ...]
    inputs: Mapping[str, str]
    created_by: str
    skipped: Mapping[str, int]
    """Conversations not imported, by reason (``error``, ``cancelled``)."""
    missing_scores: Mapping[str, int]
    """Per mapped score source, the trajectories that had no such score."""

    def counts(self) -> dict[str, int]:
        return {"scenarios": len(self.scenarios), "toolkits": len(self.toolkits),
                "trajectories": len(self.trajectories), "judgments": len(self.judgments)}

    def summary(self) -> dict[str, Any]:
        return {**self.counts(), "skipped": dict(self.skipped), "missing_scores": dict(self.missing_scores)}


class ImportBuilder:
    """Collects scenarios, toolkits, trajectories and judgments as a reader finds them."""

    def __init__(self, mappings: Sequence[ScoreMapping]) -> None:
        self.mappings = tuple(mappings)
        self.tools = ToolIndex()
        self._scenarios: dict[str, Scenario] = {}
        self._scenario_where: dict[str, str] = {}
        self._called: dict[str, dict[str, None]] = {}
        self._trajectories: dict[str, Trajectory] = {}
        self._judgments: dict[str, Judgment] = {}
        self.skipped: dict[str, int] = {}
        self.missing_scores: dict[str, int] = {m.source: 0 for m in self.mappings}
        self.found_scores: set[str] = set()

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def scenario(self, scenario_id: str, *, suite: str, instruction: str, tools: Sequence[Tool] | None,
                 called: Sequence[str] = (), where: Where, field_name: str) -> Scenario:
        """The scenario ``scenario_id``: its toolkits are the union of the tools each of its conversations was
        offered. A conversation whose log records no tools (``tools`` is ``None``) adds the tools it
        ``called`` instead, by name: an import's definition of that name where there is one, else the name alone
        (resolved in ``result``, once every definition is known).

        Raises:
            InputError: the same id with another instruction.
        """
        toolkits = [self.tools.add(t) for t in tools or ()]
        if tools is None:
            self._called.setdefault(scenario_id, {}).update(dict.fromkeys(called))
        known = self._scenarios.get(scenario_id)
        if known is None:
            known = Scenario(id=scenario_id, suite=suite, index=len(self._scenarios), instruction=instruction,
                             toolkits=tuple(dict.fromkeys(toolkits)))
            self._scenario_where[scenario_id] = where.error("", field_name).location().rstrip(": ")
        elif known.instruction != instruction:
            raise where.error(f"scenario {scenario_id!r} has another instruction here than at "
                              f"{self._scenario_where[scenario_id]}", field_name)
        else:
            known = known.model_copy(update={"toolkits": tuple(dict.fromkeys((*known.toolkits, *toolkits)))})
        self._scenarios[scenario_id] = known
        return known

    def _with_called_tools(self, scenario: Scenario) -> Scenario:
        called = self._called.get(scenario.id)
        if not called:
            return scenario
        by_toolkit = {t.name: t for t in self.tools.toolkits()}
        offered = {tool.name for name in scenario.toolkits for tool in by_toolkit[name].tools}
        added = []
        for name in called:
            if name in offered:
                continue
            defined = next((t.name for t in self.tools.toolkits() if t.name_for_model == name), None)
            added.append(defined or self.tools.add(name_only_tool(name)))
        return scenario.model_copy(update={"toolkits": tuple(dict.fromkeys((*scenario.toolkits, *added)))})

    def trajectory(self, conversation: Conversation, *, scenario: Scenario, agent: AgentIdentity, sample_index: int,
                   source: SourceRef, prompt_tokens: int | None = None,
                   completion_tokens: int | None = None) -> Trajectory:
        """The trajectory of ``conversation`` (kept once when the same one is imported twice)."""
        agent = agent.model_copy(update={"prompt_format": conversation.prompt_format})
        c = conversation
        trajectory = Trajectory(
            id=Trajectory.compute_id(scenario_id=scenario.id, agent=agent, emulator=None, sample_index=sample_index,
                                     steps=c.steps, final_log=c.final_log, final_answer=c.final_answer),
            scenario_id=scenario.id,
            agent=agent,
            sample_index=sample_index,
            steps=c.steps,
            final_log=c.final_log,
            final_answer=c.final_answer,
            finish_reason=c.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            flags=tuple(dict.fromkeys((*trajectory_flags(c.steps, c.final_log, c.finish_reason, c.final_answer),
                                       *c.flags))),
            source=source,
        )
        # The renderings are pure functions of the fields above, as for rollouts and ToolEmu imports.
        trajectory = trajectory.model_copy(
            update={"messages": native_messages(trajectory), "react_messages": react_messages(trajectory)})
        return self._trajectories.setdefault(trajectory.id, trajectory)

    def judgment(self, judgment: Judgment) -> None:
        self._judgments.setdefault(judgment.id, judgment)

    def result(self, *, inputs: Mapping[str, str], created_by: str) -> AgentLogImport:
        """Everything collected.

        Raises:
            InputError: a mapped score source that no conversation had (a misspelt scorer or field).
        """
        for m in self.mappings:
            if m.source not in self.found_scores:
                raise InputError(f"no imported conversation has the score {m.source!r} (mapping {m.spec!r})",
                                 field="--score")
        scenarios = tuple(self._with_called_tools(s) for s in self._scenarios.values())
        return AgentLogImport(scenarios=scenarios, toolkits=self.tools.toolkits(),
                              trajectories=tuple(self._trajectories.values()),
                              judgments=tuple(self._judgments.values()), inputs=dict(inputs), created_by=created_by,
                              skipped=dict(self.skipped), missing_scores=dict(self.missing_scores))


def write_agent_log_import(result: AgentLogImport, out: str | Path, *, force: bool = False) -> RunStore:
    """Write ``result`` as a new run directory ``out``, all at once (``prefkit.store.new_run``): a failed
    import leaves nothing behind.

    Raises:
        StoreError: ``out`` is a file, or a non-empty folder and ``force`` is false.
    """
    with new_run(Path(out), created_by=result.created_by, inputs=dict(result.inputs), overwrite=force) as store:
        for name, rows in (("scenarios", result.scenarios), ("toolkits", result.toolkits),
                           ("trajectories", result.trajectories), ("judgments", result.judgments)):
            store.write(name, rows)
    return store


def find_files(paths: Sequence[str | Path], suffixes: tuple[str, ...], *, what: str) -> list[Path]:
    """The files to read: each path that is a file, and every file under each folder (recursively) whose
    name ends with one of ``suffixes``; sorted within a folder, in the order given across paths, each once.

    Raises:
        InputError: a path that does not exist, or nothing to read at all.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted((f for f in p.rglob("*") if f.is_file() and f.name.endswith(suffixes)),
                            key=lambda f: f.relative_to(p).parts)
        elif p.is_file():
            found.append(p)
        else:
            raise InputError("no such file or folder", path=p)
    if not found:
        raise InputError(f"no {what} found (looked for {', '.join('*' + s for s in suffixes)})",
                         path=", ".join(map(str, paths)))
    return list(dict.fromkeys(found))


def files_sha256(files: Sequence[Path]) -> str:
    """One hash over the files' names and contents, in order (an import's manifest ``inputs`` and the build's
    source key record it)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(b"\0")
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def dotted(value: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted ``path`` inside nested objects (``scores.safety``)."""
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


# --------------------------------------------------------------------------------------------------
# Recipe sections
# --------------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class AgentLogSource(_Section):
    """The fields the ``inspect`` and ``chat`` sources of a build recipe share."""

    kind: Literal["inspect", "chat"]
    paths: tuple[str, ...] = Field(min_length=1)
    """Log files, or folders searched recursively."""
    scores: tuple[str, ...] = ()
    """Score mappings, as ``--score`` takes them (``includes=helpfulness:C=3,I=0``)."""
    agent: str | None = None
    """The agent's name in the records (default: Inspect's model; for chat, the file name)."""

    def read(self) -> AgentLogImport:
        """Import the logs (``import_inspect_logs`` / ``import_chat_logs``)."""
        raise NotImplementedError

    def files(self) -> list[Path]:
        """The log files the section names."""
        raise NotImplementedError

    def source_key(self) -> dict[str, Any]:
        """What the build's ``source`` stage is keyed by: the section without its paths, and the files' hash."""
        return {"section": self.model_dump(mode="json", exclude={"paths"}), "files": files_sha256(self.files())}

    def check_inputs(self) -> None:
        """Paths that exist and mappings that parse (before any stage runs).

        Raises:
            InputError: naming the recipe field.
        """
        for i, p in enumerate(self.paths):
            if not Path(p).exists():
                raise InputError(f"no such file or folder: {p}", field=f"source.paths.{i}")
        try:
            parse_score_mappings(self.scores)
        except InputError as exc:
            raise InputError(exc.message, field="source.scores") from None
