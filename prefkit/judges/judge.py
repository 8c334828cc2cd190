"""The judging loop: every (trajectory, metric, replicate) of a run that has no judgment yet, judged in
waves through one backend, parsed by the one parser, and written back to the run's judgments table.

Cache: a judgment's id is ``Judgment.compute_id(trajectory, metric, judge, replicate)`` where the judge
identity holds the model, the backend and the rubric version (``<rubric>-vN/<answer format>``). A re-run
with the same settings finds every id present and judges nothing; a new metric, more replicates, a
new rubric version or another judge judges only what is missing. Failed judgments are cached too
(re-judged only with ``retry_failed``), so a judge that cannot answer is not asked again and again.

Waves: each wave sends every pending item to the backend, in chunks of ``chunk_size(backend)``
requests (one ``backend.generate`` call each); answers that do not parse go into the next wave,
continued with the judge's own answer and a short reminder of the format, until ``max_attempts``
answers were tried. Then they are stored as ``failed`` (no score), never defaulted.

Resume: after each chunk the judgments it finished are stored at once, atomically, as one shard
``RUN/.judging/part-NNNNNN.parquet`` (O(chunk) per write, never a rewrite of the whole table). A run
killed at any point (SIGKILL included) loses at most the chunk in flight and the items waiting for a
retry; the next run folds the shards into the table, counts their judgments as cached and judges only
the rest. At the end (or on an error or Ctrl-C) the judgments table is written once and the shards
removed. The table's order is canonical, so an interrupted-then-resumed run ends byte-identical to an
uninterrupted one on a deterministic judge: the rows of other judges first, in their stored order, then
the requested (trajectory, metric, replicate) items in request order (trajectories in run order, then
metrics in config order, then replicates).

Failures (``judging_problems``): a metric none of whose requested judgments is usable (every one
``failed``) is an error, exit code 1 in ``prefkit judge``; a metric with some failed is a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefkit.errors import InputError, PrefkitError
from prefkit.judges.logprob import PREFILL, parse_logprob_answer
from prefkit.judges.parse import ParsedAnswer, parse_answer
from prefkit.judges.replicates import agreement_summary, replicate_stats
from prefkit.judges.rubrics import AnswerFormat, Rubric, load_template, rubric
from prefkit.judges.view import judge_messages
from prefkit.progress import NullProgress, Progress
from prefkit.records import JudgeIdentity, Judgment, Message, Metric, Scenario, Toolkit, Trajectory
from prefkit.store import RunStore, StoreError, records_to_frame, write_parquet_atomic

REPLICATES_FILE = "judge_replicates.parquet"
"""Written next to the run's tables: one row per (trajectory, metric, judge) with the replicates'
aggregates and agreement (``prefkit.judges.replicates.replicate_stats``)."""

SHARD_DIR = ".judging"
"""Inside the run folder: the judgments stored chunk by chunk while a judging run is under way."""

DEFAULT_CHUNK = 256
"""Requests per backend call when the backend names no width of its own (vLLM batches each call)."""

SAMPLING_TEMPERATURE = 0.7
"""Temperature used when several replicates are asked for and none is set: identical greedy answers
would make replicates pointless."""


class JudgeConfig(BaseModel):
    """How to judge a run (``prefkit judge`` options; the build recipe's ``judge`` section)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    judge: str
    """The judge model as ``MODEL@backend``, e.g. ``Qwen/Qwen3-32B@vllm`` or ``gpt-5-mini@openai``."""
    metrics: tuple[Metric, ...] = ("safety", "helpfulness")
    replicates: int = Field(default=1, ge=1)
    """Answers per (trajectory, metric); aggregated by median or mean downstream."""
    answer_format: Literal["auto", "text", "json", "logprob"] = "auto"
    """``auto``: JSON when the backend supports structured output, else the fixed text format.
    ``logprob`` needs a backend that returns log probabilities."""
    max_attempts: int = Field(default=3, ge=1)
    """Answers tried per item (the first included) before it is stored as failed."""
    temperature: float | None = Field(default=None, ge=0)
    """``None``: greedy (0) with one replicate, ``SAMPLING_TEMPERATURE`` with several."""
    max_tokens: int | None = Field(default=1024, ge=1)
    """Most tokens per answer (logprob judging always asks for 2)."""
    seed: int | None = 0
    """Base seed; replicate ``r`` is sampled with ``seed + r``."""
    top_logprobs: int = Field(default=20, ge=1, le=20)
    retry_failed: bool = False
    """Judge again the items whose cached judgment failed."""
    backend_options: dict[str, Any] = Field(default_factory=dict)
    """Passed to ``create_backend`` (e.g. ``base_url``, ``batch_size``)."""

    @field_validator("judge")
    @classmethod
    def _spec_form(cls, value: str) -> str:
        from prefkit.backends.registry import split_model_spec

        try:
            split_model_spec(value)  # the one MODEL@backend parser; the backend itself is checked up front
        except InputError as exc:
            raise ValueError(exc.message) from None
        return value


def make_judge_config(*, metrics: str | Sequence[str] = ("safety", "helpfulness"),
                      options: Sequence[str] = (), **fields: Any) -> JudgeConfig:
    """A ``JudgeConfig`` from command-line values: ``metrics`` may be comma-separated text and
    ``options`` are ``KEY=VALUE`` backend options (values read as JSON when they parse, else text).

    Raises:
        InputError: an invalid field (the message names it) or a malformed option.
    """
    from prefkit.backends.registry import check_model_spec, parse_backend_options
    from prefkit.errors import validation_input_error

    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    for metric in metrics:
        rubric(metric)
    backend_options = parse_backend_options(options, field="option")
    # the spec, the backend's packages and options, the model's files: all before any trajectory is judged
    check_model_spec(str(fields.get("judge", "")), backend_options, field="judge", options_field="option")
    try:
        return JudgeConfig(metrics=tuple(metrics), backend_options=backend_options, **fields)
    except ValidationError as exc:
        raise validation_input_error(exc, JudgeConfig, what="judge") from None


def open_run(run: RunStore | str | Path) -> RunStore:
    """``run`` as a store, checked to be a prefkit run.

    Raises:
        InputError: the folder is missing or not a prefkit run.
    """
    store = run if isinstance(run, RunStore) else RunStore(run)
    try:
        store.manifest()
    except StoreError as exc:
        raise InputError(str(exc)) from exc
    return store


class JudgeSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    judges: dict[str, JudgeIdentity]
    """The judge identity per metric (each metric has its own rubric version)."""
    answer_format: AnswerFormat
    requested: int
    """(trajectory, metric, replicate) items the config asks for."""
    cached: int
    judged: int
    by_status: dict[str, int]
    """Status counts of the judgments made in this call."""
    waves: int
    """``backend.generate`` calls made (one per wave)."""
    replicate_agreement: dict[str, float | int | None]
    by_metric: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per metric, the status counts of EVERY requested item (cached ones included): what the run now
    holds for this config. ``judging_problems`` reads it."""


class JudgingFailed(PrefkitError):
    """Judging ran, but for some metric every requested judgment failed: nothing usable came out
    (exit code 1). What was judged is stored."""

    exit_code = 1


def judging_problems(summary: JudgeSummary, run: str | Path) -> list[str]:
    """Warnings for the metrics where some requested judgments failed.

    The rule: a metric whose requested judgments ALL failed (e.g. 12 of 12) yields nothing usable and
    raises ``JudgingFailed`` (``prefkit judge`` exits 1); one where only some failed is a warning (exit
    0), since the others can be paired. Either way everything judged stays stored.

    Raises:
        JudgingFailed: naming each such metric, its judge, how many failed, and what to do next.
    """
    hint = (f"the judge's raw answers are stored in {Path(run) / 'judgments.parquet'} (column raw_output): "
            f"`prefkit rescore {run}` re-parses them, `prefkit judge ... --retry-failed` asks the judge again")
    errors, warnings = [], []
    for metric, counts in summary.by_metric.items():
        total, failed = sum(counts.values()), counts.get("failed", 0)
        if not failed:
            continue
        judge = summary.judges[metric]
        what = (f"{failed} of {total} {metric} judgments by {judge.model}@{judge.backend} "
                f"({judge.rubric_version}) failed")
        (errors if failed == total else warnings).append(what)
    if errors:
        unusable = "that metric" if len(errors) == 1 else "those metrics"
        also = "".join(f"; also {w}" for w in warnings)
        raise JudgingFailed(f"{'; '.join(errors)} - nothing usable for {unusable}{also}; {hint}")
    return [f"{w}; {hint}" for w in warnings]


JUDGING_TASK = "judging"
"""The progress task of a judging run (``prefkit.progress``; unit: judgments, cached ones counted done)."""


@dataclass
class _Item:
    trajectory: Trajectory
    metric: Metric
    replicate: int
    judge: JudgeIdentity
    messages: tuple[Message, ...]
    attempts: int = 0
    tokens: int | None = None
    last: ParsedAnswer | None = None
    raw: str = ""
    distribution: tuple[float, ...] | None = None
    history: list[Message] = field(default_factory=list)


def resolve_answer_format(config: JudgeConfig, backend: Any) -> AnswerFormat:
    """The answer format for ``config`` on ``backend``.

    Raises:
        InputError: logprob judging on a backend without log probabilities.
    """
    if config.answer_format == "auto":
        return "json" if backend.supports("structured_output") else "text"
    if config.answer_format == "logprob" and not backend.supports("logprobs"):
        raise InputError(f"the {backend.name} backend returns no log probabilities; use --answer-format text or json",
                         field="answer_format")
    return config.answer_format


def uses_prefill(backend: Any, answer_format: AnswerFormat) -> bool:
    """Logprob judging begins the judge's answer for it where the backend can continue a message."""
    return answer_format == "logprob" and backend.supports("prefill")


def judge_identity(config: JudgeConfig, backend: Any, rub: Rubric, answer_format: AnswerFormat) -> JudgeIdentity:
    version = rub.identity_version(answer_format) + ("+prefill" if uses_prefill(backend, answer_format) else "")
    return JudgeIdentity(model=backend.model, backend=backend.name, rubric_version=version)


def _json_schema(rub: Rubric) -> dict[str, Any]:
    """The schema structured output enforces: the rubric's labels and scores only."""
    return {
        "title": f"{rub.metric}_verdict",
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "label": {"type": "string", "enum": [label.name for label in rub.labels]},
            "score": {"type": "integer", "enum": sorted({label.score for label in rub.labels})},
        },
        "required": ["rationale", "label", "score"],
        "additionalProperties": False,
    }


def _generate_config(config: JudgeConfig, rub: Rubric, answer_format: AnswerFormat, replicate: int):
    from prefkit.backends.base import GenerateConfig

    temperature = config.temperature
    if temperature is None:
        temperature = 0.0 if config.replicates == 1 else SAMPLING_TEMPERATURE
    settings: dict[str, Any] = {
        "n": 1,
        "temperature": temperature,
        "max_tokens": config.max_tokens,
        "seed": None if config.seed is None else config.seed + replicate,
    }
    if answer_format == "json":
        settings["response_format"] = _json_schema(rub)
    if answer_format == "logprob":
        settings |= {"max_tokens": 2, "logprobs": True, "top_logprobs": config.top_logprobs}
    return GenerateConfig(**settings)


def chunk_size(backend: Any) -> int:
    """Requests per ``backend.generate`` call within a wave; the judgments of each call are stored when
    it returns, so this is the most a killed run loses.

    The transformers backend's ``batch_size`` (it runs one batch at a time anyway, so nothing is lost);
    4 x an OpenAI-compatible backend's ``max_concurrency`` (enough that the requests in flight are
    rarely held up at a chunk's end); otherwise ``DEFAULT_CHUNK``.
    """
    batch = getattr(backend, "batch_size", None)
    if isinstance(batch, int) and batch > 0:
        return batch
    concurrency = getattr(backend, "max_concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        return 4 * concurrency
    return DEFAULT_CHUNK


class _Shards:
    """The judgments stored chunk by chunk during a judging run: Parquet shards in ``RUN/.judging``."""

    def __init__(self, store: RunStore) -> None:
        self.folder = store.path / SHARD_DIR

    def paths(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    def merged_into(self, table: pl.DataFrame) -> pl.DataFrame:
        """``table`` with every stored shard's judgments (a judgment stored again replaces the older)."""
        paths = self.paths()
        if not paths:
            return table
        stored = pl.concat([pl.read_parquet(p) for p in paths]).unique(subset="id", keep="last", maintain_order=True)
        return pl.concat([table.filter(~pl.col("id").is_in(stored["id"].implode())), stored])

    def append(self, items: Sequence[_Item]) -> None:
        if not items:
            return
        paths = self.paths()
        number = int(paths[-1].stem.split("-")[1]) + 1 if paths else 0
        self.folder.mkdir(exist_ok=True)
        frame = records_to_frame([_judgment(i) for i in items], Judgment)
        write_parquet_atomic(frame, self.folder / f"part-{number:06d}.parquet")

    def clear(self) -> None:
        for path in self.paths():
            path.unlink()
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def _retry_message(reason: str | None) -> Message:
    return Message(role="user", content=load_template("retry").substitute(reason=reason or "no verdict found"))


def _load_inputs(store: RunStore) -> tuple[list[Trajectory], dict[str, Scenario], list[Toolkit], pl.DataFrame]:
    trajectories = store.read("trajectories")
    if not trajectories:
        raise InputError(f"{store.path}: the run holds no trajectories to judge", path=store.path)
    scenarios = {s.id: s for s in store.read("scenarios")}
    missing = sorted({t.scenario_id for t in trajectories} - set(scenarios))
    if missing:
        raise InputError(f"{store.path}: trajectories name scenarios the run lacks: {', '.join(missing[:5])}",
                         path=store.path, field="scenario_id")
    return trajectories, scenarios, store.read("toolkits"), store.frame("judgments")  # type: ignore[return-value]


def judge_run(run: RunStore | str | Path, config: JudgeConfig, *, backend: Any = None,
              progress: Progress | None = None) -> JudgeSummary:
    """Judge every trajectory of ``run`` on ``config.metrics`` (only what the cache lacks).

    Args:
        run: the run store (or its folder); its judgments table is rewritten in place (in between, the
            judgments are stored chunk by chunk in ``RUN/.judging``; see the module notes).
        config: the judge, metrics, replicates and answer format.
        backend: a ready backend to use instead of ``create_backend(config.judge)`` (it is not closed).
        progress: told ``start("judging", total, done=cached)``, ``advance(n)`` as judgments are stored,
            ``finish`` (``prefkit.progress``).

    Raises:
        InputError: a bad spec, an unknown metric, a run without trajectories, logprob judging on a
            backend without log probabilities.
    """
    from prefkit.backends.base import ChatRequest, generate_sync

    store = open_run(run)
    progress = progress or NullProgress()
    for metric in config.metrics:
        rubric(metric)
    trajectories, scenarios, toolkits, existing = _load_inputs(store)
    shards = _Shards(store)
    resumed = bool(shards.paths())
    existing = shards.merged_into(existing)  # what a killed run had stored counts as cached
    finished: list[_Item] = []
    order: list[str] = []  # every requested id, in request order (the table's canonical order)
    own_backend = backend is None
    if own_backend:
        from prefkit.backends.registry import create_backend

        backend = create_backend(config.judge, **config.backend_options)
    try:
        answer_format = resolve_answer_format(config, backend)
        identities = {m: judge_identity(config, backend, rubric(m), answer_format) for m in config.metrics}
        prefill = (Message(role="assistant", content=PREFILL),) if uses_prefill(backend, answer_format) else ()
        done = set(
            existing.filter(pl.col("parse_status") != "failed")["id"].to_list() if config.retry_failed
            else existing["id"].to_list()
        )
        items: list[_Item] = []
        for trajectory in trajectories:
            for metric in config.metrics:
                judge = identities[metric]
                for replicate in range(config.replicates):
                    key = Judgment.compute_id(trajectory_id=trajectory.id, metric=metric, judge=judge,
                                              replicate=replicate)
                    order.append(key)
                    if key in done:
                        continue
                    messages = judge_messages(trajectory, scenarios[trajectory.scenario_id], toolkits,
                                              metric=metric, answer_format=answer_format)
                    items.append(_Item(trajectory=trajectory, metric=metric, replicate=replicate,
                                       judge=judge, messages=messages))
        pending = items
        waves = 0
        size = chunk_size(backend)
        progress.start(JUDGING_TASK, len(order), done=len(order) - len(items), unit="judgments")
        while pending:
            waves += 1
            retry: list[_Item] = []
            for start in range(0, len(pending), size):
                chunk = pending[start: start + size]
                requests = [
                    ChatRequest(messages=(*item.messages, *item.history, *prefill),
                                continue_final_message=bool(prefill),
                                config=_generate_config(config, rubric(item.metric), answer_format, item.replicate))
                    for item in chunk
                ]
                answers = generate_sync(backend, requests)
                done_now: list[_Item] = []
                for item, completions in zip(chunk, answers, strict=True):
                    completion = completions[0]
                    _record_attempt(item, completion, answer_format)
                    if (item.last is not None and item.last.parse_status == "failed"
                            and item.attempts < config.max_attempts):
                        answered = "".join(m.content for m in prefill) + completion.text
                        item.history += [Message(role="assistant", content=answered),
                                         _retry_message(item.last.reason)]
                        retry.append(item)
                    else:
                        done_now.append(item)
                shards.append(done_now)  # stored before anything else happens: a kill now loses none of them
                finished += done_now
                progress.advance(JUDGING_TASK, len(done_now))
            pending = retry
        progress.finish(JUDGING_TASK)
    finally:
        if own_backend:
            backend.close()
        if finished or resumed:  # also on an error or Ctrl-C: the table holds everything stored
            _write(store, existing, finished, order)
            shards.clear()
    made = [_judgment(item) for item in finished]
    stats = replicate_stats(store.scan("judgments")).collect()
    write_parquet_atomic(stats, store.path / REPLICATES_FILE)
    by_status = {status: sum(j.parse_status == status for j in made) for status in ("ok", "repaired", "failed")}
    return JudgeSummary(
        judges=identities, answer_format=answer_format, requested=len(order),
        cached=len(order) - len(items), judged=len(made), by_status=by_status, waves=waves,
        replicate_agreement=agreement_summary(stats), by_metric=_status_by_metric(store, order),
    )


def _status_by_metric(store: RunStore, order: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = (store.scan("judgments").filter(pl.col("id").is_in(list(order)))
              .group_by("metric", "parse_status").len().sort("metric", "parse_status").collect())
    out: dict[str, dict[str, int]] = {}
    for metric, status, n in counts.iter_rows():
        out.setdefault(metric, {})[status] = n
    return out


def _record_attempt(item: _Item, completion: Any, answer_format: AnswerFormat) -> None:
    item.attempts += 1
    if completion.prompt_tokens is not None or completion.completion_tokens is not None:
        item.tokens = (item.tokens or 0) + (completion.prompt_tokens or 0) + (completion.completion_tokens or 0)
    item.raw = completion.text
    if answer_format == "logprob":
        item.last, item.distribution = parse_logprob_answer(completion)
    else:
        item.last = parse_answer(completion.text, item.metric)


def _judgment(item: _Item) -> Judgment:
    parsed = item.last
    assert parsed is not None
    return Judgment(
        id=Judgment.compute_id(trajectory_id=item.trajectory.id, metric=item.metric, judge=item.judge,
                               replicate=item.replicate),
        trajectory_id=item.trajectory.id,
        metric=item.metric,
        score=parsed.score,
        label=parsed.label,
        rationale=parsed.rationale,
        raw_output=item.raw,
        judge=item.judge,
        replicate=item.replicate,
        parse_status=parsed.parse_status,
        attempts=item.attempts,
        distribution=item.distribution,
        judge_tokens=item.tokens,
    )


def _write(store: RunStore, existing: pl.DataFrame, finished: Sequence[_Item], order: Sequence[str]) -> None:
    """The judgments table in its canonical order: the rows of other judges (and items not requested
    now) as stored, then the requested items' rows in request order; a re-judged item's new row
    replaces its old one."""
    made = records_to_frame([_judgment(i) for i in finished], Judgment)
    table = pl.concat([existing.filter(~pl.col("id").is_in(made["id"].implode())), made])
    position = pl.DataFrame({"id": list(order), "_position": range(len(order))},
                            schema={"id": pl.String, "_position": pl.Int64})
    requested = table.join(position, on="id", how="inner").sort("_position").drop("_position")
    others = table.filter(~pl.col("id").is_in(position["id"].implode()))
    store.write_frame("judgments", pl.concat([others, requested]))

