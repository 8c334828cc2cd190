"""Per-scenario scores of evaluated models, from the study's results folders and from prefkit runs.

One table comes out, one row per (model, judge, scenario): ``model`` (the folder or agent name, which
says what the model is: ``prefkit.train.names``), ``judge``, ``scenario_index``, ``suite_size`` (the
number of scenarios the split seed shuffles), ``test`` (Boolean: whether the scenario is a test scenario of
the split a ``prefkit eval`` run recorded; null where the study rule decides, as for ToolEmu results and
study-rule evaluations), ``safety`` and ``helpfulness`` (Float64; null when the judgment is missing or failed). A scenario's score is the median of its judge's replicates (the study's
reading for reports, ``extract_score``); several samples of one scenario are averaged.

Accepted inputs (``RESULTS`` of ``prefkit frontier``):

- a folder of ToolEmu run files, searched recursively (``results/*_eval_results``: one folder per model,
  named as the model; or one model's folder). Files are found and named by ``prefkit.sources.toolemu_files``
  and eval lines read by ``judgments_from_record``, the importer's own readers;
- a prefkit run folder (``manifest.json``), e.g. written by ``prefkit eval``: every agent in it is a model.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from prefkit.errors import InputError
from prefkit.pairing.scores import SCORE_METRICS  # safety and Help(Ignore), as the study plotted
from prefkit.records import JudgeIdentity
from prefkit.sources.reading import read_jsonl
from prefkit.sources.toolemu_files import RunFiles, find_run_files
from prefkit.sources.toolemu_records import judgments_from_record
from prefkit.store import MANIFEST, RunStore

TOOLEMU_SUITE_SIZE = 144
"""ToolEmu's cases: the suite the study's split seeds shuffle."""


CASE_SCHEMA = {
    "model": pl.String,
    "judge": pl.String,
    "scenario_index": pl.Int64,
    "suite_size": pl.Int64,
    "test": pl.Boolean,
    "safety": pl.Float64,
    "helpfulness": pl.Float64,
}


def read_case_scores(paths: Sequence[str | Path], *, suite_size: int = TOOLEMU_SUITE_SIZE) -> pl.DataFrame:
    """Every (model, judge, scenario) score under ``paths`` (``CASE_SCHEMA``).

    Args:
        paths: results folders of ToolEmu run files, or prefkit run folders.
        suite_size: the suite size for ToolEmu run files (prefkit runs record their own).

    Raises:
        InputError: a path that is neither, a file that does not follow the run-file format (naming file,
            line and field), or a model found twice with the same judge and scenario in different inputs.
    """
    if not paths:
        raise InputError("give at least one results folder or prefkit run")
    frames = []
    for path in map(Path, paths):
        if (path / MANIFEST).is_file():
            frames.append(_prefkit_run_scores(path))
        elif path.is_dir():
            frames.append(_toolemu_scores(path, suite_size))
        else:
            raise InputError("not a results folder or a prefkit run", path=path)
    cases = pl.concat(frames, how="vertical")
    repeated = cases.group_by("model", "judge", "scenario_index").len().filter(pl.col("len") > 1)
    if repeated.height:
        first = repeated.row(0, named=True)
        raise InputError(f"model {first['model']!r} judged by {first['judge']!r} appears in more than one input for "
                         f"scenario {first['scenario_index']}; give each model's results once")
    return cases.sort("model", "judge", "scenario_index")


# ToolEmu results folders ---------------------------------------------------------------------------


def _case_indices(run: RunFiles, shown: str) -> list[int]:
    indices = []
    for line, (_, record) in enumerate(read_jsonl(run.path(run.trajectory), shown_as=shown), start=1):
        idx = record.get("case_idx") if isinstance(record, dict) else None
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise InputError("expected an integer case index", path=shown, line=line, field="case_idx")
        if not run.name.covers(idx):
            raise InputError(f"case_idx {idx} is outside the file name's range {run.name.range_text}", path=shown,
                             line=line, field="case_idx")
        indices.append(idx)
    return indices


def _line_scores(run: RunFiles, rel: str, etype: Any, n_lines: int) -> list[float | None]:
    """One score per eval line: the median of its scored replicates (``None`` if none parsed)."""
    shown = str(run.path(rel))
    lines = read_jsonl(run.path(rel), shown_as=shown)
    if len(lines) != n_lines:
        raise InputError(f"{len(lines)} eval records for {n_lines} trajectories (they pair up line by line)",
                         path=shown)
    judge = JudgeIdentity(model=run.name.evaluator, backend="toolemu", rubric_version=etype.rubric_version)
    scores: list[float | None] = []
    for line, (raw, record) in enumerate(lines):
        judged = judgments_from_record(record, raw, line=line, file=rel, shown_as=shown, etype=etype, judge=judge,
                                       trajectory_id=f"{rel}:{line}")
        values = [j.score for j in judged if j.score is not None]
        scores.append(float(statistics.median(values)) if values else None)
    return scores


def _toolemu_scores(root: Path, suite_size: int) -> pl.DataFrame:
    rows: dict[str, list[Any]] = {name: [] for name in CASE_SCHEMA}
    for run in find_run_files(root):
        shown = str(run.path(run.trajectory))
        indices = _case_indices(run, shown)
        metrics = {etype.metric: _line_scores(run, rel, etype, len(indices))
                   for etype, rel in run.evals if etype.metric in SCORE_METRICS}
        model = run.agent_name or root.resolve().name  # a single model's folder holds its files directly
        rows["model"] += [model] * len(indices)
        rows["judge"] += [run.name.evaluator] * len(indices)
        rows["scenario_index"] += indices
        rows["suite_size"] += [suite_size] * len(indices)
        rows["test"] += [None] * len(indices)
        for metric in SCORE_METRICS:
            rows[metric] += metrics.get(metric, [None] * len(indices))
    return _per_scenario(pl.DataFrame(rows, schema=CASE_SCHEMA).lazy())


# prefkit runs --------------------------------------------------------------------------------------


def _prefkit_run_scores(path: Path) -> pl.DataFrame:
    from prefkit.judges.replicates import replicate_stats

    store = RunStore(path)
    try:
        manifest = store.manifest()
    except Exception as exc:  # StoreError: not a readable prefkit run
        raise InputError(str(exc), path=path) from exc
    scenarios = store.scan("scenarios").select(scenario_id="id", scenario_index="index")
    evaluation = manifest.get("evaluation") or {}
    size = evaluation.get("suite_size") or scenarios.select(pl.len()).collect().item()
    # An evaluation on a dataset's own (non-study) split: its recorded test scenarios, not the study rule's.
    recorded = evaluation.get("test_scenarios") if (evaluation.get("split") or {}).get("rule", "study") != "study" else None
    scores = (
        replicate_stats(store.scan("judgments").filter(pl.col("metric").is_in(SCORE_METRICS)))
        .select("trajectory_id", "metric", judge=pl.col("judge").struct.field("model"), value="median")
        .collect()
        .pivot(on="metric", index=["trajectory_id", "judge"], values="value")
    )
    for metric in SCORE_METRICS:  # a run judged on one metric only still has both columns
        if metric not in scores.columns:
            scores = scores.with_columns(pl.lit(None, pl.Float64).alias(metric))
    cases = (
        store.scan("trajectories")
        .select(trajectory_id="id", scenario_id="scenario_id", model=pl.col("agent").struct.field("name"))
        .join(scenarios, on="scenario_id", how="left")
        .join(scores.lazy(), on="trajectory_id", how="inner")
        .with_columns(suite_size=pl.lit(size, pl.Int64),
                      test=pl.lit(None, pl.Boolean) if recorded is None else pl.col("scenario_id").is_in(recorded))
    )
    missing = cases.filter(pl.col("scenario_index").is_null()).select(pl.len()).collect().item()
    if missing:
        raise InputError(f"{missing} judged trajectories have scenarios without an index; the split rule needs "
                         "scenario indices", path=path)
    return _per_scenario(cases.select(**{name: pl.col(name).cast(dtype) for name, dtype in CASE_SCHEMA.items()}))


def _per_scenario(cases: pl.LazyFrame) -> pl.DataFrame:
    """One row per (model, judge, scenario): samples of one scenario averaged (nulls left out)."""
    return (
        cases.group_by("model", "judge", "scenario_index", maintain_order=True)
        .agg(pl.col("suite_size").first(), pl.col("test").first(), pl.col("safety").mean(),
             pl.col("helpfulness").mean())
        .select(*CASE_SCHEMA)
        .collect()
    )
