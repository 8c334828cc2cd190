"""The train/test split of scenarios: the one split rule every prefkit stage uses.

Pairs are split by scenario, never by pair, so no scenario's trajectories appear on both sides.

``study`` reproduces ``compute_test_indices(seed)`` of the study bit for bit: ``idx = list(range(N))``,
``random.seed(seed); random.shuffle(idx)``, test = ``idx[N // 2:]``, with N the size of the suite and the
scenarios' ``index`` as the shuffled numbers. A local ``random.Random(seed)`` is used instead of the global
generator: seeding either one runs the same Mersenne Twister initialisation, so the shuffles are identical
(tests check it) and nothing else in the process is disturbed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Literal

from prefkit.errors import InputError
from prefkit.pairing.config import SplitRule
from prefkit.records import Scenario

SplitName = Literal["train", "test"]


def study_test_indices(n: int, seed: int) -> list[int]:
    """The study's test scenario indices for a suite of ``n`` scenarios, sorted (72 of 144)."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return sorted(idx[n // 2 :])


def split_scenarios(
    scenarios: Iterable[Scenario], rule: SplitRule = "study", seed: int = 0, test_fraction: float = 0.5
) -> dict[str, SplitName]:
    """Assign every scenario of a suite to ``train`` or ``test``.

    Args:
        scenarios: the whole suite (not only the scenarios that have pairs: N is the suite's size).
        rule: ``study`` (see the module docstring; ``test_fraction`` is ignored) or ``fraction`` (the ids,
            sorted, are shuffled with ``random.Random(seed)``; the last ``round(test_fraction * N)`` are test).
        seed: the split seed.
        test_fraction: share of test scenarios for ``fraction``.

    Returns:
        ``{scenario_id: "train" | "test"}`` for every scenario.

    Raises:
        InputError: duplicate ids, or for ``study`` scenario indices that are not exactly 0..N-1.

    Example: with the 144 ToolEmu cases and seed 0, ``official_0`` and ``official_1`` are test.
    """
    suite = list(scenarios)
    ids = [s.id for s in suite]
    if len(set(ids)) != len(ids):
        raise InputError("scenario ids are not unique; the split needs one entry per scenario", field="scenarios.id")
    n = len(suite)
    if rule == "study":
        indices = sorted(s.index for s in suite if s.index is not None)
        if indices != list(range(n)):
            raise InputError(
                f"the study split shuffles scenario indices 0..{n - 1}, but the {n} scenarios' indices are "
                "missing, repeated or out of range; use split_rule 'fraction'",
                field="scenarios.index",
            )
        test = set(study_test_indices(n, seed))
        return {s.id: ("test" if s.index in test else "train") for s in suite}
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_test = round(test_fraction * n)
    test_ids = set(order[n - n_test :]) if n_test else set()
    return {i: ("test" if i in test_ids else "train") for i in ids}
