"""The pairing rules: the predicate against a plain reading of the study's rules, the bucketed join against a
plain self-join, replicate aggregation and agreement, judge choice, and every beyond-the-study option on
real data (raw_q32)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import polars as pl
import pytest

from prefkit.errors import InputError
from prefkit.pairing import PairConfig, build_pairs, write_pairs
from prefkit.pairing.pairs import scenario_splits, trajectory_table
from prefkit.pairing.scores import trajectory_scores
from prefkit.pairing.strategies import iter_pair_batches, pair_predicate, passing_bucket_pairs
from prefkit.records import AgentIdentity, JudgeIdentity, Judgment, Scenario, SourceRef, Trajectory
from prefkit.store import new_run

# --------------------------------------------------------------------------------------------------
# The predicate, exhaustively, against the rules as paper-reference.md §4 states them
# --------------------------------------------------------------------------------------------------


def _reference_rule(config: PairConfig, c: tuple[int, int], r: tuple[int, int]) -> bool:
    """Is (c, r) a pair with c chosen? c/r = (first metric, second metric). Written from the text, step by step."""
    gap, low = config.min_gap, config.min_chosen

    def ok(a: float, b: float) -> bool:
        return a > b and a - b >= gap and a >= low

    if c[0] == r[0]:
        first = config.ties == "second_metric" and c[0] >= low and ok(c[1], r[1])
    else:
        first = ok(c[0], r[0])
    if not first:
        return False
    if config.strategy == "both" and not ok(c[1], r[1]):
        return False
    if config.strategy == "average" and not ok((c[0] + c[1]) / 2, (r[0] + r[1]) / 2):
        return False
    if config.safety_floor is not None:
        safety = c[0] if config.metrics[0] == "safety" else c[1]
        if safety < config.safety_floor:
            return False
    return True


CONFIGS = [
    PairConfig(strategy=s, min_gap=g, min_chosen=m)
    for s in ("safety", "helpfulness", "both", "average")
    for g, m in ((2, 2), (1, 0), (1, 3), (3, 2))
] + [
    PairConfig(strategy="safety", ties="second_metric"),
    PairConfig(strategy="both", ties="second_metric", min_gap=1),
    PairConfig(strategy="average", ties="second_metric", min_gap=1),
    PairConfig(strategy="both", safety_floor=3),
    PairConfig(strategy="helpfulness", safety_floor=2, min_gap=1),
    PairConfig(strategy="average", first_metric="safety", safety_floor=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: json.dumps(c.model_dump(exclude_defaults=True)))
def test_predicate_matches_the_study_rules_on_every_score_combination(config: PairConfig) -> None:
    tuples = list(itertools.product(range(4), repeat=2))
    buckets = pl.DataFrame({"bucket": range(len(tuples)), "m1": [float(t[0]) for t in tuples],
                            "m2": [float(t[1]) for t in tuples]}, schema_overrides={"bucket": pl.UInt32})
    got = set(passing_bucket_pairs(buckets, config).iter_rows())
    expected = {(i, j) for (i, c), (j, r) in itertools.product(enumerate(tuples), repeat=2) if _reference_rule(config, c, r)}
    assert got == expected
    # a pair passes in one orientation at most, which the bucketed join relies on
    assert not {(j, i) for i, j in got} & got


def test_predicate_treats_missing_scores_as_failing() -> None:
    frame = pl.DataFrame({"c1": [3.0, 3.0, None], "r1": [0.0, 0.0, 0.0], "c2": [3.0, None, 3.0], "r2": [0.0, 0.0, 0.0]})
    assert frame.select(pair_predicate(PairConfig(strategy="both")).fill_null(False)).to_series().to_list() == [
        True, False, False,
    ]
    # a single-metric strategy ignores the second metric, missing or not
    assert frame.select(pair_predicate(PairConfig(strategy="safety")).fill_null(False)).to_series().to_list() == [
        True, True, False,
    ]


# --------------------------------------------------------------------------------------------------
# The bucketed, batched join equals a plain self-join on real data
# --------------------------------------------------------------------------------------------------


def _plain_self_join(table: pl.DataFrame, config: PairConfig) -> pl.DataFrame:
    """Every i < j of a scenario, chosen = the side for which the predicate holds: the textbook form."""
    side = table.filter("candidate").select("order", "group", m1=config.metrics[0], m2=config.metrics[1])
    pairs = side.join(side, on="group", suffix="_j").filter(pl.col("order") < pl.col("order_j"))
    forward = pairs.rename({"m1": "c1", "m2": "c2", "m1_j": "r1", "m2_j": "r2"}).filter(pair_predicate(config))
    backward = pairs.rename({"m1_j": "c1", "m2_j": "c2", "m1": "r1", "m2": "r2"}).filter(pair_predicate(config))
    return pl.concat([
        forward.select("group", "order", "order_j", chosen="order", rejected="order_j"),
        backward.select("group", "order", "order_j", chosen="order_j", rejected="order"),
    ]).sort("group", "order", "order_j").select("group", "chosen", "rejected")


@pytest.mark.parametrize("config", [
    PairConfig(strategy="safety"),
    PairConfig(strategy="both", ties="second_metric"),
    PairConfig(strategy="average", min_gap=1, min_chosen=1),
    PairConfig(strategy="helpfulness", safety_floor=2, min_gap=1),
], ids=["safety", "both-ties", "average-gap1", "help-floor"])
def test_bucketed_batched_join_equals_a_plain_self_join(q32_run, config: PairConfig) -> None:
    table = trajectory_table(q32_run, config, scenario_splits(q32_run.read("scenarios"), config))
    candidates = table.filter("candidate").select("order", "group", m1=config.metrics[0], m2=config.metrics[1])
    expected = _plain_self_join(table, config)
    one_batch = pl.concat(list(iter_pair_batches(candidates, config)))
    many_batches = list(iter_pair_batches(candidates, config, batch_candidate_pairs=100))
    assert len(many_batches) > 20
    assert expected.height > 0
    assert one_batch.select("group", "chosen", "rejected").equals(expected)
    assert pl.concat(many_batches).equals(one_batch)


# --------------------------------------------------------------------------------------------------
# Scores: replicates, agreement, judges (small synthetic runs)
# --------------------------------------------------------------------------------------------------

JUDGE = JudgeIdentity(model="judge-a")


def _run(path: Path, spec: dict[str, dict[str, list]], *, judge: JudgeIdentity = JUDGE,
         extra_judge: JudgeIdentity | None = None):
    """One scenario ``s0``; per agent, replicate scores per metric (``None`` = a failed judgment; a
    ``(score, distribution)`` tuple = a logprob judgment)."""
    scenarios = [Scenario(id=f"s{i}", suite="t", index=i, instruction="-", toolkits=()) for i in range(2)]
    trajectories, judgments = [], []
    for line, (agent, metrics) in enumerate(spec.items()):
        identity = AgentIdentity(name=agent, model=agent)
        tid = Trajectory.compute_id(scenario_id="s0", agent=identity, emulator=None, sample_index=0, steps=(),
                                    final_log=agent, final_answer=agent)
        trajectories.append(Trajectory(id=tid, scenario_id="s0", agent=identity, final_log=agent,
                                       final_answer=agent, finish_reason="final_answer",
                                       source=SourceRef(file=f"{agent}/run.jsonl", line=line)))
        for who in filter(None, (judge, extra_judge)):
            for metric, scores in metrics.items():
                for replicate, entry in enumerate(scores):
                    score, distribution = entry if isinstance(entry, tuple) else (entry, None)
                    judgments.append(Judgment(
                        id=Judgment.compute_id(trajectory_id=tid, metric=metric, judge=who, replicate=replicate),
                        trajectory_id=tid, metric=metric, score=score, judge=who, replicate=replicate,
                        parse_status="ok" if score is not None else "failed", distribution=distribution,
                    ))
    with new_run(path, created_by="test") as store:
        store.write("scenarios", scenarios)
        store.write("trajectories", trajectories)
        store.write("judgments", judgments)
    return store


def _scores(store, **options) -> dict[str, tuple]:
    config = PairConfig(strategy="safety", **options)
    table = trajectory_table(store, config, scenario_splits(store.read("scenarios"), config))
    return {agent: (s, h) for agent, s, h in table.select("agent", "safety", "helpfulness").iter_rows()}


REPLICATES = {
    "a": {"safety": [2, 2, 3], "helpfulness": [2, 3]},
    "b": {"safety": [1, 2, 3], "helpfulness": [0, 0, 0, 3]},
    "c": {"safety": [3, None, 3], "helpfulness": [None, None]},
}


def test_median_is_truncated_and_mean_kept(tmp_path: Path) -> None:
    store = _run(tmp_path / "run", REPLICATES)
    assert _scores(store) == {"a": (2.0, 2.0), "b": (2.0, 0.0), "c": (3.0, None)}  # median 2.5 -> int() 2
    mean = _scores(store, aggregation="mean")
    assert mean["a"] == pytest.approx((7 / 3, 2.5)) and mean["b"] == pytest.approx((2.0, 0.75))
    assert mean["c"] == (3.0, None)  # failed replicates are ignored; all failed -> no score


@pytest.mark.parametrize(("agreement", "expected"), [
    # a: safety 2,2,3 (top 2 of 3), help 2,3 (top 1 of 2); b: safety 1,2,3, help 0,0,0,3; c: safety 3,3
    ("all_but_one", {"a": (2.0, 2.0), "b": (None, 0.0), "c": (3.0, None)}),
    ("majority", {"a": (2.0, None), "b": (None, 0.0), "c": (3.0, None)}),
    ("exact", {"a": (None, None), "b": (None, None), "c": (3.0, None)}),
])
def test_agreement_filters_drop_disagreeing_scores(tmp_path: Path, agreement: str, expected: dict) -> None:
    assert _scores(_run(tmp_path / "run", REPLICATES), agreement=agreement) == expected


def test_agreement_needs_replicates(q32_run) -> None:
    with pytest.raises(InputError, match="multi-replicate"):
        build_pairs(q32_run, PairConfig(strategy="safety", agreement="majority"))


def test_aggregation_changes_which_pairs_pass(tmp_path: Path) -> None:
    # x: help 3,3,2 (median 3, mean 2.67); y: help 1,1,2 (median 1, mean 1.33); z: help 2,3 (median 2, mean 2.5)
    store = _run(tmp_path / "run", {
        "x": {"helpfulness": [3, 3, 2]}, "y": {"helpfulness": [1, 1, 2]}, "z": {"helpfulness": [2, 3]},
        "w": {"helpfulness": [0]},
    })
    median = build_pairs(store, PairConfig(strategy="helpfulness")).pairs
    mean = build_pairs(store, PairConfig(strategy="helpfulness", aggregation="mean")).pairs
    assert median.select("chosen_agent", "rejected_agent", "chosen_score", "margin").rows() == [
        ("x", "y", 3.0, 2.0), ("x", "w", 3.0, 3.0), ("z", "w", 2.0, 2.0)]  # z: median 2.5 -> 2
    assert mean.select("chosen_agent", "rejected_agent").rows() == [("x", "w"), ("z", "w")]
    assert mean.filter(pl.col("chosen_agent") == "z")["chosen_score"].item() == 2.5


def test_expected_aggregation_reads_logprob_distributions(tmp_path: Path) -> None:
    # p: expected 0.6*1 + 0.4*2 = 1.4 (score 1); q: 0.9*1 + 0.1*2 = 1.1 (score 1); r: a text judgment, score 2
    one = {"p": {"safety": [(1, (0.0, 0.6, 0.4, 0.0))]}, "q": {"safety": [(1, (0.0, 0.9, 0.1, 0.0))]},
           "r": {"safety": [2]}}
    store = _run(tmp_path / "one", one)
    assert _scores(store) == {"p": (1.0, None), "q": (1.0, None), "r": (2.0, None)}
    expected = _scores(store, aggregation="expected")
    assert {k: v[0] for k, v in expected.items()} == pytest.approx({"p": 1.4, "q": 1.1, "r": 2.0})
    loose = {"min_gap": 0.25, "min_chosen": 0}
    assert build_pairs(store, PairConfig(strategy="safety", **loose)).pairs.select(
        "chosen_agent", "rejected_agent").rows() == [("r", "p"), ("r", "q")]  # p and q tie at 1
    pairs = build_pairs(store, PairConfig(strategy="safety", aggregation="expected", **loose)).pairs
    assert pairs.select("chosen_agent", "rejected_agent").rows() == [("p", "q"), ("r", "p"), ("r", "q")]
    assert pairs["margin"].to_list() == pytest.approx([0.3, 0.6, 0.9])
    # replicates: the mean of their expected scores; a failed replicate is left out
    many = {"p": {"safety": [(1, (0.0, 0.6, 0.4, 0.0)), (2, (0.0, 0.0, 1.0, 0.0)), None]}, "q": {"safety": [None]}}
    assert _scores(_run(tmp_path / "many", many), aggregation="expected")["p"][0] == pytest.approx(1.7)
    with pytest.raises(ValueError, match="aggregation"):
        PairConfig(strategy="safety", aggregation="expected", study_compatible=True)


def test_single_replicate_fast_path_equals_the_replicate_path(q32_run) -> None:
    config = PairConfig(strategy="safety")
    judgments = q32_run.scan("judgments")
    fast = trajectory_scores(judgments, config).collect().sort("trajectory_id")
    # the same judgments with replicate numbers that force the general (group_by) path
    relabelled = judgments.with_columns(replicate=pl.lit(1, pl.Int64))
    general = trajectory_scores(relabelled, config).collect().sort("trajectory_id")
    assert fast.height == 1152 and fast.equals(general)


def test_judge_must_be_chosen_when_several(tmp_path: Path) -> None:
    other = JudgeIdentity(model="judge-b")
    store = _run(tmp_path / "run", {"a": {"safety": [3]}, "b": {"safety": [0]}}, extra_judge=other)
    with pytest.raises(InputError, match="several judges"):
        build_pairs(store, PairConfig(strategy="safety"))
    with pytest.raises(InputError, match="judge-c"):
        build_pairs(store, PairConfig(strategy="safety", judge="judge-c"))
    assert build_pairs(store, PairConfig(strategy="safety", judge="judge-b")).counts["pairs"] == 1


def test_no_pair_gives_an_empty_frame_and_no_split_files(tmp_path: Path) -> None:
    store = _run(tmp_path / "run", {"a": {"safety": [2]}, "b": {"safety": [1]}})
    result = build_pairs(store, PairConfig(strategy="safety"))
    assert result.pairs.height == 0 and result.counts["pairs"] == 0 and result.candidates == 2
    config = PairConfig(strategy="safety", rendering="native")
    counts = write_pairs(result, store, config, tmp_path / "pairs")
    assert counts["train_pairs"] == counts["test_pairs"] == 0
    # a split without rows gets no 0-row file (`datasets` refuses one); pairs.parquet is there, empty
    assert not (tmp_path / "pairs" / "train.parquet").exists() and not (tmp_path / "pairs" / "test.parquet").exists()
    assert pl.read_parquet(tmp_path / "pairs" / "pairs.parquet").height == 0


def test_trajectories_of_unknown_scenarios_and_runs_without_scenarios_are_refused(tmp_path: Path) -> None:
    store = _run(tmp_path / "run", {"a": {"safety": [3]}, "b": {"safety": [0]}})
    store.write("scenarios", [Scenario(id="s5", suite="t", index=0, instruction="-", toolkits=())])
    with pytest.raises(InputError, match="not in the run's scenarios table, e.g. 's0'"):
        build_pairs(store, PairConfig(strategy="safety"))
    store.write("scenarios", [])
    with pytest.raises(InputError, match="no scenarios"):
        build_pairs(store, PairConfig(strategy="safety"))


# --------------------------------------------------------------------------------------------------
# Beyond-the-study options on raw_q32
# --------------------------------------------------------------------------------------------------


def _is_subsequence(small: pl.DataFrame, big: pl.DataFrame) -> bool:
    position = {pid: i for i, pid in enumerate(big["id"].to_list())}
    where = [position.get(pid) for pid in small["id"].to_list()]
    return None not in where and where == sorted(where)


@pytest.fixture(scope="module")
def base_pairs(q32_run) -> dict[str, pl.DataFrame]:
    return {s: build_pairs(q32_run, PairConfig(strategy=s)).pairs for s in ("safety", "helpfulness", "both", "average")}


def test_dedup_drops_repeated_renderings_and_only_their_pairs(q32_run, base_pairs) -> None:
    trajectories = q32_run.frame("trajectories").select("id", "scenario_id", "messages", "react_messages")
    for rendering, column in (("native", "messages"), ("react", "react_messages")):
        seen: set[tuple[str, str]] = set()
        dropped: set[str] = set()
        for tid, scenario, messages in trajectories.select("id", "scenario_id", column).iter_rows():
            key = (scenario, json.dumps(messages, sort_keys=True))
            (dropped.add(tid) if key in seen else seen.add(key))
        result = build_pairs(q32_run, PairConfig(strategy="safety", dedup=True, rendering=rendering))
        assert result.candidates == 1152 - len(dropped)
        base = base_pairs["safety"]
        kept = base.filter(~pl.col("chosen_id").is_in(list(dropped)) & ~pl.col("rejected_id").is_in(list(dropped)))
        assert result.pairs.equals(kept)
        if rendering == "native":
            # raw_q32 has runs whose native rendering (the final answer alone) repeats another's
            assert dropped and result.pairs.height < base.height
        else:
            assert not dropped  # the full ReAct text of raw_q32's runs never repeats within a case


@pytest.mark.parametrize("strategy", ["safety", "helpfulness", "both"])
def test_max_pairs_per_scenario_keeps_the_largest_margins(q32_run, base_pairs, strategy: str) -> None:
    base = base_pairs[strategy]
    capped = build_pairs(q32_run, PairConfig(strategy=strategy, max_pairs_per_scenario=3)).pairs
    assert capped.group_by("scenario_id").len()["len"].max() == 3
    assert 0 < capped.height < base.height and _is_subsequence(capped, base)
    assert capped["scenario_id"].n_unique() == base["scenario_id"].n_unique()
    top = base.group_by("scenario_id").agg(pl.col("margin").sort(descending=True).head(3).sum())
    got = capped.group_by("scenario_id").agg(pl.col("margin").sum())
    assert top.sort("scenario_id").equals(got.sort("scenario_id"))


@pytest.mark.parametrize("strategy", ["safety", "helpfulness"])
def test_max_chosen_reuse_caps_each_chosen_trajectory(q32_run, base_pairs, strategy: str) -> None:
    base = base_pairs[strategy]
    capped = build_pairs(q32_run, PairConfig(strategy=strategy, max_chosen_reuse=2)).pairs
    assert base.group_by("chosen_id").len()["len"].max() > 2
    assert capped.group_by("chosen_id").len()["len"].max() == 2
    assert _is_subsequence(capped, base)
    assert set(capped["chosen_id"]) == set(base["chosen_id"])  # every chosen trajectory keeps its best pairs
    best = base.group_by("chosen_id").agg(pl.col("margin").max())
    assert best.join(capped.group_by("chosen_id").agg(pl.col("margin").max()), on="chosen_id").filter(
        pl.col("margin") != pl.col("margin_right")).height == 0
    both_caps = build_pairs(q32_run, PairConfig(strategy=strategy, max_chosen_reuse=2, max_pairs_per_scenario=4)).pairs
    assert both_caps.group_by("chosen_id").len()["len"].max() <= 2
    assert both_caps.group_by("scenario_id").len()["len"].max() <= 4 and _is_subsequence(both_caps, capped)


@pytest.mark.parametrize("strategy", ["helpfulness", "both", "average"])
def test_safety_floor_filters_chosen_safety(q32_run, base_pairs, strategy: str) -> None:
    base = base_pairs[strategy]
    floored = build_pairs(q32_run, PairConfig(strategy=strategy, safety_floor=3)).pairs
    assert floored.equals(base.filter(pl.col("chosen_safety") >= 3))
    assert 0 < floored.height < base.height


@pytest.mark.parametrize("strategy", ["safety", "both"])
def test_ties_on_the_first_metric_can_be_decided_by_the_second(q32_run, base_pairs, strategy: str) -> None:
    base = base_pairs[strategy]
    tied = build_pairs(q32_run, PairConfig(strategy=strategy, ties="second_metric")).pairs
    assert _is_subsequence(base, tied) and tied.height > base.height
    added = tied.filter(~pl.col("id").is_in(base["id"].implode()))
    second = "helpfulness" if strategy == "safety" else "safety"
    assert (added["margin"] == 0).all() and (added["chosen_score"] >= 2).all()
    assert (added[f"chosen_{second}"] - added[f"rejected_{second}"] >= 2).all()
    assert (added[f"chosen_{second}"] >= 2).all()
