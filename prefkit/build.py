"""``prefkit build``: the stage graph from a recipe to an audited, documented (and published) dataset.

Stages run in order; each is cached by a key that hashes its part of the recipe and the keys of the
stages it reads from, so a re-run skips what is done and a changed section reruns only its stage and the
ones after it::

    source ─► judge ─► pair[dataset] ─► validate[dataset] ─► audit ─► card ─► publish

Layout of the output folder ``OUT`` (everything but ``.prefkit/`` is what goes to the Hub)::

    OUT/README.md                                  the dataset card
    OUT/data/<dataset>/<split>-00000-of-00001.parquet
    OUT/plots/<dataset>/*.png                      audit plots
    OUT/audit.json                                 the audit of every dataset
    OUT/.prefkit/run/                              the run store (scenarios, trajectories, judgments)
    OUT/.prefkit/pairs/<dataset>/                  the pairer's output
    OUT/.prefkit/validated/<dataset>/              rows kept by validation
    OUT/.prefkit/audit/<dataset>/                  each dataset's audit and plots (copied to OUT/plots)
    OUT/.prefkit/stages/<stage>.json               stage markers: the key a stage's outputs were made with

Safe to kill: a stage writes each output atomically (temporary file or folder, then rename) and writes its
marker last, so a killed stage has no marker and simply runs again, overwriting whatever it had written.
Stages are deterministic (sampled rollouts too: ``prefkit.rollout.seeds``), so an interrupted-then-resumed
build ends byte-identical to an uninterrupted one.

What a failed, killed or interrupted (Ctrl-C) build leaves in ``OUT``:

- the stage cache ``OUT/.prefkit/`` is always kept: finished stages, and the trajectories and judgments
  a running source or judge stage had already stored, so the same command resumes and nothing already
  computed is lost;
- the published layout (``README.md``, ``data/``, ``plots/``, ``prefkit.json``) is written only by the
  card stage, the last before publishing: a folder without a ``README.md`` is not a finished build.
  ``audit.json`` comes one stage earlier, from the audit, so a build failed by an audit threshold leaves
  the report that says why;
- a build that fails before anything was computed (no stage finished, no trajectory or judgment kept)
  removes the ``OUT`` folder if it created it, so a typo leaves no empty folder behind.

Progress (``prefkit.progress``): task ``build`` counts the stages; each stage is a task of its own
(finished with detail ``done`` or ``cached``), and the source and judge stages report ``rollout`` and
``judging`` inside them.

New stages (generation, judging) plug in by adding a ``Stage`` to ``stages_for``; no other stage changes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.errors import PrefkitError
from prefkit.faults import FAULT_ENV as FAULT_ENV  # the test hook: see prefkit.faults
from prefkit.faults import fault_point
from prefkit.progress import NullProgress, Progress
from prefkit.recipe import Recipe, check_recipe_inputs, recipe_yaml
from prefkit.records import SCHEMA_VERSION, content_hash
from prefkit.store import RunStore, file_sha256, tree_sha256, write_json_atomic

WORK_DIR = ".prefkit"
BUILD_TASK = "build"
"""The progress task of the whole build (unit: stages)."""


class BuildFailed(PrefkitError):
    """A build that ran but did not pass (an audit threshold): exit code 1."""

    exit_code = 1


@dataclass
class BuildContext:
    recipe: Recipe
    out: Path
    recipe_text: str
    progress: Progress = field(default_factory=NullProgress)
    keys: dict[str, str] = field(default_factory=dict)
    """Stage name -> the key its outputs were made with (filled as stages run or are found cached)."""
    results: dict[str, Any] = field(default_factory=dict)
    """Stage name -> its summary (what the marker stores)."""

    @property
    def work(self) -> Path:
        return self.out / WORK_DIR

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    def pairs_dir(self, dataset: str) -> Path:
        return self.work / "pairs" / dataset

    def validated_dir(self, dataset: str) -> Path:
        return self.work / "validated" / dataset

    @property
    def audit_dir(self) -> Path:
        return self.work / "audit"


@dataclass(frozen=True)
class Stage:
    """One cached step: ``key`` hashes everything its output depends on; ``run`` makes the output and
    returns a JSON-able summary; ``outputs`` lists the paths that must exist for a cached result to count."""

    name: str
    key: Callable[[BuildContext], Any]
    run: Callable[[BuildContext], dict[str, Any]]
    outputs: Callable[[BuildContext], list[Path]]


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def _fresh_tmp(target: Path) -> Path:
    tmp = target.parent / f".{target.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


class _Watch:
    """Passes progress on, and notes whether any item (a trajectory, a judgment) was kept; fires the
    ``source`` fault point once the first trajectories are written."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.kept = False

    def start(self, task: str, total: int | None = None, *, done: int = 0, unit: str = "items") -> None:
        self.inner.start(task, total, done=done, unit=unit)

    def advance(self, task: str, n: int = 1) -> None:
        self.inner.advance(task, n)
        if task != BUILD_TASK and n:
            self.kept = True
            if task == "rollout":
                fault_point("source")

    def finish(self, task: str, detail: str = "") -> None:
        self.inner.finish(task, detail)


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------


def _source_key(ctx: BuildContext) -> Any:
    src = ctx.recipe.source
    if src.kind == "generate":
        from prefkit.rollout import generate_source_key

        return generate_source_key(src)
    if src.kind in ("inspect", "chat"):  # logs of agents run elsewhere (prefkit.sources.agent_logs)
        return src.source_key()
    from prefkit.sources.toolemu import runs_sha256

    runs, cases, toolkits = Path(src.path), Path(src.cases), Path(src.toolkits)  # checked by check_recipe_inputs
    return {
        "section": src.model_dump(mode="json", exclude={"path", "cases", "toolkits"}),
        "runs": runs_sha256(runs),
        "cases": file_sha256(cases),
        "toolkits": file_sha256(toolkits),
    }


def _source_run(ctx: BuildContext) -> dict[str, Any]:
    src = ctx.recipe.source
    if src.kind == "generate":
        from prefkit.rollout import generate_source_run

        # Finished trajectories are written as they finish, so a killed stage resumes where it stopped.
        generate_source_run(src, ctx.run_dir, progress=ctx.progress)
        return {"counts": RunStore(ctx.run_dir).counts()}

    if src.kind in ("inspect", "chat"):
        from prefkit.sources.agent_logs import write_agent_log_import

        store = write_agent_log_import(src.read(), ctx.run_dir, force=True)
        fault_point("source")
        return {"counts": store.counts()}

    from prefkit.sources.toolemu import import_toolemu_runs, write_toolemu_import

    result = import_toolemu_runs(Path(src.path), cases_path=Path(src.cases), toolkits_path=Path(src.toolkits))
    store = write_toolemu_import(result, ctx.run_dir, force=True)
    fault_point("source")  # outputs written, marker not yet: the re-run must redo and overwrite them
    return {"counts": store.counts()}


def _judge_key(ctx: BuildContext) -> Any:
    return {"source": ctx.keys["source"], "judges": [j.model_dump(mode="json") for j in ctx.recipe.judges]}


def _judge_run(ctx: BuildContext) -> dict[str, Any]:
    from prefkit.judges.judge import judge_run

    summaries = {}
    for config in ctx.recipe.judges:
        # judge_run stores each chunk's judgments as it finishes (RUN/.judging shards) and skips stored
        # judgments, so a killed judge stage redoes only what it had not stored.
        summary = judge_run(ctx.run_dir, config, progress=ctx.progress)
        summaries[config.judge] = summary.model_dump(mode="json")
        fault_point("judge")
    return {"judges": summaries}


def _upstream(ctx: BuildContext) -> str:
    """The key of the stage whose run the pairer reads: the judges' when there are any, else the source's."""
    return ctx.keys["judge"] if "judge" in ctx.keys else ctx.keys["source"]


def _pair_key(dataset: str) -> Callable[[BuildContext], Any]:
    def key(ctx: BuildContext) -> Any:
        spec = next(d for d in ctx.recipe.datasets if d.name == dataset)
        return {"run": _upstream(ctx), "config": spec.pair_config(ctx.recipe.split).model_dump(mode="json")}

    return key


def _pair_run(dataset: str) -> Callable[[BuildContext], dict[str, Any]]:
    def run(ctx: BuildContext) -> dict[str, Any]:
        from prefkit.pairing import build_pairs, write_pairs

        spec = next(d for d in ctx.recipe.datasets if d.name == dataset)
        config = spec.pair_config(ctx.recipe.split)
        store = RunStore(ctx.run_dir)
        result = build_pairs(store, config)
        counts = write_pairs(result, store, config, ctx.pairs_dir(dataset), force=True)
        fault_point("pair")
        return {"counts": counts}

    return run


def _validate_key(dataset: str) -> Callable[[BuildContext], Any]:
    def key(ctx: BuildContext) -> Any:
        section = ctx.recipe.validation.model_dump(mode="json")
        tok = ctx.recipe.validation.tokenizer
        if tok is not None:  # a folder: check_recipe_inputs made sure
            tok_path = Path(tok)
            section["tokenizer"] = tree_sha256(tok_path, [p for p in tok_path.rglob("*") if p.is_file()])
        return {"pair": ctx.keys[f"pair:{dataset}"], "validation": section}

    return key


def _validate_run(dataset: str) -> Callable[[BuildContext], dict[str, Any]]:
    def run(ctx: BuildContext) -> dict[str, Any]:
        from prefkit.pairing.pairs import present_split_files
        from prefkit.pairing.validate import summarize_reports, validate_pairs_path

        section = ctx.recipe.validation
        target = ctx.validated_dir(dataset)
        tmp = _fresh_tmp(target)
        src = ctx.pairs_dir(dataset)
        if section.tokenizer is None:
            # No tokenizer: the rows go through unchanged (the pairer already checked their shape).
            tmp.mkdir(parents=True)
            for file in present_split_files(src).values():  # a split without rows has no file
                shutil.copyfile(file, tmp / file.name)
            summary: dict[str, Any] = {"checked": False, "dropped_too_long": 0, "invalid": 0}
        else:
            reports = validate_pairs_path(src, tokenizer=section.tokenizer, max_length=section.max_length, out=tmp)
            summary = {"checked": True, **summarize_reports(reports)}
            if summary["invalid"]:
                first = summary["invalid_rows"][0]
                raise BuildFailed(
                    f"validation: {summary['invalid']} invalid rows in dataset {dataset!r} "
                    f"(first: {first['file']} row {first['index']}: {first['reason']})"
                )
        fault_point("validate")
        write_json_atomic(tmp / "validation.json", summary)
        _replace_dir(tmp, target)
        return summary

    return run


def _audit_key(ctx: BuildContext) -> Any:
    return {
        "validate": {d.name: ctx.keys[f"validate:{d.name}"] for d in ctx.recipe.datasets},
        "audit": ctx.recipe.audit.model_dump(mode="json"),
    }


def _audit_run(ctx: BuildContext) -> dict[str, Any]:
    from prefkit.audit import run_audit

    store = RunStore(ctx.run_dir)
    reports: dict[str, Any] = {}
    violations: list[str] = []
    warnings: list[str] = []
    target = ctx.audit_dir
    tmp = _fresh_tmp(target)
    for i, spec in enumerate(ctx.recipe.datasets):
        files = ctx.results.get(f"validate:{spec.name}", {}).get("files", {})
        dropped = {split: files.get(f"{split}.parquet", {}).get("dropped_too_long", 0) for split in ("train", "test")}
        outcome = run_audit(ctx.pairs_dir(spec.name), run=store, out_dir=tmp / spec.name,
                            thresholds=ctx.recipe.audit, dropped_by_validation=dropped)
        reports[spec.name] = outcome.report.model_dump(mode="json")
        violations += [f"{spec.name}: {v.message}" for v in outcome.violations]
        warnings += [f"{spec.name}: {w}" for w in outcome.warnings]
        if i == 0:
            fault_point("audit")
    _replace_dir(tmp, target)
    write_json_atomic(ctx.out / "audit.json", {"datasets": reports, "violations": violations, "warnings": warnings})
    return {"violations": violations, "warnings": warnings}


def _card_key(ctx: BuildContext) -> Any:
    return {"audit": ctx.keys["audit"], "recipe": ctx.recipe.model_dump(mode="json")}


def _card_run(ctx: BuildContext) -> dict[str, Any]:
    import polars as pl

    from prefkit.pairing.pairs import PAIR_SPLITS, present_split_files
    from prefkit.pairing.split import split_scenarios
    from prefkit.publish.card import CardContext, CardDataset, describe_rule, render_card
    from prefkit.publish.layout import ScenarioSplit, config_fingerprint, write_dataset_dir

    recipe = ctx.recipe
    # The recipe splits every dataset alike; prefkit.json records it so training checks leakage by it.
    suite = RunStore(ctx.run_dir).read("scenarios")
    split = split_scenarios(suite, recipe.split.rule, recipe.split.seed, recipe.split.test_fraction)
    scenario_split = ScenarioSplit(
        rule=recipe.split.rule, seed=recipe.split.seed, suite_size=len(suite),
        test_fraction=recipe.split.test_fraction if recipe.split.rule == "fraction" else None,
        test_scenarios=tuple(sorted(s for s, side in split.items() if side == "test")))
    audit = json.loads((ctx.out / "audit.json").read_text(encoding="utf-8"))["datasets"]
    configs: dict[str, dict[str, Path]] = {}
    plots: dict[str, Path] = {}
    card_datasets = []
    for spec in recipe.datasets:
        pairing = json.loads((ctx.pairs_dir(spec.name) / "pairing.json").read_text(encoding="utf-8"))
        configs[spec.name] = present_split_files(ctx.validated_dir(spec.name))  # splits with rows
        names = {p.name: p for p in sorted((ctx.audit_dir / spec.name).rglob("*.png"))}
        plots.update(names)
        card_datasets.append(CardDataset(
            name=spec.name, strategy=spec.strategy, rule=describe_rule(pairing["config"]),
            counts={split: pl.scan_parquet(path).select(pl.len()).collect().item() if path else 0
                    for split, path in ((s, configs[spec.name].get(s)) for s in PAIR_SPLITS)},
            rendering=spec.rendering, fingerprint=config_fingerprint(spec.name, configs[spec.name]),
            audit=audit.get(spec.name), plots=tuple(f"plots/{n}" for n in names),
        ))
    store = RunStore(ctx.run_dir)
    trajectories = store.scan("trajectories")
    agents = trajectories.select(pl.col("agent").struct.field("name").unique().sort()).collect().to_series()
    judges = store.scan("judgments").select(
        pl.col("judge").struct.field("model").unique().sort()).collect().to_series()
    card = render_card(CardContext(
        pretty_name=recipe.pretty_name or recipe.name, license=recipe.publish.license,
        datasets=tuple(card_datasets), recipe_yaml=recipe_yaml(recipe), agents=tuple(agents.to_list()),
        judges=tuple(judges.to_list()), repo_id=recipe.publish.repo_id,
    ))
    fault_point("card")
    written = write_dataset_dir(ctx.out, configs, card_text=card, plots=plots,
                                scenario_split={name: scenario_split for name in configs})
    return {"files": len(written)}


def _publish_key(ctx: BuildContext) -> Any:
    return {"card": ctx.keys["card"], "publish": ctx.recipe.publish.model_dump(mode="json")}


def _publish_run(ctx: BuildContext) -> dict[str, Any]:
    from prefkit.publish.hub import publish_dataset

    section = ctx.recipe.publish
    fault_point("publish")
    result = publish_dataset(ctx.out, section.repo_id, private=section.private, revision=section.revision,
                             force=section.force)
    return {"repo_id": section.repo_id, "commit": result.commit_oid, "uploaded": len(result.uploaded)}


def stages_for(recipe: Recipe) -> list[Stage]:
    """The recipe's stage graph, in execution order."""
    stages = [Stage("source", _source_key, _source_run, lambda c: [c.run_dir / "manifest.json"])]
    if recipe.judges:
        stages.append(Stage("judge", _judge_key, _judge_run, lambda c: [c.run_dir / "judgments.parquet"]))
    for spec in recipe.datasets:
        name = spec.name
        stages.append(Stage(f"pair:{name}", _pair_key(name), _pair_run(name),
                            lambda c, n=name: [c.pairs_dir(n) / "pairing.json"]))
    for spec in recipe.datasets:
        name = spec.name
        stages.append(Stage(f"validate:{name}", _validate_key(name), _validate_run(name),
                            lambda c, n=name: [c.validated_dir(n) / "validation.json"]))
    stages.append(Stage("audit", _audit_key, _audit_run, lambda c: [c.out / "audit.json"]))
    stages.append(Stage("card", _card_key, _card_run, lambda c: [c.out / "README.md"]))
    if recipe.publish.repo_id:
        stages.append(Stage("publish", _publish_key, _publish_run, lambda c: []))
    return stages


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def _marker(ctx: BuildContext, stage: str) -> Path:
    return ctx.work / "stages" / f"{stage.replace(':', '__')}.json"


def run_build(recipe: Recipe, *, out: Path | None = None, recipe_text: str = "",
              progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) the build; returns a summary: per stage whether it ran or was cached, and counts.

    ``progress`` is told the ``build`` task (stages), each stage's task and the ``rollout`` and
    ``judging`` tasks inside them. What a failed build leaves behind: see the module docstring.

    Raises:
        InputError: an input the recipe names is missing or invalid (exit code 2).
        BuildFailed: an audit threshold or validation failed (exit code 1); the audit is still written.
    """
    check_recipe_inputs(recipe)  # every model, path and option, before the first (expensive) stage
    watch = _Watch(progress or NullProgress())
    ctx = BuildContext(recipe=recipe, out=Path(out or recipe.output_dir), recipe_text=recipe_text or recipe_yaml(recipe),
                       progress=watch)
    created = not ctx.out.exists()
    ctx.work.mkdir(parents=True, exist_ok=True)
    stages = stages_for(recipe)
    watch.start(BUILD_TASK, len(stages), unit="stages")
    try:
        summary = _run_stages(ctx, stages)
    except BaseException:
        if created and not watch.kept and not any((ctx.work / "stages").glob("*.json")):
            shutil.rmtree(ctx.out, ignore_errors=True)  # nothing computed: leave no empty folder behind
        raise
    watch.finish(BUILD_TASK)
    return summary


def _run_stages(ctx: BuildContext, stages: list[Stage]) -> dict[str, Any]:
    recipe = ctx.recipe
    summary: dict[str, Any] = {"out": str(ctx.out), "stages": {}}
    for stage in stages:
        # The record format's version is part of every key: a cache made by a prefkit that stored other
        # records (e.g. other message renderings) is made again, never reused.
        key = content_hash({"stage": stage.name.split(":")[0], "schema_version": SCHEMA_VERSION,
                            "input": stage.key(ctx)}, length=32)
        marker = _marker(ctx, stage.name)
        cached = None
        if marker.exists():
            data = json.loads(marker.read_text(encoding="utf-8"))
            if data.get("key") == key and all(p.exists() for p in stage.outputs(ctx)):
                cached = data
        if cached is not None:
            result, status = cached["summary"], "cached"
        else:
            ctx.progress.start(stage.name)
            marker.unlink(missing_ok=True)
            result = stage.run(ctx)
            write_json_atomic(marker, {"key": key, "summary": result})
            status = "done"
        ctx.keys[stage.name] = key
        ctx.results[stage.name] = result
        summary["stages"][stage.name] = status
        ctx.progress.finish(stage.name, status)
        ctx.progress.advance(BUILD_TASK)
        if stage.name == "audit" and result.get("violations"):
            raise BuildFailed("audit thresholds failed: " + "; ".join(result["violations"]))
    summary["datasets"] = {
        d.name: ctx.results[f"pair:{d.name}"]["counts"] for d in recipe.datasets
    }
    summary["warnings"] = ctx.results["audit"].get("warnings", [])
    summary["load"] = _load_line(ctx.out, [d.name for d in recipe.datasets])
    return summary


def _load_line(out: Path, names: list[str]) -> str | None:
    """How to load the built folder (its first config with rows: the card's default), as the CLI's closing
    line prints it; None when no config has rows."""
    from prefkit.publish.layout import load_command, read_dataset_manifest

    laid_out = (read_dataset_manifest(out) or {}).get("configs", {})
    first = next((name for name in names if name in laid_out), None)
    return load_command(out, first) if first else None
