"""The safety/helpfulness frontier of trained configurations, as the study computed it (paper-reference §6).

1. Every trained model is restricted to its split seed's test scenarios (the study rule,
   ``prefkit.pairing.split.study_test_indices``). A source model has no seed: it is counted once for
   every seed that its trained models (same nickname, same judge) use, each time on that seed's test
   scenarios. Beyond the study: a ``prefkit eval`` run on a dataset's own non-study split (e.g. the
   quickstart's ``fraction`` split) keeps the test scenarios it recorded (``read.CASE_SCHEMA``'s ``test``).
2. Per (model, judge, seed): the mean over scenarios of each score (missing scores left out).
3. Per configuration (source nickname, config label such as ``S,H-0.1``): the unweighted mean of those
   means, i.e. over judges and seeds.
4. Each trained configuration's change versus its source (``d_safety``, ``d_helpfulness``), and the
   least-squares line ``d_safety = slope * d_helpfulness + intercept`` through the changes, with R²
   (the squared correlation, as ``scipy.stats.linregress`` gives).

Persistence (``prefkit.frontier.persistence``) is computed from the same per-scenario table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from prefkit.errors import InputError
from prefkit.frontier.persistence import PersistenceEstimate, persistence
from prefkit.pairing.split import study_test_indices
from prefkit.train.names import KNOWN_NICKS, parse_model_name


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FrontierPoint(_Value):
    """One trained configuration of one source model."""

    source: str
    """The source model's nickname (``Qwen2.5-7B``)."""
    config: str
    """The configuration label: stage kinds in training order and beta (``S-0.1``, ``H,S-0.05``, ``S&H-0.1``)."""
    safety: float | None
    helpfulness: float | None
    d_safety: float | None
    """Change versus the source model (``None`` without the source's results)."""
    d_helpfulness: float | None
    runs: int
    """(model, judge, seed) rows averaged."""
    models: tuple[str, ...]


class SourcePoint(_Value):
    source: str
    safety: float | None
    helpfulness: float | None
    runs: int
    models: tuple[str, ...]


class FrontierReport(_Value):
    """What ``prefkit frontier`` prints (``--json``) and plots."""

    r2: float | None
    """R² of the least-squares line through the trained points' changes (``None`` with fewer than 2 points)."""
    slope: float | None
    intercept: float | None
    points: tuple[FrontierPoint, ...]
    sources: tuple[SourcePoint, ...]
    persistence: dict[str, dict[str, PersistenceEstimate]]
    """Per beta (``"0.1"``): ``safety`` (how much of safety training survives helpfulness training) and
    ``helpfulness`` (the converse), each with its bootstrap confidence interval."""
    judges: tuple[str, ...]
    seeds: tuple[int, ...]
    n_bootstrap: int
    problems: tuple[str, ...] = ()
    """Why some of the frontier is missing (``frontier_problems``): models without scores, trained models
    without their source model's evaluation. ``prefkit frontier`` prints them and exits 1."""


def model_table(models: list[str], sources: Mapping[str, str] | None = None) -> pl.DataFrame:
    """What each model name says: ``model``, ``nick``, ``trained``, ``config``, ``seed`` (null for sources),
    ``beta`` (the first stage's; null for sources).

    Args:
        sources: model name → nickname for source models whose names do not give it (see ``source_nick``).

    Raises:
        InputError: a trained name whose stages use different split seeds.
    """
    rows = []
    for model in models:
        name = parse_model_name(model)
        if len({s.seed for s in name.stages}) > 1:
            raise InputError(f"model {model!r}: its stages name different split seeds; the study trains every "
                             "stage of a model on the same split")
        nick = (sources or {}).get(model, name.nick) if not name.trained else name.nick
        rows.append({"model": model, "nick": nick, "trained": name.trained, "config": name.config,
                     "seed": name.seed, "beta": name.betas[0] if name.betas else None})
    schema = {"model": pl.String, "nick": pl.String, "trained": pl.Boolean, "config": pl.String,
              "seed": pl.Int64, "beta": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _test_scenarios(pairs: pl.DataFrame) -> pl.DataFrame:
    """``seed``, ``suite_size``, ``scenario_index`` of every test scenario of each (seed, suite size)."""
    rows = [(seed, size, i) for seed, size in pairs.iter_rows() for i in study_test_indices(size, seed)]
    return pl.DataFrame(rows, schema={"seed": pl.Int64, "suite_size": pl.Int64, "scenario_index": pl.Int64},
                        orient="row")


def restrict_to_test(cases: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """The per-scenario table restricted as in step 1, with each row's ``nick``, ``trained``, ``config``,
    ``seed`` and ``beta``."""
    named = cases.join(models, on="model", how="left")
    trained = named.filter(pl.col("trained"))
    seeds = trained.select("nick", "judge", "seed").unique()
    # A source is counted once per seed its trained models use (with the same judge).
    sources = named.filter(~pl.col("trained")).drop("seed").join(seeds, on=["nick", "judge"], how="inner")
    both = pl.concat([trained, sources.select(trained.columns)], how="vertical")
    tests = _test_scenarios(both.select("seed", "suite_size").unique().sort("seed", "suite_size"))
    study = both.filter(pl.col("test").is_null()).join(tests, on=["seed", "suite_size", "scenario_index"], how="inner")
    # rows of an evaluation on a dataset's own split (``test`` recorded by `prefkit eval`): its test scenarios
    return pl.concat([study, both.filter(pl.col("test"))], how="vertical")


def _run_means(restricted: pl.DataFrame) -> pl.DataFrame:
    return (
        restricted.lazy()
        .group_by("model", "nick", "trained", "config", "judge", "seed")
        .agg(pl.col("safety").mean(), pl.col("helpfulness").mean())
        .collect()
    )


def _config_means(runs: pl.DataFrame) -> pl.DataFrame:
    return (
        runs.lazy()
        .group_by("nick", "trained", "config")
        .agg(pl.col("safety").mean(), pl.col("helpfulness").mean(), runs=pl.len(),
             models=pl.col("model").unique().sort())
        .sort("nick", "config")
        .collect()
    )


def _fit(points: pl.DataFrame) -> tuple[float | None, float | None, float | None]:
    fitted = points.drop_nulls(["d_safety", "d_helpfulness"])
    x = fitted["d_helpfulness"].to_numpy()
    y = fitted["d_safety"].to_numpy()
    if len(x) < 2 or np.ptp(x) == 0:
        return None, None, None
    slope, intercept = np.polyfit(x, y, 1)
    r = np.corrcoef(x, y)[0, 1]
    return float(r * r), float(slope), float(intercept)


def frontier_problems(restricted: pl.DataFrame, models: pl.DataFrame) -> list[str]:
    """What keeps points of the frontier from being computed, each as a sentence naming the models and what
    to do; ``[]`` when nothing is missing.

    - A model with no score on a metric over the scenarios it is counted on (every judgment failed, or none
      was made): its configuration's mean, and so its change, is ``None``.
    - A source nickname of trained models with no evaluated source model judged by the same judge: their
      changes are ``None``. A source is found by its name (``source_nick``) or ``--source NAME=NICK``.

    Args:
        restricted: ``restrict_to_test``'s table; models: ``model_table``'s.
    """
    problems = []
    per_model = (
        restricted.group_by("model")
        .agg(safety=pl.col("safety").is_not_null().any(), helpfulness=pl.col("helpfulness").is_not_null().any())
        .sort("model")
    )
    for metric in ("safety", "helpfulness"):
        lacking = per_model.filter(~pl.col(metric))["model"].to_list()
        if lacking:
            problems.append(f"no {metric} scores for {_listed(lacking)}: every {metric} judgment of theirs on the "
                            "test scenarios failed or is missing, so their means and changes are n/a; look with "
                            "`prefkit inspect RUN` (prefkit runs) and judge again with `prefkit judge RUN --judge "
                            f"MODEL@BACKEND --metrics {metric}`")
    trained = models.filter(pl.col("trained"))
    for nick in trained["nick"].unique().sort().to_list():
        if restricted.filter(~pl.col("trained") & (pl.col("nick") == nick)).height:
            continue  # the source is there (its scores, if missing, are named above)
        mine = trained.filter(pl.col("nick") == nick)["model"].to_list()
        judges = restricted.filter(pl.col("nick") == nick)["judge"].unique().sort().to_list()
        given = models.filter(~pl.col("trained") & (pl.col("nick") == nick))["model"].to_list()
        full = next((name for name, known in KNOWN_NICKS.items() if known == nick), None)
        example = f"the results folder {full.replace('/', '_')}, or a `prefkit eval` run of {full}" if full else \
            f"a results folder or `prefkit eval --name {nick}` run"
        if given:
            why = (f"the source model {_listed(given)} is given, but not judged by the judge of the trained models "
                   f"({', '.join(judges)}); judge it with that judge too")
        else:
            others = models.filter(~pl.col("trained"))
            seen = ", ".join(f"{m} (as {n})" for m, n in others.select("model", "nick").iter_rows()) or "none"
            why = (f"give the source model's evaluation too: an input model whose name is not a dpo_… name and gives "
                   f"the nickname {nick} ({example}), or a source named otherwise mapped with --source NAME={nick} "
                   f"(source models given: {seen})")
        problems.append(f"no evaluation of the source model {nick} among the inputs, so the changes of "
                        f"{_listed(mine)} are n/a (each is measured against its source on the same split seed's "
                        f"test scenarios); {why}")
    return problems


def _listed(models: list[str], most: int = 4) -> str:
    shown = ", ".join(models[:most])
    return shown + (f" and {len(models) - most} more" if len(models) > most else "")


def compute_frontier(cases: pl.DataFrame, *, sources: Mapping[str, str] | None = None,
                     n_bootstrap: int = 10_000) -> FrontierReport:
    """The frontier of the models in ``cases`` (``prefkit.frontier.read.CASE_SCHEMA``). What cannot be
    computed (models without scores, a missing source model) is left ``None`` and explained in
    ``FrontierReport.problems`` rather than raised, so the rest is still reported and plotted.

    Raises:
        InputError: no trained model among the inputs.
    """
    models = model_table(cases["model"].unique().sort().to_list(), sources)
    if not models["trained"].any():
        raise InputError("no trained model (dpo_<nick>_<kind>_<data>..._s<seed>) among the inputs; the frontier "
                         "compares trained models with their source models")
    restricted = restrict_to_test(cases, models)
    configs = _config_means(_run_means(restricted))
    source_means = configs.filter(~pl.col("trained")).select(
        "nick", source_safety="safety", source_helpfulness="helpfulness")
    points = (
        configs.filter(pl.col("trained"))
        .join(source_means, on="nick", how="left")
        .with_columns(d_safety=pl.col("safety") - pl.col("source_safety"),
                      d_helpfulness=pl.col("helpfulness") - pl.col("source_helpfulness"))
    )
    r2, slope, intercept = _fit(points)
    return FrontierReport(
        r2=r2, slope=slope, intercept=intercept,
        points=tuple(FrontierPoint(source=p["nick"], config=p["config"], safety=p["safety"],
                                   helpfulness=p["helpfulness"], d_safety=p["d_safety"],
                                   d_helpfulness=p["d_helpfulness"], runs=p["runs"], models=tuple(p["models"]))
                     for p in points.iter_rows(named=True)),
        sources=tuple(SourcePoint(source=s["nick"], safety=s["safety"], helpfulness=s["helpfulness"], runs=s["runs"],
                                  models=tuple(s["models"]))
                      for s in configs.filter(~pl.col("trained")).iter_rows(named=True)),
        persistence=persistence(restricted.filter(pl.col("trained")), n_bootstrap=n_bootstrap),
        judges=tuple(restricted["judge"].unique().sort().to_list()),
        seeds=tuple(restricted["seed"].unique().sort().to_list()),
        n_bootstrap=n_bootstrap,
        problems=tuple(frontier_problems(restricted, models)),
    )
