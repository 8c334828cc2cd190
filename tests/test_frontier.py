"""``prefkit frontier`` on the study's own results (Qwen2.5-7B and its 10 trained configurations, judge
Qwen3-32B, split seed 0), checked against an independent computation in plain Python over the eval files:
the seed's test cases from the study's own recipe (global ``random.seed``/``shuffle``), per-folder means,
deltas versus the source, ``scipy.stats.linregress``, and the persistence formulas with their bootstrap.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.frontier import frontier

SOURCE = "Qwen_Qwen2.5-7B-Instruct"
N_BOOT = 300


@pytest.fixture(scope="module")
def results_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "paper" / "results_q32_s0"
    if not path.is_dir():
        pytest.skip(f"reference data missing: {path}")
    return path


# The independent computation ----------------------------------------------------------------------


def study_test_cases(seed: int) -> set[int]:
    idx = list(range(144))
    random.seed(seed)  # the study's own recipe, global generator and all
    random.shuffle(idx)
    return set(idx[72:])


def folder_scores(folder: Path) -> dict[int, tuple[int, int]]:
    """case_idx -> (safety, helpfulness) for one model folder, pairing eval lines with trajectory lines."""
    out = {}
    for trajectory in folder.glob("*.jsonl"):
        if "_eval_agent_" in trajectory.name:
            continue
        stem = str(trajectory)[: -len(".jsonl")]
        cases = [json.loads(line)["case_idx"] for line in trajectory.read_text().splitlines()]
        safe = [json.loads(line)["eval_scores"]["ToolCallRisk"]
                for line in Path(stem + "_eval_agent_safe.jsonl").read_text().splitlines()]
        helps = [json.loads(line)["eval_scores"]["Helpfulness"]
                 for line in Path(stem + "_eval_agent_help_ignore_safety.jsonl").read_text().splitlines()]
        out.update({c: (s, h) for c, s, h in zip(cases, safe, helps, strict=True)})
    return out


def label(folder_name: str) -> str:
    kinds = {"safe": "S", "help": "H", "both": "S&H"}
    parts = folder_name.split("_")[2:]  # after dpo_<nick>
    stages = [kinds[p] for p in parts if p in kinds]
    beta = "0.05" if "beta-0.05" in folder_name else "0.1"
    return ",".join(stages) + "-" + beta


def independent(results: list[tuple[Path, int]]) -> tuple[dict, dict[str, dict[int, dict[int, tuple]]]]:
    """Per config label: (safety, helpfulness) means; and per label, per seed, case -> scores."""
    source = folder_scores(next(p for p, _ in results if p.name == SOURCE))
    per_config: dict[str, list[tuple[float, float]]] = {}
    cases_by_config: dict[str, dict[int, dict[int, tuple]]] = {}
    seeds = {seed for p, seed in results if p.name != SOURCE}
    for path, seed in results:
        if path.name == SOURCE:
            continue
        test = study_test_cases(seed)
        scores = {c: v for c, v in folder_scores(path).items() if c in test}
        per_config.setdefault(label(path.name), []).append(
            (statistics.mean(s for s, _ in scores.values()), statistics.mean(h for _, h in scores.values())))
        cases_by_config.setdefault(label(path.name), {})[seed] = scores
    source_runs = [{c: v for c, v in source.items() if c in study_test_cases(seed)} for seed in sorted(seeds)]
    per_config["source"] = [(statistics.mean(s for s, _ in r.values()), statistics.mean(h for _, h in r.values()))
                            for r in source_runs]
    means = {k: (statistics.mean(s for s, _ in v), statistics.mean(h for _, h in v)) for k, v in per_config.items()}
    return means, cases_by_config


def persist(cases: dict[str, dict[int, dict[int, tuple]]], beta: str, draws: list[dict[int, list[int]]] | None = None):
    """(safety, helpfulness) persistence pooled over seeds; ``draws``: seed -> resampled case list."""
    def mean(config: str, metric: int, seed_cases: dict[int, list[int]]) -> float:
        return statistics.mean(cases[f"{config}-{beta}"][seed][c][metric] for seed, cs in seed_cases.items() for c in cs)

    seed_cases = draws or {seed: sorted(v) for seed, v in cases[f"S-{beta}"].items()}
    s, h, sh, hs = (lambda m, c=c: mean(c, m, seed_cases) for c in ("S", "H", "S,H", "H,S"))
    ds, dh = s(0) - h(0), h(1) - s(1)
    return ((sh(0) - h(0)) / ds if ds > 1e-9 else None, (hs(1) - s(1)) / dh if dh > 1e-9 else None)


# Tests --------------------------------------------------------------------------------------------


def test_frontier_of_the_study_results_matches_an_independent_computation(results_dir):
    from scipy.stats import linregress

    report = frontier([results_dir], n_bootstrap=N_BOOT)
    assert len(report.points) == 10 and report.judges == ("Qwen_Qwen3-32B",) and report.seeds == (0,)
    means, cases = independent([(p, 0) for p in results_dir.iterdir()])
    # Trained folders holding all 144 cases were cut to the seed's 72 test cases like the others.
    assert all(len(by_seed[0]) == 72 for by_seed in cases.values())
    source = means["source"]
    assert report.sources[0].source == "Qwen2.5-7B"
    assert (report.sources[0].safety, report.sources[0].helpfulness) == pytest.approx(source, abs=1e-12)
    xs, ys = [], []
    for point in report.points:
        safety, helpfulness = means[point.config]
        assert (point.source, point.safety, point.helpfulness) == ("Qwen2.5-7B", pytest.approx(safety, abs=1e-12),
                                                                   pytest.approx(helpfulness, abs=1e-12))
        assert point.d_safety == pytest.approx(safety - source[0], abs=1e-12)
        assert point.d_helpfulness == pytest.approx(helpfulness - source[1], abs=1e-12)
        xs.append(helpfulness - source[1])
        ys.append(safety - source[0])
    fit = linregress(xs, ys)
    assert report.r2 == pytest.approx(fit.rvalue**2, abs=1e-12)
    assert (report.slope, report.intercept) == (pytest.approx(fit.slope, abs=1e-12), pytest.approx(fit.intercept, abs=1e-12))

    # Persistence: the point estimates, and the intervals from the same resampling done here.
    for beta in ("0.1", "0.05"):
        expected = persist(cases, beta)
        got = report.persistence[beta]
        assert (got["safety"].value, got["helpfulness"].value) == (
            pytest.approx(expected[0], abs=1e-12) if expected[0] is not None else None,
            pytest.approx(expected[1], abs=1e-12) if expected[1] is not None else None)
        rng = random.Random(42)
        test_cases = sorted(cases[f"S-{beta}"][0])
        draws = [persist(cases, beta, {0: rng.choices(test_cases, k=len(test_cases))}) for _ in range(N_BOOT)]
        for i, metric in enumerate(("safety", "helpfulness")):
            values = [d[i] for d in draws if d[i] is not None]
            if expected[i] is None or len(values) < N_BOOT / 2:
                assert got[metric].ci_low is None and got[metric].ci_high is None
            else:
                assert (got[metric].ci_low, got[metric].ci_high) == (
                    pytest.approx(float(np.percentile(values, 2.5)), abs=1e-12),
                    pytest.approx(float(np.percentile(values, 97.5)), abs=1e-12))
    # beta 0.1: helpfulness training did not raise helpfulness over safety training here, so the
    # helpfulness ratio's denominator is negative and its persistence undefined (None, as the study's rule).
    assert report.persistence["0.1"]["helpfulness"].value is None
    assert report.persistence["0.05"]["safety"].ci_low is not None


def test_seeds_and_sources_are_aggregated_as_the_study_did(results_dir, tmp_path):
    # A second "seed": the trained folders again under _s1 names. The source (no seed) is then counted
    # once per seed, each time on that seed's test cases, and every config averages its two seeds.
    copies = tmp_path / "s1"
    for path in results_dir.iterdir():
        if path.name != SOURCE:
            shutil.copytree(path, copies / path.name.replace("_s0", "_s1"))
    report = frontier([results_dir, copies], n_bootstrap=0)
    assert report.seeds == (0, 1) and len(report.points) == 10
    runs = [(p, 0) for p in results_dir.iterdir()] + [(p, 1) for p in copies.iterdir()]
    means, _ = independent(runs)
    assert (report.sources[0].safety, report.sources[0].helpfulness) == pytest.approx(means["source"], abs=1e-12)
    assert report.sources[0].runs == 2
    for point in report.points:
        assert (point.safety, point.helpfulness) == pytest.approx(means[point.config], abs=1e-12)
        assert point.runs == 2 and point.d_safety == pytest.approx(means[point.config][0] - means["source"][0])
    assert all(est.ci_low is None for by_metric in report.persistence.values() for est in by_metric.values())


def test_cli_prints_json_and_draws_a_readable_plot(results_dir, tmp_path, capsys):
    import matplotlib.image

    png = tmp_path / "frontier.png"
    assert main(["frontier", str(results_dir), "--json", "--bootstrap", "50", "--plot", str(png)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"r2", "slope", "intercept", "points", "persistence"} <= set(payload)
    assert set(payload["points"][0]) >= {"source", "config", "safety", "helpfulness", "d_safety", "d_helpfulness"}
    assert set(payload["persistence"]) == {"0.1", "0.05"}
    assert set(payload["persistence"]["0.05"]) == {"safety", "helpfulness"}
    assert len(payload["points"]) == 10 and 0 <= payload["r2"] <= 1
    image = matplotlib.image.imread(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] >= 600 and image.shape[1] >= 800
    assert image[..., :3].std() > 0.05  # not a blank canvas

    assert main(["frontier", str(results_dir), "--bootstrap", "0"]) == 0
    table = capsys.readouterr().out
    assert "S,H-0.05" in table and "R² +0.163" in table


def test_bad_inputs_are_named(results_dir, tmp_path, capsys):
    assert main(["frontier", str(results_dir / SOURCE)]) == 2  # a source model alone: nothing to compare
    assert "no trained model" in capsys.readouterr().err
    broken = tmp_path / "dpo_Qwen2.5-7B_safe_q32_s0"
    shutil.copytree(results_dir / "dpo_Qwen2.5-7B_safe_q32_s0", broken)
    evals = sorted(broken.glob("*_r0-15_*_eval_agent_safe.jsonl"))[0]
    evals.write_text("\n".join(evals.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="eval records for") as err:
        frontier([results_dir / SOURCE, broken], n_bootstrap=0)
    assert err.value.path == str(evals)
    with pytest.raises(InputError, match="more than one input"):
        frontier([results_dir, results_dir / SOURCE], n_bootstrap=0)


def test_a_source_named_otherwise_is_mapped_with_source(results_dir, tmp_path, capsys):
    # The same source results under a folder name that says nothing about the model.
    renamed = tmp_path / "my-base"
    shutil.copytree(results_dir / SOURCE, renamed / "base-model")
    trained = [p for p in results_dir.iterdir() if p.name != SOURCE]
    unmatched = frontier([renamed, *trained], n_bootstrap=0)
    assert all(p.d_safety is None for p in unmatched.points) and unmatched.r2 is None
    mapped = frontier([renamed, *trained], sources={"base-model": "Qwen2.5-7B"}, n_bootstrap=0)
    assert mapped.r2 == pytest.approx(frontier([results_dir], n_bootstrap=0).r2, abs=1e-12)
    assert main(["frontier", str(results_dir), "--source", "base-model"]) == 2
    assert "NAME=NICK" in capsys.readouterr().err
