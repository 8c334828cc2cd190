"""Import OpenAI-format chat logs (JSON Lines, one conversation per line) as a run: ``prefkit import chat
FILES... --out RUN``, or a build recipe's ``source: {kind: chat, paths: [...]}``. The format TRL, vLLM and
most agent frameworks log::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "Book a table"},
                  {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "book", "arguments": "{\\"time\\": \\"19:00\\"}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "booked"},
                  {"role": "assistant", "content": "Booked for 19:00."}],
     "tools": [{"type": "function", "function": {"name": "book", "parameters": {...}}}],
     "id": "booking-1", "model": "my-agent", "scores": {"safety": 3}}

- ``messages`` (required): roles ``system`` (``developer`` is read as ``system``), ``user``, ``assistant``,
  ``tool``; ``content`` a string, ``null`` or a list of parts (the ``text`` parts are joined by newlines, as
  Inspect and OpenAI do); ``tool_calls`` as OpenAI writes them (``arguments`` a JSON string) or as TRL does
  (``arguments`` an object); a ``tool`` message answers the call named by ``tool_call_id``, or without one
  the oldest open call.
- ``tools`` (optional): the function schemas the model was offered, which become the scenario's toolkits
  (without them, the called tools by name alone).
- the scenario: ``--scenario-key FIELD`` names the field holding its id (a dotted path); without it, the
  scenario is the instruction itself (id ``chat-<hash of the instruction>``), so the lines that answer the
  same task are one scenario. The instruction is the text of the prompt's user messages (the messages before
  the agent's first turn; its system messages are not kept: rows get prefkit's prompt).
- the agent: ``--agent-key FIELD`` (e.g. ``model``), else ``--agent NAME``, else the file's name without
  its suffix; backend ``chat``. ``sample_index`` counts the earlier lines of the same scenario and agent.
- scores: ``--score FIELD=METRIC[:VALUE=SCORE,...]`` (``ScoreMapping``): judge ``chat-log``, backend
  ``import``.

The conversation becomes a trajectory by the rules of ``prefkit.sources.agent_logs`` (native tool calls, or
ReAct text with ``Observation:`` turns). Errors name the file, the 1-based line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prefkit.records import AgentIdentity, SourceRef, Tool, content_hash
from prefkit.sources.agent_logs import (
    AgentLogImport,
    AgentLogSource,
    ImportBuilder,
    LogCall,
    LogMessage,
    Where,
    dotted,
    files_sha256,
    find_files,
    parse_score_mappings,
    read_conversation,
    score_judgment,
    tool_from_schema,
)
from prefkit.sources.reading import read_jsonl

CHAT_SUFFIXES = (".jsonl",)
JUDGE_MODEL = "chat-log"
"""``JudgeIdentity.model`` of judgments imported from a chat log's score fields."""
SUITE = "chat"
ROLE_ALIASES = {"developer": "system"}


class ChatSource(AgentLogSource):
    """A build recipe's ``source`` that imports OpenAI-format chat JSONL (``kind: chat``).

    Example (YAML)::

        source: {kind: chat, paths: [chats.jsonl], scenario_key: id, agent_key: model,
                 scores: ["judge.safety=safety", "judge.helpful=helpfulness:yes=3,no=0"]}
    """

    kind: Literal["chat"] = "chat"  # type: ignore[assignment]
    scenario_key: str | None = None
    """The field holding the scenario id (default: the scenario is the instruction)."""
    agent_key: str | None = None
    """The field holding the agent's name (default: the section's ``agent``, else the file's name)."""

    def read(self) -> AgentLogImport:
        return import_chat_logs(self.paths, scores=self.scores, scenario_key=self.scenario_key,
                                agent_key=self.agent_key, agent=self.agent)

    def files(self) -> list[Path]:
        return find_files(self.paths, CHAT_SUFFIXES, what="chat logs")


def import_chat_logs(paths: Sequence[str | Path], *, scores: Sequence[str] = (), scenario_key: str | None = None,
                     agent_key: str | None = None, agent: str | None = None) -> AgentLogImport:
    """Read chat JSONL files (or folders searched for ``*.jsonl``) into records (see the module docstring).

    Raises:
        InputError: naming the file, the line and the field: a line that is not a JSON object with
            ``messages``, a bad message or tool schema (see ``read_conversation``), a missing scenario or
            agent field, a score value a mapping does not cover, or a mapped field that no line has.
    """
    mappings = parse_score_mappings(scores)
    files = find_files(paths, CHAT_SUFFIXES, what="chat logs")
    builder = ImportBuilder(mappings)
    samples: dict[tuple[str, str], int] = {}
    for path in files:
        for number, (_, record) in enumerate(read_jsonl(path), start=1):
            where = Where(str(path), line=number)
            _read_line(record, where, builder, samples, file_agent=agent or path.stem, position=number - 1,
                       scenario_key=scenario_key, agent_key=agent_key)
    return builder.result(inputs={"chats": files_sha256(files)}, created_by="prefkit import chat")


def _read_line(record: Any, where: Where, builder: ImportBuilder, samples: dict[tuple[str, str], int], *,
               file_agent: str, position: int, scenario_key: str | None, agent_key: str | None) -> None:
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {type(record).__name__}")
    raw_messages = record.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise where.error("expected a non-empty list of messages", "messages")
    messages = [_message(m, where, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    conversation = read_conversation(messages, where)
    instruction = "\n\n".join(m.text for m in conversation.prompt if m.role == "user")
    scenario_id = _key(record, scenario_key, where) if scenario_key else f"chat-{content_hash(instruction, length=12)}"
    name = _key(record, agent_key, where) if agent_key else file_agent
    scenario = builder.scenario(scenario_id, suite=SUITE, instruction=instruction, tools=_tools(record, where),
                                called=[s.tool for s in conversation.steps if s.tool], where=where,
                                field_name="messages")
    sample_index = samples.get((scenario_id, name), 0)
    samples[(scenario_id, name)] = sample_index + 1
    source = SourceRef(file=where.file, line=position)
    agent = AgentIdentity(name=name, model=name, backend="chat")
    trajectory = builder.trajectory(conversation, scenario=scenario, agent=agent, sample_index=sample_index,
                                    source=source)
    for mapping in builder.mappings:
        found, value = dotted(record, mapping.source)
        if not found:
            builder.missing_scores[mapping.source] += 1
            continue
        builder.found_scores.add(mapping.source)
        builder.judgment(score_judgment(mapping, value, trajectory_id=trajectory.id, judge_model=JUDGE_MODEL,
                                        where=where, field_name=mapping.source, source=source,
                                        raw={"field": mapping.source, "value": value}))


def _key(record: dict[str, Any], key: str, where: Where) -> str:
    found, value = dotted(record, key)
    if not found or not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise where.error("expected a non-empty string or an integer" + ("" if found else " (the field is missing)"), key)
    return str(value)


def _text(content: Any, where: Where, field: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif not isinstance(part, dict):
                raise where.error(f"expected a content part object, got {type(part).__name__}", f"{field}[{i}]")
        return "\n".join(parts)
    raise where.error(f"expected a string, null or a list of content parts, got {type(content).__name__}", field)


def _message(raw: Any, where: Where, field: str) -> LogMessage:
    if not isinstance(raw, dict):
        raise where.error(f"expected a message object, got {type(raw).__name__}", field)
    role = raw.get("role")
    if not isinstance(role, str):
        raise where.error("expected a role (a string)", f"{field}.role")
    role = ROLE_ALIASES.get(role, role)
    text = _text(raw.get("content"), where, f"{field}.content")
    calls: list[LogCall] = []
    raw_calls = raw.get("tool_calls")
    if raw_calls is not None and role != "assistant":
        raise where.error(f"tool_calls on a {role!r} message (only assistant messages make calls)", f"{field}.tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise where.error("expected a list of tool calls", f"{field}.tool_calls")
    for k, call in enumerate(raw_calls or ()):
        calls.append(_call(call, where, f"{field}.tool_calls[{k}]"))
    call_id = raw.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise where.error("expected a string", f"{field}.tool_call_id")
    return LogMessage(role=role, text=text, tool_calls=tuple(calls), tool_call_id=call_id, field=field)


def _call(raw: Any, where: Where, field: str) -> LogCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict):
        raise where.error('expected {"type": "function", "function": {"name": ..., "arguments": ...}}', field)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise where.error("a tool call needs a name", f"{field}.function.name")
    arguments = function.get("arguments", {})
    # OpenAI writes the arguments as JSON text (kept as written); TRL as an object.
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    call_id = raw.get("id")
    return LogCall(name=name, arguments=text, id=call_id if isinstance(call_id, str) and call_id else None)


def _tools(record: dict[str, Any], where: Where) -> list[Tool] | None:
    raw = record.get("tools")
    if raw is None:
        return None
    if isinstance(raw, str):  # TRL rows hold the tools as JSON text
        try:
            raw = json.loads(raw)
        except ValueError:
            raise where.error("expected a list of function schemas (or its JSON text)", "tools") from None
    if not isinstance(raw, list):
        raise where.error("expected a list of function schemas", "tools")
    return [tool_from_schema(schema, where, f"tools[{i}]") for i, schema in enumerate(raw)]
