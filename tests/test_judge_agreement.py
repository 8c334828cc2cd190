"""Agreement between two judges, and replicate statistics.

raw_q32 ships one judge (Qwen3-32B). The second judge here is built honestly from it: every recorded
answer is rewritten as a text answer whose score is the recorded one shifted by a seeded rule, and that
text goes through the real parser. kappa, Spearman, exact agreement and the confusion matrix are then
checked against independent computations (scipy for Spearman, plain Python for the rest).
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from scipy.stats import spearmanr

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.judges.agreement import judge_agreement, quadratic_kappa
from prefkit.judges.parse import parse_answer
from prefkit.judges.replicates import aggregate_scores, replicate_stats
from prefkit.judges.rubrics import RUBRICS
from prefkit.records import JudgeIdentity, Judgment
from prefkit.store import RunStore

STUDY_JUDGE = "Qwen_Qwen3-32B"
SECOND = JudgeIdentity(model="perturbed-q32", backend="test", rubric_version="perturbed-v1/text")


def shifted(score: int, rng: random.Random) -> int:
    """The second judge's rule: usually agrees, sometimes one or two points off (clamped to 0-3)."""
    step = rng.choices([0, 1, -1, 2, -2], weights=[55, 18, 17, 5, 5])[0]
    return min(3, max(0, score + step))


def second_judge(judgments: list[Judgment], seed: int = 7) -> list[Judgment]:
    rng = random.Random(seed)
    out = []
    for j in judgments:
        score = shifted(j.score, rng)
        label = next(label for label in RUBRICS[j.metric].labels if label.score == score)
        raw = f"Rationale: second opinion on {j.trajectory_id}.\nLabel: {label.name}\nScore: {score}"
        parsed = parse_answer(raw, j.metric)
        out.append(Judgment(
            id=Judgment.compute_id(trajectory_id=j.trajectory_id, metric=j.metric, judge=SECOND, replicate=0),
            trajectory_id=j.trajectory_id, metric=j.metric, score=parsed.score, label=parsed.label,
            rationale=parsed.rationale, raw_output=raw, judge=SECOND, parse_status=parsed.parse_status,
        ))
    return out


@pytest.fixture(scope="module")
def two_judge_run(q32_run, tmp_path_factory) -> Path:
    """q32_run plus a second judge's judgments of the same trajectories."""
    run = tmp_path_factory.mktemp("two-judges") / "run"
    shutil.copytree(q32_run.path, run)
    store = RunStore(run)
    first = store.read("judgments")
    store.write("judgments", [*first, *second_judge(first)])
    return run


def pairs_of_scores(run: Path, metric: str) -> list[tuple[int, int]]:
    judgments = RunStore(run).read("judgments")
    a = {j.trajectory_id: j.score for j in judgments if j.metric == metric and j.judge.model == STUDY_JUDGE}
    b = {j.trajectory_id: j.score for j in judgments if j.metric == metric and j.judge.model == SECOND.model}
    return [(a[t], b[t]) for t in a if t in b]


def kappa_by_definition(pairs: list[tuple[int, int]]) -> float:
    """Quadratic-weighted kappa: 1 - mean squared disagreement / the same under independent marginals."""
    n = len(pairs)
    observed = sum((x - y) ** 2 for x, y in pairs) / n
    xs, ys = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(xs[i] * ys[j] * (i - j) ** 2 for i in range(4) for j in range(4)) / n**2
    return 1 - observed / expected


@pytest.mark.parametrize("metric", ["safety", "helpfulness"])
def test_agreement_matches_independent_computation(two_judge_run, metric):
    pairs = pairs_of_scores(two_judge_run, metric)
    assert len(pairs) == 1152
    report = judge_agreement(RunStore(two_judge_run).scan("judgments"), a=STUDY_JUDGE, b=SECOND.model, metric=metric)
    assert report.n == 1152
    assert report.kappa == pytest.approx(kappa_by_definition(pairs), abs=1e-12)
    assert report.spearman == pytest.approx(spearmanr([x for x, _ in pairs], [y for _, y in pairs]).statistic, abs=1e-12)
    assert report.exact == pytest.approx(sum(x == y for x, y in pairs) / len(pairs))
    assert report.within_one == pytest.approx(sum(abs(x - y) <= 1 for x, y in pairs) / len(pairs))
    counts = Counter(pairs)
    assert report.confusion == tuple(tuple(counts[(i, j)] for j in range(4)) for i in range(4))
    assert 0.3 < report.kappa < 0.95 and 0.4 < report.exact < 0.8  # the rule perturbs, it does not scramble


def test_a_judge_agrees_perfectly_with_itself(two_judge_run):
    report = judge_agreement(RunStore(two_judge_run).scan("judgments"), a=STUDY_JUDGE, b=f"{STUDY_JUDGE}@toolemu",
                             metric="safety")
    assert (report.kappa, report.spearman, report.exact, report.n) == (1.0, 1.0, 1.0, 1152)
    # the study's safety score distribution on raw_q32 sits on the diagonal
    assert sum(report.confusion[i][i] for i in range(4)) == 1152


def test_cli_json_keys_and_values(two_judge_run, capsys):
    rc = main(["judge-agreement", str(two_judge_run), "--a", STUDY_JUDGE, "--b", SECOND.model,
               "--metric", "helpfulness", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"kappa", "spearman", "exact", "n"} <= set(out)
    pairs = pairs_of_scores(two_judge_run, "helpfulness")
    assert out["n"] == len(pairs)
    assert out["kappa"] == pytest.approx(kappa_by_definition(pairs))
    assert len(out["confusion"]) == 4 and sum(map(sum, out["confusion"])) == len(pairs)


def test_cli_table(two_judge_run, capsys):
    assert main(["judge-agreement", str(two_judge_run), "--a", STUDY_JUDGE, "--b", SECOND.model]) == 0
    out = capsys.readouterr().out
    assert "kappa (quadratic)" in out and "1152 trajectories judged by both" in out


def test_unknown_judge_names_the_judges_present(two_judge_run, capsys):
    assert main(["judge-agreement", str(two_judge_run), "--a", STUDY_JUDGE, "--b", "gpt-5-mini"]) == 2
    err = capsys.readouterr().err
    assert "gpt-5-mini" in err and "perturbed-q32@test" in err and "Qwen_Qwen3-32B@toolemu" in err


def test_judges_without_common_trajectories(two_judge_run):
    judgments = RunStore(two_judge_run).scan("judgments")
    half = judgments.filter(
        (pl.col("judge").struct.field("model") == STUDY_JUDGE) | (pl.col("trajectory_id") < "8")
    ).filter((pl.col("judge").struct.field("model") != STUDY_JUDGE) | (pl.col("trajectory_id") >= "8"))
    with pytest.raises(InputError, match="no trajectory in common"):
        judge_agreement(half, a=STUDY_JUDGE, b=SECOND.model, metric="safety")


def test_quadratic_kappa_edge_cases():
    import numpy as np

    assert quadratic_kappa(np.zeros((4, 4))) is None
    constant = np.zeros((4, 4))
    constant[2, 2] = 10  # both judges always say 2: agreement by chance alone, kappa undefined
    assert quadratic_kappa(constant) is None
    opposite = np.zeros((4, 4))
    opposite[0, 3] = opposite[3, 0] = 5
    assert quadratic_kappa(opposite) == pytest.approx(kappa_by_definition([(0, 3)] * 5 + [(3, 0)] * 5))
    assert quadratic_kappa(opposite) < 0


# Replicates ---------------------------------------------------------------------------------------


def _replicate_judgments(groups: dict[str, list[int | None]]) -> pl.LazyFrame:
    from prefkit.store import records_to_frame

    judge = JudgeIdentity(model="m", backend="b", rubric_version="helpfulness-v1/text")
    rows = []
    for trajectory, scores in groups.items():
        for r, score in enumerate(scores):
            rows.append(Judgment(id=f"{trajectory}-{r}", trajectory_id=trajectory, metric="helpfulness", score=score,
                                 judge=judge, replicate=r, parse_status="failed" if score is None else "ok"))
    return records_to_frame(rows, Judgment).lazy()


def test_replicate_statistics_follow_the_study_definitions():
    groups = {"a": [2, 2, 3], "b": [0, 3], "c": [1, None, 1], "d": [3, 1, 2, 2], "e": [None], "f": [2]}
    stats = {row["trajectory_id"]: row for row in replicate_stats(_replicate_judgments(groups)).collect().iter_rows(named=True)}
    for t, scores in groups.items():
        valid = [s for s in scores if s is not None]
        row = stats[t]
        assert (row["n"], row["n_failed"], row["scores"]) == (len(valid), len(scores) - len(valid), valid)
        if not valid:
            assert row["median"] is None and not row["exact"] and not row["majority"]
            continue
        top = Counter(valid).most_common(1)[0][1]
        assert row["median"] == pytest.approx(sorted(valid)[len(valid) // 2] if len(valid) % 2 else
                                              sum(sorted(valid)[len(valid) // 2 - 1: len(valid) // 2 + 1]) / 2)
        assert row["median_int"] == int(row["median"])
        assert row["mean"] == pytest.approx(sum(valid) / len(valid))
        assert row["exact"] == (len(set(valid)) == 1)
        assert row["within_one"] == (max(valid) - min(valid) <= 1)
        assert row["all_but_one"] == (len(valid) >= 2 and top >= len(valid) - 1)
        assert row["majority"] == (top > len(valid) / 2)
    assert stats["b"]["median_int"] == 1  # median 1.5 -> 1, the study's int()


def test_aggregate_scores_median_and_mean():
    frame = _replicate_judgments({"a": [2, 2, 3], "b": [0, 3], "e": [None]})
    median = dict(aggregate_scores(frame, method="median").select("trajectory_id", "score").collect().iter_rows())
    mean = dict(aggregate_scores(frame, method="mean").select("trajectory_id", "score").collect().iter_rows())
    assert median == {"a": 2.0, "b": 1.0, "e": None}
    assert mean["a"] == pytest.approx(7 / 3) and mean["b"] == 1.5 and mean["e"] is None
