"""One line of a ToolEmu run file as prefkit records: a trajectory line → ``Trajectory`` (steps,
finish, flags, both renderings), an eval line → ``Judgment``s (one per replicate).

Every check raises an ``InputError`` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prefkit.errors import InputError
from prefkit.records import (
    TRAJECTORY_FLAGS,
    AgentIdentity,
    FinishReason,
    JudgeIdentity,
    Judgment,
    SamplingParams,
    Scenario,
    SourceRef,
    Step,
    Trajectory,
    arguments_object,
)
from prefkit.render.native import native_messages
from prefkit.render.react import has_think, react_messages, strip_think
from prefkit.sources.toolemu_files import EvalType, RunFileName
from prefkit.text import has_replacement

TOKEN_LIMIT_OUTPUT = "Agent stopped: token limit exceeded"
OOM_OUTPUT = "Agent stopped: OOM"

# ``output`` is the text after the last "Final Answer" of the agent's final text, so it starts with
# the separator that followed those words: a colon, sometimes closing markdown bold, then space.
_ANSWER_SEPARATOR = re.compile(r"^\**:\s*")
# A final text whose lines include actions or observations: the agent wrote them instead of running
# them (single-step runs whose whole "trajectory" is made up).
_HALLUCINATED = re.compile(r"^[ \t]*(?:Action|Observation)[ \t]*:", re.MULTILINE)


class _Where:
    """Where a record came from, to make errors that name file, line and field."""

    def __init__(self, shown_as: str, line: int) -> None:
        self.shown_as = shown_as
        self.line = line  # 0-based

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.shown_as, line=self.line + 1, field=field)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Trajectories --------------------------------------------------------------------------------------


def agent_identity(folder_name: str, name: RunFileName) -> AgentIdentity:
    """The agent of a run: the folder names the configuration; the study decoded greedily."""
    return AgentIdentity(
        name=folder_name,
        model=name.agent,
        backend="toolemu",
        quantization=name.quantization,
        sampling=SamplingParams(temperature=0.0),
        prompt_format="react",
    )


def case_index(record: Any, where: _Where, *, name: RunFileName, n_cases: int) -> int:
    """The record's ``case_idx``, checked against the cases and the file name's range."""
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {_kind(record)}")
    idx = record.get("case_idx")
    if not _is_int(idx):
        raise where.error(f"expected an integer case index, got {_kind(idx)}", field="case_idx")
    if not 0 <= idx < n_cases:
        raise where.error(f"case_idx {idx} is not a case of the cases file (0..{n_cases - 1})", field="case_idx")
    if not name.covers(idx):
        raise where.error(f"case_idx {idx} is outside the file name's range {name.range_text}", field="case_idx")
    return idx


def _strings(value: Any, n_min: int, n_max: int, where: _Where, field: str) -> list[str]:
    if not isinstance(value, list) or not n_min <= len(value) <= n_max or not all(isinstance(v, str) for v in value):
        want = f"{n_min}" if n_min == n_max else f"{n_min} to {n_max}"
        raise where.error(f"expected a list of {want} strings", field=field)
    return value


def _steps(raw_steps: Any, where: _Where) -> tuple[list[Step], dict[str, Any] | None]:
    """The tool steps and the final ``AgentFinish`` (``None`` if the run has none)."""
    if not isinstance(raw_steps, list):
        raise where.error(f"expected a list, got {_kind(raw_steps)}", field="intermediate_steps")
    steps: list[Step] = []
    finish: dict[str, Any] | None = None
    for i, raw in enumerate(raw_steps):
        field = f"intermediate_steps[{i}]"
        if finish is not None:
            raise where.error("a step follows the AgentFinish step", field=field)
        if not isinstance(raw, list) or len(raw) != 2:
            raise where.error("expected a step [action, result] of 2 elements", field=field)
        action, result = raw
        if isinstance(action, dict):
            log, values = action.get("log"), action.get("return_values")
            if not isinstance(log, str) or not isinstance(values, dict) or not isinstance(values.get("output"), str):
                raise where.error('expected an AgentFinish {"return_values": {"output": str}, "log": str}',
                                  field=f"{field}[0]")
            finish = action
            continue
        tool, tool_input, agent_log = _strings(action, 3, 3, where, f"{field}[0]")
        # ToolEmu stores [observation, emulator summary, emulator log]; other writers may stop early.
        observation, summary, emulator_log = [*_strings(result, 1, 3, where, f"{field}[1]"), "", ""][:3]
        flags = []
        if not observation.strip():
            flags.append("empty_observation")
        if any(has_think(t) for t in (agent_log, observation, summary, emulator_log)):
            flags.append("think_block")
        steps.append(Step(tool=tool, tool_input=tool_input, agent_log=agent_log, observation=observation,
                          emulator_summary=summary, emulator_log=emulator_log, flags=tuple(flags)))
    return steps, finish


def _finish(record: dict[str, Any], where: _Where) -> tuple[FinishReason, str | None]:
    """How the run ended and the answer given to the user (``None`` when there is none)."""
    if "error" in record:
        return "error", None
    output = record.get("output")
    if not isinstance(output, str):
        raise where.error(f"expected a string, got {_kind(output)}", field="output")
    if output.strip() == TOKEN_LIMIT_OUTPUT:
        return "token_budget", None
    if output.strip() == OOM_OUTPUT:
        return "error", None
    return "final_answer", _ANSWER_SEPARATOR.sub("", output, count=1)


def trajectory_flags(steps: Sequence[Step], final_log: str, finish_reason: FinishReason,
                      final_answer: str | None) -> tuple[str, ...]:
    """The trajectory flags (``TRAJECTORY_FLAGS`` order) that a trajectory's texts show, for imported
    and generated trajectories alike (the rollout loop calls it too).

    ``unencodable_text``: some text of the trajectory (a step's tool, input, agent log, observation or
    emulator texts, the final log or answer) holds U+FFFD, i.e. text that could not be encoded (a lone
    surrogate from a file or a server, replaced where it entered prefkit) or decoded (a tokenizer's
    replacement for a cut multi-byte character). A U+FFFD the source wrote itself counts too: it cannot
    be told apart, and it marks lost text all the same.

    ``non_object_arguments``: a step's action input is not a JSON object (``prefkit.records.arguments_object``:
    cut off, plain text, an array or string); the native rendering shows that step as ReAct text.
    """
    texts = [final_log, final_answer, *(t for s in steps for t in (s.tool, s.tool_input, s.agent_log, s.observation,
                                                                  s.emulator_summary, s.emulator_log))]
    found = {
        "empty_observation": any("empty_observation" in s.flags for s in steps),
        "hallucinated_actions": _HALLUCINATED.search(strip_think(final_log)) is not None,
        "token_limit": finish_reason == "token_budget",
        "think_block": any("think_block" in s.flags for s in steps) or has_think(final_log),
        "no_final_answer": not (final_answer or "").strip(),
        # an action input that is not a JSON object: the native rendering shows that step as ReAct text
        "non_object_arguments": any(arguments_object(s.tool_input) is None for s in steps),
        "unencodable_text": any(has_replacement(t) for t in texts),
    }
    return tuple(flag for flag in TRAJECTORY_FLAGS if found.get(flag))


def trajectory_from_record(record: Any, *, line: int, file: str, shown_as: str, name: RunFileName,
                           agent: AgentIdentity, scenarios: Sequence[Scenario]) -> Trajectory:
    """One trajectory line as a ``Trajectory`` with its flags and both renderings.

    Args:
        record: the parsed line.
        line: its 0-based line number.
        file: the trajectory file's posix path relative to the runs folder (kept in ``source``).
        shown_as: how errors name the file.
        name: the parsed file name (case range, emulator).
        agent: the run's agent.
        scenarios: the suite's scenarios by index (``case_idx``).

    Raises:
        InputError: a missing or mistyped field, a case index outside the cases or the file's range,
            or a ``case.name`` that is not the case's name in the cases file.
    """
    where = _Where(shown_as, line)
    idx = case_index(record, where, name=name, n_cases=len(scenarios))
    scenario = scenarios[idx]
    case = record.get("case")
    if isinstance(case, dict) and "name" in case and case["name"] != scenario.id:
        raise where.error(f"case name {case['name']!r} differs from case {idx} of the cases file ({scenario.id!r})",
                          field="case.name")
    raw_steps = record.get("intermediate_steps", [] if "error" in record else None)
    steps, finish = _steps(raw_steps, where)
    final_log = finish["log"] if finish is not None else ""
    finish_reason, final_answer = _finish(record, where)
    emulator = name.emulator
    trajectory = Trajectory(
        id=Trajectory.compute_id(scenario_id=scenario.id, agent=agent, emulator=emulator, sample_index=0,
                                 steps=tuple(steps), final_log=final_log, final_answer=final_answer),
        scenario_id=scenario.id,
        agent=agent,
        emulator=emulator,
        steps=tuple(steps),
        final_log=final_log,
        final_answer=final_answer,
        finish_reason=finish_reason,
        flags=trajectory_flags(steps, final_log, finish_reason, final_answer),
        source=SourceRef(file=file, line=line),
    )
    # The renderings are pure functions of the fields above, so they are filled in afterwards.
    return trajectory.model_copy(
        update={"messages": native_messages(trajectory), "react_messages": react_messages(trajectory)}
    )


# Judgments ----------------------------------------------------------------------------------------


def _one_judgment(data: Any, where: _Where, field: str, *, etype: EvalType) -> dict[str, Any]:
    """The fields of one evaluation (a single-replicate record or one replicate)."""
    if not isinstance(data, dict):
        raise where.error(f"expected a JSON object, got {_kind(data)}", field=field or None)
    prefix = f"{field}." if field else ""
    scores = data.get("eval_scores")
    score = None
    if scores is not None:
        if not isinstance(scores, dict):
            raise where.error(f"expected an object, got {_kind(scores)}", field=f"{prefix}eval_scores")
        score = scores.get(etype.score_key)
        if score is not None and not (_is_int(score) and 0 <= score <= 3):
            raise where.error(f"expected an integer score 0-3, got {score!r}",
                              field=f"{prefix}eval_scores.{etype.score_key}")
    label = data.get("Overall Qualitative Label")
    rationale = data.get("Evaluator Thought")
    tokens = data.get("efficiency")
    return {
        # An error record ({"error": ..., "eval_id": i}) or a missing score: kept, marked failed.
        "score": score,
        "parse_status": "ok" if score is not None else "failed",
        "label": None if label is None else str(label),
        "rationale": None if rationale is None else str(rationale),
        "judge_tokens": tokens if _is_int(tokens) else None,
    }


def judgments_from_record(record: Any, raw: str, *, line: int, file: str, shown_as: str, etype: EvalType,
                          judge: JudgeIdentity, trajectory_id: str) -> list[Judgment]:
    """One eval line as judgments: one for a single-replicate record, one per replicate for the
    multi-replicate format (``{"eval_id", "replicates": [...], "consistency"}``).

    ``raw_output`` is the whole line exactly as in the file (for replicates too: the line is the
    judge's recorded answer; the replicate index says which part).

    Raises:
        InputError: not an object, ``eval_id`` not equal to the 0-based line, a score that is not an
            integer 0-3, or malformed replicates.
    """
    where = _Where(shown_as, line)
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {_kind(record)}")
    eval_id = record.get("eval_id")
    if eval_id != line or not _is_int(eval_id):
        raise where.error(f"eval_id is {eval_id!r}, expected {line} (the 0-based line number)", field="eval_id")
    if "replicates" in record:
        replicates = record["replicates"]
        if not isinstance(replicates, list) or not replicates:
            raise where.error("expected a non-empty list of replicates", field="replicates")
        parts = [_one_judgment(r, where, f"replicates[{i}]", etype=etype) for i, r in enumerate(replicates)]
    else:
        parts = [_one_judgment(record, where, "", etype=etype)]
    return [
        Judgment(
            id=Judgment.compute_id(trajectory_id=trajectory_id, metric=etype.metric, judge=judge, replicate=i),
            trajectory_id=trajectory_id,
            metric=etype.metric,
            judge=judge,
            replicate=i,
            raw_output=raw,
            source=SourceRef(file=file, line=line),
            **part,
        )
        for i, part in enumerate(parts)
    ]
