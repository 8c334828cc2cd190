"""The ``prefkit`` command line. Each command parses its arguments, calls one library function and
prints; the work lives in the library. Nothing imports this module.

Errors: a ``PrefkitError`` (bad input, bad usage) prints one line to stderr and exits with code 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from prefkit.errors import PrefkitError


class _HelpLayout:
    """How prefkit's --help looks: arguments as ``RUN`` / ``[OUT]`` / ``RESULTS...`` in the usage line (typer
    writes ``{run}``) and flags without a value column (typer's rich help shows ``--json <bool>`` for a
    flag that takes no value)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        extra = getattr(self, "subcommand_metavar", None)
        return [*pieces, extra] if extra else pieces

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # rich help then shows no type for it
            elif param.param_type_name == "argument" and param.metavar is None and param.name:
                param.metavar = param.name.upper()  # as the usage line and the docstrings name it
        return params


class _Command(_HelpLayout, TyperCommand):
    pass


class _Group(_HelpLayout, TyperGroup):
    pass


class _Typer(typer.Typer):
    """A ``typer.Typer`` whose groups and commands use prefkit's help layout (``_HelpLayout``) and take
    ``-h`` as well as ``--help``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, **kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().command(name, cls=kwargs.pop("cls", _Command), **kwargs)


app = _Typer(
    name="prefkit",
    help="Preference (DPO) datasets for tool-using LLM agents, judged on safety and helpfulness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schemas_app = _Typer(help="JSON Schemas of prefkit's records.", no_args_is_help=True)
import_app = _Typer(help="Import scenarios and judged trajectories made elsewhere.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(import_app, name="import")


def _print_version(value: bool) -> None:
    if value:
        from prefkit import __version__

        typer.echo(f"prefkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print prefkit's version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    # The group's own options (its help text is the Typer's `help`).
    pass

# Shared options -----------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing, non-empty output directory.")]


def _console() -> Console:
    return Console(stderr=False)


def _fail(exc: Exception) -> typer.Exit:
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=getattr(exc, "exit_code", 2))


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""
_interrupt_reported = False
"""Set once ``_long_running`` printed its line: typer (non-standalone) turns Ctrl-C anywhere into a plain
return of 130, so ``main`` prints "interrupted" itself unless this says a line was already printed."""


@contextlib.contextmanager
def _long_running(out: Any, *, quiet: bool = False) -> Iterator[Any]:
    """For a command that takes minutes: its progress (``prefkit.progress.progress_for``: rich bars on a
    terminal, a plain line now and then otherwise, on stderr; counts only when ``quiet``), and Ctrl-C
    handled: one line saying what is kept in ``out``, exit code 130, no traceback."""
    from prefkit.progress import progress_for

    progress = progress_for(quiet=quiet)
    try:
        yield progress
    except KeyboardInterrupt:
        progress.close()
        Console(stderr=True).print(progress.interrupted_line(out), highlight=False, markup=False, soft_wrap=True)
        global _interrupt_reported
        _interrupt_reported = True
        raise typer.Exit(INTERRUPTED) from None
    finally:
        progress.close()


# schemas ------------------------------------------------------------------------------------------


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the schema files.")] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every record type to OUT (one file per type)."""
    from prefkit.schemas import export_schemas

    written = export_schemas(out)
    _console().print(f"wrote {len(written)} schemas to {out}")


# import -------------------------------------------------------------------------------------------
# (commands: `prefkit import toolemu`, `prefkit import toolemu-cases`)

CasesOpt = Annotated[Path, typer.Option("--cases", help="ToolEmu's all_cases.json.")]
ToolkitsOpt = Annotated[Path, typer.Option("--toolkits", help="ToolEmu's all_toolkits.json.")]


def _print_import(counts: dict[str, int], out: Path) -> None:
    _console().print(f"imported {', '.join(f'{n} {name}' for name, n in counts.items())} into {out}", highlight=False)


@import_app.command("toolemu")
def import_toolemu(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of ToolEmu run files (searched recursively).")],
    cases: CasesOpt,
    toolkits: ToolkitsOpt,
    out: OutOpt,
    force: ForceOpt = False,
) -> None:
    """Import judged ToolEmu trajectories (trajectory + eval files) into a new run OUT."""
    from prefkit.faults import fault_point
    from prefkit.sources.toolemu import import_toolemu_runs, write_toolemu_import

    result = import_toolemu_runs(runs_dir, cases_path=cases, toolkits_path=toolkits)
    fault_point("import")  # read, nothing written yet
    write_toolemu_import(result, out, force=force)
    _print_import(result.counts(), out)


@import_app.command("toolemu-cases")
def import_toolemu_cases(
    cases: Annotated[Path, typer.Argument(help="ToolEmu's all_cases.json.")],
    toolkits: Annotated[Path, typer.Argument(help="ToolEmu's all_toolkits.json.")],
    out: OutOpt,
    force: ForceOpt = False,
) -> None:
    """Import ToolEmu's scenario suite alone (scenarios and toolkits tables) into a new run OUT."""
    from prefkit.sources.toolemu import import_toolemu_cases as load_suite_import
    from prefkit.sources.toolemu import write_toolemu_import

    result = load_suite_import(cases, toolkits)
    write_toolemu_import(result, out, force=force)
    _print_import(result.counts(), out)


# (commands: `prefkit import inspect`, `prefkit import chat`: logs of agents run elsewhere)

ScoreOpt = Annotated[list[str] | None, typer.Option(
    "--score", help="Import a score as a judgment: SOURCE=METRIC (an integer 0-3) or SOURCE=METRIC:VALUE=SCORE,... "
                    "(e.g. includes=helpfulness:C=3,I=0); repeatable. Without it no score is imported.")]
AgentNameOpt = Annotated[str | None, typer.Option("--agent", help="The agent's name in the records.")]


def _print_log_import(summary: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        _print_json({**summary, "out": str(out)})
        return
    _print_import({k: summary[k] for k in ("scenarios", "toolkits", "trajectories", "judgments")}, out)
    if summary["skipped"]:
        _console().print("skipped " + ", ".join(f"{n} {why}" for why, n in summary["skipped"].items()), highlight=False)
    for source, n in summary["missing_scores"].items():
        if n:
            _console().print(f"{n} trajectories have no score {source!r} (no judgment)", highlight=False)


@import_app.command("inspect")
def import_inspect(
    logs: Annotated[list[Path], typer.Argument(help="Inspect eval logs (.eval, .json) or folders of them.")],
    out: OutOpt,
    score: ScoreOpt = None,
    agent: AgentNameOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import Inspect eval logs (one trajectory per sample and epoch) into a new run OUT."""
    from prefkit.sources.agent_logs import write_agent_log_import
    from prefkit.sources.inspect_logs import import_inspect_logs

    result = import_inspect_logs(logs, scores=score or (), agent=agent)
    write_agent_log_import(result, out, force=force)
    _print_log_import(result.summary(), out, as_json)


@import_app.command("chat")
def import_chat(
    files: Annotated[list[Path], typer.Argument(help="OpenAI-format chat JSONL files (or folders of *.jsonl).")],
    out: OutOpt,
    score: ScoreOpt = None,
    scenario_key: Annotated[str | None, typer.Option("--scenario-key", help="Field holding the scenario id "
                                                     "(default: the scenario is the instruction).")] = None,
    agent_key: Annotated[str | None, typer.Option("--agent-key", help="Field holding the agent's name.")] = None,
    agent: AgentNameOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import chat logs (one conversation per line: messages, optional tools) into a new run OUT."""
    from prefkit.sources.agent_logs import write_agent_log_import
    from prefkit.sources.chat_jsonl import import_chat_logs

    result = import_chat_logs(files, scores=score or (), scenario_key=scenario_key, agent_key=agent_key, agent=agent)
    write_agent_log_import(result, out, force=force)
    _print_log_import(result.summary(), out, as_json)


# inspect ------------------------------------------------------------------------------------------


@app.command("inspect")
def inspect_run(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarize a run: counts, agents, finish reasons, flags, score histograms per metric and judge."""
    from prefkit.inspect import print_summary, summarize_run
    from prefkit.store import RunStore

    summary = summarize_run(RunStore(run))
    if as_json:
        _print_json(summary)
    else:
        print_summary(summary, _console())


# pair / validate ----------------------------------------------------------------------------------


@app.command("pair")
def pair(
    run: Annotated[Path, typer.Argument(help="A run folder with judged trajectories (e.g. from `prefkit import`).")],
    strategy: Annotated[str, typer.Option("--strategy", help="safety | helpfulness | both | average.")],
    out: OutOpt,
    min_gap: Annotated[float, typer.Option("--min-gap", help="Smallest chosen-rejected score gap.")] = 2,
    min_chosen: Annotated[float, typer.Option("--min-chosen", help="Smallest chosen score.")] = 2,
    first_metric: Annotated[str, typer.Option("--first-metric", help="both/average: helpfulness | safety.")] = "helpfulness",
    aggregation: Annotated[str, typer.Option("--aggregation", help="Judgments to a score: median (int()) | mean | "
                                                          "expected (logprob judges' expected score).")] = "median",
    agreement: Annotated[str, typer.Option("--agreement", help="none | all_but_one | majority | exact.")] = "none",
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model, when the run has several.")] = None,
    study_compatible: Annotated[bool, typer.Option("--study-compatible", help="Refuse beyond-the-study options.")] = False,
    dedup: Annotated[bool, typer.Option("--dedup", help="Drop repeated trajectories of a scenario first.")] = False,
    max_pairs_per_scenario: Annotated[int | None, typer.Option("--max-pairs-per-scenario", help="Pairs kept per scenario: "
                                                               "those with the largest margin.")] = None,
    max_chosen_reuse: Annotated[int | None, typer.Option("--max-chosen-reuse", help="Pairs one chosen may be in.")] = None,
    ties: Annotated[str, typer.Option("--ties", help="skip (study) | second_metric.")] = "skip",
    safety_floor: Annotated[float | None, typer.Option("--safety-floor", help="Chosen safety >= this.")] = None,
    exclude_chosen_flags: Annotated[str, typer.Option("--exclude-chosen-flags", help="Comma-separated trajectory "
                                                      "flags (e.g. non_object_arguments) never on the chosen side.")] = "",
    split_rule: Annotated[str, typer.Option("--split-rule", help="study | fraction.")] = "study",
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the scenario split.")] = 0,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="fraction rule: share of test.")] = 0.5,
    render: Annotated[str, typer.Option("--render", help="react | native.")] = "react",
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build preference pairs from RUN's judged trajectories and write them to OUT (pairs + TRL train/test rows)."""
    from prefkit.pairing.pairs import pair_run

    counts = pair_run(
        run, out, force=force, strategy=strategy, min_gap=min_gap, min_chosen=min_chosen, first_metric=first_metric,
        aggregation=aggregation, agreement=agreement, judge=judge, study_compatible=study_compatible, dedup=dedup,
        max_pairs_per_scenario=max_pairs_per_scenario, max_chosen_reuse=max_chosen_reuse, ties=ties,
        safety_floor=safety_floor, split_rule=split_rule, split_seed=split_seed, test_fraction=test_fraction,
        rendering=render, exclude_chosen_flags=tuple(f.strip() for f in exclude_chosen_flags.split(",") if f.strip()),
    )
    if as_json:
        _print_json(counts)
    else:
        _console().print(f"[bold]{counts['pairs']}[/] {strategy} pairs over {counts['scenarios']} scenarios "
                         f"(train {counts['train_pairs']}, test {counts['test_pairs']}) -> {out}", highlight=False)
        for split in ("train", "test"):
            if not counts[f"{split}_pairs"]:
                _console().print(f"no {split} pairs: {split}.parquet is not written (a split without rows is left "
                                 "out; the split is by scenario)", highlight=False)


@app.command("validate")
def validate(
    pairs: Annotated[Path, typer.Argument(help="A `prefkit pair` output folder, or one rows .parquet file.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Local tokenizer folder (with a chat template).")],
    max_length: Annotated[int, typer.Option("--max-length", help="Drop rows longer than this many tokens.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the kept rows here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check pair rows with TRL's own utilities; exit 1 if any row is invalid (length drops are not)."""
    from prefkit.pairing.validate import summarize_reports, validate_pairs_path

    summary = summarize_reports(validate_pairs_path(pairs, tokenizer=tokenizer, max_length=max_length, out=out))
    if as_json:
        _print_json(summary)
    else:
        _print_validation(summary)
    if summary["invalid"]:
        raise typer.Exit(code=1)


def _print_validation(summary: dict[str, Any]) -> None:
    from rich.table import Table

    columns = ("rows", "valid", "kept", "invalid", "dropped_too_long", "max_tokens")
    table = Table(*("file", *columns), title="pair rows checked against TRL")
    for name, counts in summary["files"].items():
        table.add_row(name, *(str(counts[c]) for c in columns))
    _console().print(table)
    if (flagged := summary.get("non_object_arguments")) is not None:
        _console().print(f"rows holding an action input that is not a JSON object (non_object_arguments): "
                         f"{flagged['rows']} (chosen {flagged['chosen']}, rejected {flagged['rejected']})", highlight=False)
    for bad in summary["invalid_rows"][:20]:
        _console().print(f"[red]invalid[/] {bad['file']} row {bad['index']}: {bad['reason']}", highlight=False)


# judge --------------------------------------------------------------------------------------------
# (commands: `prefkit judge`, `prefkit rescore`, `prefkit judge-agreement`)

RunArg = Annotated[Path, typer.Argument(help="A run directory.")]


@app.command("judge")
def judge(
    run: RunArg,
    judge_spec: Annotated[str, typer.Option("--judge", help="Judge model as MODEL@backend (transformers|openai|vllm).")],
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated: safety, helpfulness, helpfulness_safe.")]
    = "safety,helpfulness",
    replicates: Annotated[int, typer.Option("--replicates", help="Answers per trajectory and metric.")] = 1,
    answer_format: Annotated[str, typer.Option("--answer-format", help="auto | text | json | logprob.")] = "auto",
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Answers tried before 'failed'.")] = 3,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per answer.")] = 1024,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Default: 0, or 0.7 with replicates.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Backend option KEY=VALUE (repeatable).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Judge cached failures again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Judge RUN's trajectories (only what is not judged yet) and store the judgments in RUN.

    Safe to kill: a re-run judges only what was not stored. Exits 1 when every judgment of a metric
    failed (nothing usable; the raw answers stay stored); some failed is a warning."""
    from rich.markup import escape

    from prefkit.judges.judge import judge_run, judging_problems, make_judge_config

    config = make_judge_config(judge=judge_spec, metrics=metrics, replicates=replicates, answer_format=answer_format,
                               max_attempts=max_attempts, max_tokens=max_tokens, temperature=temperature,
                               options=option or (), retry_failed=retry_failed)
    with _long_running(run) as progress:
        summary = judge_run(run, config, progress=progress)
    if as_json:
        _print_json(summary.model_dump(mode="json"))
    else:
        counts = ", ".join(f"{k} {v}" for k, v in summary.by_status.items())
        _console().print(f"judged {summary.judged} ({counts}), cached {summary.cached}, "
                         f"{summary.waves} wave(s) with {judge_spec} [{summary.answer_format}]", highlight=False)
    # every judgment of a metric failed: exit 1 (JudgingFailed); some failed: a warning, exit 0
    for warning in judging_problems(summary, run):
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command("rescore")
def rescore(run: RunArg, as_json: JsonOpt = False) -> None:
    """Re-parse every stored judge answer in RUN with the current parser and rewrite its judgments."""
    from prefkit.judges.rescore import rescore_run

    summary = rescore_run(run)
    if as_json:
        _print_json(summary.model_dump(mode="json"))
    else:
        _console().print(f"re-parsed {summary.judgments} judgments: {summary.scores_changed} scores changed, "
                         f"{summary.status_changed} statuses changed ({summary.by_status})", highlight=False)


@app.command("judge-agreement")
def judge_agreement(
    run: RunArg,
    a: Annotated[str, typer.Option("--a", help="First judge: model name, or model@backend.")],
    b: Annotated[str, typer.Option("--b", help="Second judge: model name, or model@backend.")],
    metric: Annotated[str, typer.Option("--metric", help="safety | helpfulness | helpfulness_safe.")] = "safety",
    as_json: JsonOpt = False,
) -> None:
    """Agreement of two judges on RUN's trajectories: quadratic kappa, Spearman, exact, confusion matrix."""
    from prefkit.judges.agreement import run_agreement

    report = run_agreement(run, a=a, b=b, metric=metric)
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        _print_agreement(report)


def _print_agreement(report: Any) -> None:
    from rich.table import Table

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    table = Table(f"{report.judge_a} \\ {report.judge_b}", *(str(s) for s in range(4)),
                  title=f"{report.metric}: {report.n} trajectories judged by both")
    for score, row in enumerate(report.confusion):
        table.add_row(str(score), *(str(c) for c in row))
    _console().print(table)
    _console().print(f"kappa (quadratic) {fmt(report.kappa)}  spearman {fmt(report.spearman)}  "
                     f"exact {fmt(report.exact)}  within one {fmt(report.within_one)}", highlight=False)


# rollout ------------------------------------------------------------------------------------------


@app.command("rollout")
def rollout(
    suite: Annotated[str, typer.Argument(help="Scenario suite: a folder (cases.json + toolkits.json, or ToolEmu's "
                                         "all_cases.json + all_toolkits.json), a run folder, or a bundled name (starter).")],
    agent: Annotated[list[str], typer.Option("--agent", help="Agent model as MODEL@backend (transformers|openai|"
                                             "vllm); repeat for several agents.")],
    emulator: Annotated[str, typer.Option("--emulator", help="Emulator model as MODEL@backend.")],
    out: OutOpt,
    samples: Annotated[int, typer.Option("--samples", help="Trajectories per scenario and agent.")] = 1,
    prompt_format: Annotated[str, typer.Option("--format", help="react (text) | native (tool calls).")] = "react",
    prompt_style: Annotated[str, typer.Option("--prompt-style", help="ReAct prompt: full | compact (one worked "
                                              "example; for models under ~1B).")] = "full",
    mode: Annotated[str, typer.Option("--mode", help="Emulator: adversarial | standard.")] = "adversarial",
    scenarios: Annotated[str | None, typer.Option("--scenarios", help="Comma-separated scenario ids (default all).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Most tool calls (default: no cap).")] = None,
    token_budget: Annotated[int, typer.Option("--token-budget", help="Most agent tokens per trajectory.")] = 8000,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per agent call.")] = 2048,
    temperature: Annotated[float, typer.Option("--temperature", help="Agent temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Agent sampling seed.")] = None,
    agent_option: Annotated[list[str] | None, typer.Option("--agent-option", help="Backend option KEY=VALUE.")] = None,
    emulator_option: Annotated[list[str] | None, typer.Option("--emulator-option", help="Backend option KEY=VALUE.")] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Roll out agents on SUITE with LM-emulated tools into the run OUT (re-run to resume a killed run)."""
    from prefkit.rollout import make_rollout_configs, rollout_suite

    configs = make_rollout_configs(agents=agent, emulator=emulator, samples=samples, prompt_format=prompt_format,
                                   prompt_style=prompt_style, mode=mode, max_steps=max_steps,
                                   token_budget=token_budget, max_tokens=max_tokens, temperature=temperature,
                                   seed=seed, agent_options=agent_option or (), emulator_options=emulator_option or ())
    ids = [s.strip() for s in scenarios.split(",") if s.strip()] if scenarios else None
    with _long_running(out) as progress:
        summary = rollout_suite(suite, out, configs, scenario_ids=ids, force=force, progress=progress)
    if as_json:
        _print_json(summary.as_dict())
    else:
        _console().print(f"{summary.trajectories} trajectories ({summary.generated} new) in {out}: "
                         + ", ".join(f"{k} {v}" for k, v in summary.finish_reasons.items()), highlight=False)


# train / eval / frontier --------------------------------------------------------------------------


@app.command("train")
def train(
    recipe: Annotated[Path, typer.Argument(help="A training recipe YAML (e.g. recipes/train/safe.yaml).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe field: key.path=value.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop each stage after N optimizer steps.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for <name>/ (default: output_dir).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain a model that is already trained there.")] = False,
    json_: JsonOpt = False,
) -> None:
    """DPO-train a source model with LoRA on a dataset's train split, one or two stages (TRL DPOTrainer)."""
    import contextlib

    from prefkit.train import load_train_recipe
    from prefkit.train import train as run_training

    loaded = load_train_recipe(recipe, set_ or [])
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout stays for our report
        result = run_training(loaded, out=out, max_steps=max_steps, force=force)
    if json_:
        _print_json(result.model_dump(mode="json", exclude={"stages": {"__all__": {"log_history"}}}))
        return
    for s in result.stages:
        _console().print(f"{s.name}: {s.kept} pairs ({s.dropped_too_long} too long), {s.steps} steps, "
                         f"loss {s.train_loss}", highlight=False, soft_wrap=True)
    _console().print(f"[bold green]trained[/] {result.name} -> {result.model or result.out}", highlight=False,
                     soft_wrap=True)


@app.command("eval")
def eval_model(
    model: Annotated[str, typer.Argument(help="MODEL@backend, or a `prefkit train` output folder.")],
    suite: Annotated[str, typer.Option("--suite", help="Scenario suite (a folder, a run, or a bundled name).")],
    out: OutOpt,
    emulator: Annotated[str, typer.Option("--emulator", help="Emulator model as MODEL@backend.")],
    judge: Annotated[str, typer.Option("--judge", help="Judge model as MODEL@backend.")],
    name: Annotated[str | None, typer.Option("--name", help="Agent name in the run (dpo_<nick>_... for trained).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Evaluate on this dataset's recorded test "
                                                "scenarios (a `prefkit build` or `prefkit pair` output folder).")] = None,
    split_seed: Annotated[int | None, typer.Option("--split-seed", help="Evaluate on this seed's test scenarios "
                                                   "(the study rule; default: the dataset's seed, else 0).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Most tool calls per trajectory.")] = None,
    prompt_style: Annotated[str, typer.Option("--prompt-style", help="Agent ReAct prompt: full | compact.")] = "full",
    answer_format: Annotated[str, typer.Option("--answer-format", help="Judge answer: auto | text | json | "
                                               "logprob.")] = "auto",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per agent call.")] = 2048,
    token_budget: Annotated[int, typer.Option("--token-budget", help="Most agent tokens per trajectory.")] = 8000,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="Most tokens per judge answer.")] = 1024,
    agent_option: Annotated[list[str] | None, typer.Option("--agent-option", help="Backend option KEY=VALUE.")] = None,
    emulator_option: Annotated[list[str] | None, typer.Option("--emulator-option", help="Backend option KEY=VALUE.")] = None,
    judge_option: Annotated[list[str] | None, typer.Option("--judge-option", help="Backend option KEY=VALUE.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Roll MODEL out on its dataset's test scenarios, judge it, and write the run OUT (frontier input).

    The test scenarios: those recorded by --dataset, else by a trained model's own datasets, else the study
    rule's for --split-seed."""
    from prefkit.evaluate import evaluate, make_eval_config

    config = make_eval_config(model=model, name=name, suite=suite, split_seed=split_seed, dataset=dataset,
                              emulator=emulator, judge=judge, max_steps=max_steps, prompt_style=prompt_style,
                              answer_format=answer_format, max_tokens=max_tokens, token_budget=token_budget,
                              judge_max_tokens=judge_max_tokens, agent_options=tuple(agent_option or ()),
                              emulator_options=tuple(emulator_option or ()), judge_options=tuple(judge_option or ()))
    with _long_running(out) as progress:
        summary = evaluate(config, out, force=force, progress=progress)
    if json_:
        _print_json(summary.model_dump(mode="json"))
    else:
        _console().print(f"{summary.name}: {summary.trajectories} trajectories on {summary.scenarios} test scenarios, "
                         f"judgments {summary.judgments}; safety {summary.safety}, helpfulness {summary.helpfulness}",
                         highlight=False, soft_wrap=True)


@app.command("frontier")
def frontier(
    results: Annotated[list[Path], typer.Argument(help="Results folders (one folder per model, ToolEmu run files) "
                                                  "or prefkit runs (e.g. from `prefkit eval`).")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the frontier plot (PNG) here.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap draws for persistence intervals.")] = 10_000,
    source: Annotated[list[str] | None, typer.Option("--source", help="Source model's nickname, NAME=NICK "
                                                     "(when its name does not give it).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Trained configurations' safety/helpfulness changes vs their source, the fitted line, R², persistence;
    exit 1 when models lack scores or their source model's evaluation (named on stderr)."""
    from prefkit.frontier import frontier as compute
    from prefkit.frontier import parse_sources, plot_frontier, report_json

    report = compute(results, sources=parse_sources(source or ()), n_bootstrap=bootstrap)
    if plot is not None:
        plot_frontier(report, plot)
    if json_:
        _print_json(report_json(report))
    else:
        _print_frontier(report, plot)
    for problem in report.problems:  # also in the JSON; what was computed is printed and plotted first
        Console(stderr=True).print(f"frontier incomplete: {problem}", highlight=False, soft_wrap=True, markup=False)
    if report.problems:
        raise typer.Exit(code=1)


def _print_frontier(report: Any, plot: Path | None) -> None:
    from rich.table import Table

    def fmt(x: float | None, sign: str = "+") -> str:
        return "n/a" if x is None else f"{x:{sign}.3f}"

    table = Table("source", "config", "safety", "helpfulness", "Δ safety", "Δ helpfulness", title="frontier")
    for p in report.points:
        table.add_row(p.source, p.config, fmt(p.safety, ""), fmt(p.helpfulness, ""), fmt(p.d_safety),
                      fmt(p.d_helpfulness))
    _console().print(table)
    _console().print(f"R² {fmt(report.r2)}  slope {fmt(report.slope)}  intercept {fmt(report.intercept)}"
                     + (f"  plot {plot}" if plot else ""), highlight=False, soft_wrap=True)
    for beta, est in report.persistence.items():
        _console().print(f"persistence beta {beta}: " + "; ".join(
            f"{metric} {fmt(e.value)} [{fmt(e.ci_low)}, {fmt(e.ci_high)}]" for metric, e in est.items()),
            highlight=False, soft_wrap=True)


# build --------------------------------------------------------------------------------------------


@app.command("build")
def build(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe field: key.path=value.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the recipe's output_dir).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run a recipe: import or roll out, judge, pair, validate, audit, write the card (and publish). Safe to re-run
    and to kill."""
    from prefkit.build import run_build
    from prefkit.recipe import load_recipe

    loaded = load_recipe(recipe, set_ or [])
    with _long_running(out or loaded.output_dir, quiet=quiet) as progress:
        summary = run_build(loaded, out=out, recipe_text=recipe.read_text(encoding="utf-8"), progress=progress)
    if json_:
        _print_json(summary)
    elif not quiet:
        _console().print(f"[bold green]built[/] {summary['out']}: " + ", ".join(
            f"{name} {c['pairs']} pairs ({c['train_pairs']} train)" for name, c in summary["datasets"].items()))
        for warning in summary.get("warnings", []):
            _console().print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        if summary.get("load"):
            _console().print(f"load it: {summary['load']}", highlight=False, soft_wrap=True)


# audit --------------------------------------------------------------------------------------------


@app.command("audit")
def audit(
    pairs: Annotated[Path, typer.Argument(help="A pairs folder written by `prefkit pair`.")],
    run: Annotated[Path | None, typer.Option("--run", help="The run the pairs came from (refusals, parse "
                                             "failures, best-of-both).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where audit.json and plots/ go (default: PAIRS).")] = None,
    thresholds: Annotated[Path | None, typer.Option("--thresholds", help="YAML limits (AuditThresholds, or a "
                                                    "recipe with an `audit` section).")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write audit.json only.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Audit a pairs folder's composition; exit 1 when a threshold is violated."""
    from prefkit.audit import print_audit, run_audit

    outcome = run_audit(pairs, run=run, out_dir=out, thresholds=thresholds, plots=not no_plots)
    if json_:  # the violations are in the JSON too; their messages also go to stderr
        _print_json({**outcome.report.model_dump(mode="json"),
                     "violations": [v.model_dump(mode="json") for v in outcome.violations],
                     "warnings": list(outcome.warnings)})
        for warning in outcome.warnings:
            Console(stderr=True).print(f"audit warning: {warning}", highlight=False, soft_wrap=True)
        for violation in outcome.violations:
            Console(stderr=True).print(f"audit failed: {violation.message}", highlight=False, soft_wrap=True)
    else:
        print_audit(outcome.report, _console(), outcome.violations, outcome.warnings)
    if outcome.violations:
        raise typer.Exit(code=1)


# publish ------------------------------------------------------------------------------------------


@app.command("publish")
def publish(
    folder: Annotated[Path, typer.Argument(help="A dataset folder (README.md, prefkit.json, data/, plots/).")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="The Hub dataset repo, owner/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (or make it private).")] = False,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch to commit to (default main).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a repo that holds a different dataset.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be uploaded; touch nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Upload a dataset folder to the Hub in one commit (token: HF_TOKEN or `hf auth login`)."""
    from prefkit.publish.hub import publish_dataset

    result = publish_dataset(folder, repo_id, private=private, revision=revision, force=force, dry_run=dry_run)
    if json_:
        _print_json(result.model_dump(mode="json"))
        return
    verb = "would upload" if result.dry_run else f"uploaded to {result.repo_id}@{result.revision}"
    _console().print(f"{verb}: {len(result.uploaded)} files", highlight=False)
    for path in (result.uploaded if result.dry_run else ()):
        _console().print(f"  {path}", highlight=False)
    if not result.dry_run:
        _console().print(f"commit {result.commit_url} ({len(result.deleted)} stale files removed)", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a failed check, 2 bad input or usage).

    A usage error (unknown command or option, missing or malformed argument) prints one line and the help
    hint to stderr, never a traceback. Warnings of the libraries prefkit drives (transformers, TRL, torch,
    datasets) are not shown: what the user needs to know, prefkit says itself.
    Tests call ``main([...])`` in-process; the ``prefkit`` console script calls it with no arguments.
    """
    import os
    import warnings

    global _interrupt_reported
    _interrupt_reported = False
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # transformers' logged warnings, read at its import
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = app(args=argv, prog_name="prefkit", standalone_mode=False)
        except PrefkitError as exc:
            return _fail(exc).exit_code
        except _USAGE_ERRORS as exc:
            return _usage_error(exc)
        except (typer.Exit, *_EXITS) as exc:
            if exc.exit_code == INTERRUPTED and isinstance(exc.__cause__, KeyboardInterrupt):
                Console(stderr=True).print("interrupted")  # Ctrl-C before any work began (typer's Exit(130))
            return exc.exit_code
        except (typer.Abort, *_ABORTS):
            Console(stderr=True).print("aborted")
            return 1
    if result == INTERRUPTED and not _interrupt_reported:
        Console(stderr=True).print("interrupted")  # Ctrl-C in a command without _long_running (import, pair, ...)
    return result if isinstance(result, int) else 0


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click's exceptions: typer's own copy (typer >= 0.22 vendors click) and click itself."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_USAGE_ERRORS = _click_classes("ClickException")
_EXITS = _click_classes("Exit")
_ABORTS = _click_classes("Abort")


def _usage_error(exc: Any) -> int:
    """Print a click usage error as prefkit prints every error: one ``error:`` line, then the help hint."""
    from rich.markup import escape

    ctx = getattr(exc, "ctx", None)
    err = Console(stderr=True)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `prefkit`: the help, exit 2
        err.print(ctx.get_help(), highlight=False, markup=False, end="")
        return exc.exit_code
    err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
    if ctx is not None:
        err.print(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", highlight=False, markup=False,
                  soft_wrap=True)
    return exc.exit_code


def entry_point() -> None:  # pragma: no cover - console script
    import os

    code = main()
    if code == INTERRUPTED:
        # After Ctrl-C, exit at once: what is kept is on disk (written atomically), and a model call that
        # was cut off may still be winding down on a worker thread; nothing is left to wait for.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
