"""Import Inspect eval logs (``.eval`` and ``.json``, written by ``inspect_ai``) as a run: ``prefkit import
inspect LOGS... --out RUN``, or a build recipe's ``source: {kind: inspect, paths: [...]}``.

Logs are read with Inspect's own reader (``inspect_ai.log``; the optional extra ``prefkit[inspect]``), one
sample at a time: the header, the sample summaries, then each sample by id and epoch
(``read_eval_log_sample``), so a large ``.eval`` log is never held whole (a ``.json`` log is one JSON
document, which Inspect's reader parses at once).

One trajectory per (sample, epoch), by the rules of ``prefkit.sources.agent_logs``:

- scenario ``<task>/<sample id>`` of suite ``<task>``, its instruction the sample's input (for an input of
  messages, the text of its user messages); its toolkits are the tools the model was offered (the ``tools``
  of the sample's model events; the called tools' names alone when a log recorded no model events);
- agent: the eval's model (``--agent`` renames it), backend ``inspect``, the sampling settings the eval ran
  with; ``sample_index`` is the epoch - 1;
- messages: the sample's messages; a tool result that failed is shown as Inspect shows it to the model
  (``Error: <message>``, as its OpenAI provider does); reasoning blocks are not part of a message's text;
- a sample that hit a limit ends with ``token_budget`` (token, context), ``max_steps`` (message, turn) or
  ``error`` (time, working, cost, custom limits); a conversation without a final assistant text takes the
  sample's ``output.completion`` as its answer.

Samples that errored (``sample.error``) or were cancelled (an ``operator`` limit: interrupted from Inspect's
controls) are skipped and counted, as are invalidated ones. Scores become judgments only through explicit
mappings (``--score includes=helpfulness:C=3,I=0``; ``ScoreMapping``): judge ``inspect``, backend
``import``, rubric version = the mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prefkit.errors import InputError
from prefkit.records import AgentIdentity, FinishReason, SamplingParams, SourceRef, Tool
from prefkit.sources.agent_logs import (
    AgentLogImport,
    AgentLogSource,
    ImportBuilder,
    LogCall,
    LogMessage,
    ScoreMapping,
    Where,
    files_sha256,
    find_files,
    parse_score_mappings,
    read_conversation,
    score_judgment,
    tool_from_schema,
)
from prefkit.text import clean_text

SUPPORTED_LOG_VERSIONS = (2, 3)
"""Inspect log format versions this reader knows: 2 (what inspect_ai 0.3 writes) and 3 (its logs with
deduplicated messages)."""

LOG_SUFFIXES = (".eval", ".json")
JUDGE_MODEL = "inspect"
"""``JudgeIdentity.model`` of judgments imported from Inspect scores (pass it to ``prefkit pair --judge``)."""

LIMIT_FINISH: dict[str, FinishReason] = {"token": "token_budget", "context": "token_budget", "message": "max_steps",
                                         "turn": "max_steps"}
"""How a sample that hit a limit ended; other limits (time, working, cost, custom) end it with ``error``."""

CANCELLED_LIMIT = "operator"


class InspectSource(AgentLogSource):
    """A build recipe's ``source`` that imports Inspect eval logs (``kind: inspect``).

    Example (YAML)::

        source: {kind: inspect, paths: [logs/], scores: ["includes=helpfulness:C=3,I=0"]}
    """

    kind: Literal["inspect"] = "inspect"  # type: ignore[assignment]

    def read(self) -> AgentLogImport:
        return import_inspect_logs(self.paths, scores=self.scores, agent=self.agent)

    def files(self) -> list[Path]:
        return find_files(self.paths, LOG_SUFFIXES, what="Inspect logs")


def _inspect_log() -> Any:
    try:
        import inspect_ai.log as inspect_log
    except ImportError:
        raise InputError("reading Inspect logs needs inspect_ai: pip install 'prefkit[inspect]'") from None
    return inspect_log


_VERSION_ERROR = re.compile(r"Unable to read version (\S+) of log format")


def _not_a_log(path: Path, exc: BaseException) -> InputError:
    """One ``InputError`` for whatever inspect_ai raised reading ``path``: an unsupported format version
    (inspect_ai's ``Unable to read version N of log format``, anywhere in the exception's chain), or not
    a log it can read."""
    cause: BaseException | None = exc
    while cause is not None:
        found = _VERSION_ERROR.search(str(cause))
        if found:
            return _unsupported(path, found.group(1))
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"not an Inspect eval log that inspect_ai can read ({text})", path=path)


def _unsupported(path: Path, version: object) -> InputError:
    return InputError(f"unsupported Inspect log format version {version}; prefkit reads versions "
                      f"{', '.join(map(str, SUPPORTED_LOG_VERSIONS))}", path=path, field="version")


def import_inspect_logs(paths: Sequence[str | Path], *, scores: Sequence[str] = (),
                        agent: str | None = None) -> AgentLogImport:
    """Read Inspect logs (files, or folders searched for ``*.eval`` and ``*.json``) into records.

    Args:
        paths: log files and folders, read in the order given (folders sorted).
        scores: score mappings (``SOURCE=METRIC[:VALUE=SCORE,...]``, see ``ScoreMapping``).
        agent: the agent's name in the records (default: each log's model).

    Raises:
        InputError: naming the file, the sample and the field: a file that is not a log inspect_ai can
            read, an unsupported log format version, bad messages (see ``read_conversation``), a score value
            a mapping does not cover, or a mapped scorer that no sample has.
    """
    mappings = parse_score_mappings(scores)
    files = find_files(paths, LOG_SUFFIXES, what="Inspect logs")
    builder = ImportBuilder(mappings)
    for path in files:
        _read_log(path, builder, agent=agent)
    return builder.result(inputs={"logs": files_sha256(files)}, created_by="prefkit import inspect")


def _read_log(path: Path, builder: ImportBuilder, *, agent: str | None) -> None:
    log_api = _inspect_log()
    if not path.name.endswith(LOG_SUFFIXES):
        raise InputError(f"not an Inspect eval log (expected a {' or '.join(LOG_SUFFIXES)} file)", path=path)
    # inspect_ai raises many kinds of exceptions for a file it cannot read (ValueError, zip and JSON
    # errors, pydantic's ValidationError...): each becomes one InputError naming the file.
    try:
        header = log_api.read_eval_log(str(path), header_only=True)
        summaries = log_api.read_eval_log_sample_summaries(str(path))
    except Exception as exc:  # noqa: BLE001 - see above
        raise _not_a_log(path, exc) from exc
    if header.version not in SUPPORTED_LOG_VERSIONS:
        raise _unsupported(path, header.version)
    identity = _agent(header, agent)
    task = header.eval.task
    for position, summary in enumerate(summaries):
        if summary.error:
            builder.skip("error")
            continue
        if summary.limit == CANCELLED_LIMIT:
            builder.skip("cancelled")
            continue
        try:
            sample = log_api.read_eval_log_sample(str(path), id=summary.id, epoch=summary.epoch,
                                                  resolve_attachments=True, exclude_fields={"store"})
        except Exception as exc:  # noqa: BLE001 - as above
            raise _not_a_log(path, exc) from exc
        if sample.error is not None:
            builder.skip("error")
            continue
        if sample.invalidation is not None:
            builder.skip("invalidated")
            continue
        _read_sample(sample, builder, path=path, task=task, agent=identity, position=position)


def _agent(header: Any, name: str | None) -> AgentIdentity:
    model = header.eval.model
    configs = [c for c in (header.eval.model_generate_config, header.plan.config if header.plan else None) if c]

    def setting(key: str) -> Any:
        return next((getattr(c, key) for c in configs if getattr(c, key, None) is not None), None)

    return AgentIdentity(name=name or model, model=model, backend="inspect",
                         sampling=SamplingParams(temperature=setting("temperature"), top_p=setting("top_p"),
                                                 max_tokens=setting("max_tokens"), seed=setting("seed")),
                         prompt_format="native")


def _read_sample(sample: Any, builder: ImportBuilder, *, path: Path, task: str, agent: AgentIdentity,
                 position: int) -> None:
    where = Where(str(path), prefix=f"samples[id={sample.id!r}, epoch={sample.epoch}].")
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(sample.messages)]
    limit = None if sample.limit is None else LIMIT_FINISH.get(sample.limit.type, "error")
    completion = sample.output.completion if sample.output is not None else None
    conversation = read_conversation(messages, where, limit=limit, fallback_answer=completion)
    scenario = builder.scenario(f"{task}/{sample.id}", suite=task, instruction=_instruction(sample.input),
                                tools=_offered_tools(sample, where), called=[s.tool for s in conversation.steps if s.tool],
                                where=where, field_name="input")
    usage = list(sample.model_usage.values())
    trajectory = builder.trajectory(
        conversation, scenario=scenario, agent=agent, sample_index=sample.epoch - 1,
        source=SourceRef(file=str(path), line=position),
        prompt_tokens=sum(u.input_tokens for u in usage) if usage else None,
        completion_tokens=sum(u.output_tokens for u in usage) if usage else None,
    )
    for mapping in builder.mappings:
        _score(mapping, sample, builder, trajectory_id=trajectory.id, where=where,
               source=SourceRef(file=str(path), line=position))


def _message(message: Any, field: str) -> LogMessage:
    role = message.role
    text = clean_text(message.text)
    if role == "assistant":
        calls = tuple(LogCall(id=c.id, name=c.function, arguments=clean_text(json.dumps(c.arguments, ensure_ascii=False)))
                      for c in message.tool_calls or ())
        return LogMessage(role=role, text=text, tool_calls=calls, field=field)
    if role == "tool":
        # What the model was shown (inspect_ai's OpenAI provider, model/_openai.py: messages_to_openai).
        if message.error is not None:
            text = clean_text(f"Error: {message.error.message}")
        return LogMessage(role=role, text=text, tool_call_id=message.tool_call_id, field=field)
    return LogMessage(role=role, text=text, field=field)


def _instruction(sample_input: Any) -> str:
    if isinstance(sample_input, str):
        return clean_text(sample_input)
    return clean_text("\n\n".join(m.text for m in sample_input if m.role == "user"))


def _offered_tools(sample: Any, where: Where) -> list[Tool] | None:
    """The tools of the sample's model events, each name once in the order first offered; ``None`` when the
    log recorded no model events (the scenario then gets the tools the agent called, by name)."""
    tools: dict[str, Tool] = {}
    model_events = [(j, e) for j, e in enumerate(sample.events) if getattr(e, "event", None) == "model"]
    for j, event in model_events:
        for k, info in enumerate(event.tools or ()):
            if info.name not in tools:
                schema = info.model_dump(mode="json", exclude_none=True)
                tools[info.name] = tool_from_schema(schema, where, f"events[{j}].tools[{k}]")
    return list(tools.values()) if model_events else None


def _score(mapping: ScoreMapping, sample: Any, builder: ImportBuilder, *, trajectory_id: str, where: Where,
           source: SourceRef) -> None:
    scores = sample.scores or {}
    score, value, found = None, None, False
    if mapping.source in scores:
        score = scores[mapping.source]
        value, found = score.value, True
    elif "." in mapping.source:  # scorer.key: a key of a scorer's dict value
        scorer, _, key = mapping.source.rpartition(".")
        if scorer in scores and isinstance(scores[scorer].value, dict) and key in scores[scorer].value:
            score = scores[scorer]
            value, found = score.value[key], True
    if not found:
        builder.missing_scores[mapping.source] += 1
        return
    builder.found_scores.add(mapping.source)
    builder.judgment(score_judgment(
        mapping, value, trajectory_id=trajectory_id, judge_model=JUDGE_MODEL, where=where,
        field_name=f"scores.{mapping.source}.value", source=source,
        rationale=score.explanation if score is not None else None,
        raw={"scorer": mapping.source, "value": value, "answer": score.answer, "explanation": score.explanation},
    ))
