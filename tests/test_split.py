"""The split rule: the study's seeded shuffle reproduced bit for bit, the fraction rule, and disjointness."""

from __future__ import annotations

import random

import pytest

from prefkit.errors import InputError
from prefkit.pairing.split import split_scenarios, study_test_indices
from prefkit.records import Scenario


def _suite(n: int, *, offset: int = 0) -> list[Scenario]:
    return [Scenario(id=f"official_{i}", suite="t", index=i + offset, instruction="-", toolkits=()) for i in range(n)]


def _global_random_test_indices(n: int, seed: int) -> list[int]:
    """The study's own formulation, with the global generator (state saved and restored around it)."""
    state = random.getstate()
    try:
        idx = list(range(n))
        random.seed(seed)
        random.shuffle(idx)
        return sorted(idx[n // 2 :])
    finally:
        random.setstate(state)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 42, 12345])
@pytest.mark.parametrize("n", [144, 10, 7])
def test_local_generator_matches_global_seed_and_shuffle(n: int, seed: int) -> None:
    assert study_test_indices(n, seed) == _global_random_test_indices(n, seed)


@pytest.mark.parametrize(
    ("seed", "prefix"),
    [
        (0, [0, 1, 7, 8, 9, 10, 11, 12, 18, 24]),
        (1, [0, 1, 2, 3, 4, 7, 12, 13, 15, 16]),
        (2, [3, 4, 9, 14, 17, 20, 21, 22, 23, 29]),
    ],
)
def test_study_test_indices_match_the_papers_values(seed: int, prefix: list[int]) -> None:
    test = study_test_indices(144, seed)
    assert len(test) == 72 and test == sorted(set(test))
    assert test[:10] == prefix


def test_study_rule_splits_the_suite_by_index_into_two_disjoint_halves() -> None:
    splits = split_scenarios(_suite(144), "study", 0)
    test = {sid for sid, s in splits.items() if s == "test"}
    train = {sid for sid, s in splits.items() if s == "train"}
    assert len(test) == len(train) == 72 and not test & train and len(splits) == 144
    assert test == {f"official_{i}" for i in study_test_indices(144, 0)}
    # the rule shuffles indices, so the order of the scenarios passed in does not matter
    assert split_scenarios(list(reversed(_suite(144))), "study", 0) == splits


def test_study_rule_needs_indices_zero_to_n_minus_one() -> None:
    with pytest.raises(InputError, match="indices"):
        split_scenarios(_suite(10, offset=1), "study", 0)
    with pytest.raises(InputError, match="not unique"):
        split_scenarios(_suite(3) + _suite(1), "study", 0)


@pytest.mark.parametrize(("n", "fraction", "n_test"), [(144, 0.5, 72), (10, 0.25, 2), (10, 0.0, 0), (7, 1.0, 7)])
def test_fraction_rule_counts_and_disjointness(n: int, fraction: float, n_test: int) -> None:
    suite = _suite(n)
    splits = split_scenarios(suite, "fraction", 3, fraction)
    assert sorted(splits) == sorted(s.id for s in suite)
    assert sum(v == "test" for v in splits.values()) == n_test


def test_fraction_rule_is_seeded_over_sorted_ids() -> None:
    suite = _suite(50)
    first = split_scenarios(suite, "fraction", 7, 0.3)
    # same seed, scenarios given in another order: same split (the ids are sorted before the shuffle)
    assert split_scenarios(list(reversed(suite)), "fraction", 7, 0.3) == first
    assert split_scenarios(suite, "fraction", 8, 0.3) != first
    order = sorted(s.id for s in suite)
    random.Random(7).shuffle(order)
    assert {sid for sid, s in first.items() if s == "test"} == set(order[-15:])
    # fraction ignores indices, so a suite without them still splits
    unindexed = [Scenario(id=f"x{i}", suite="t", instruction="-", toolkits=()) for i in range(4)]
    assert sum(v == "test" for v in split_scenarios(unindexed, "fraction", 0, 0.5).values()) == 2
