"""Persistence: how much of a first training survives a second one (paper-reference §6.4).

For DPO beta b, with S-b safety only, H-b helpfulness only, S,H-b safety then helpfulness and H,S-b
helpfulness then safety::

    safety      = (Safety(S,H-b) - Safety(H-b)) / (Safety(S-b) - Safety(H-b))
    helpfulness = (Help(H,S-b)  - Help(S-b))   / (Help(H-b)  - Help(S-b))

1 means the first training's effect fully survives the second; 0 that it is fully overwritten. Each
mean pools every (seed, scenario) of one key, a key being a (source model, judge); a denominator not
above 1e-9 leaves that key's ratio undefined; the estimate is the mean of the keys' ratios. Only
scenarios that all four configurations were scored on (for that key and seed) are used.

Confidence intervals (95%, percentile): the scenarios of each (key, seed) are resampled with
replacement, drawn with ``random.Random(42)``, and the estimates recomputed. A draw that leaves a ratio
undefined is skipped for that ratio only (the study skipped the draw for both), so one undefined ratio
does not hide the other's interval; more than half the draws skipped leaves the interval undefined.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

BOOTSTRAP_SEED = 42
DENOMINATOR_EPSILON = 1e-9
ROLES = {"S": "s", "H": "h", "S,H": "sh", "H,S": "hs"}
"""Config label prefix → role in the formulas."""
COLUMNS = ("safety_s", "safety_h", "safety_sh", "helpfulness_s", "helpfulness_h", "helpfulness_hs")


class PersistenceEstimate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None
    """Mean over keys of the per-key ratio (``None`` when no key has a defined ratio)."""
    ci_low: float | None
    ci_high: float | None
    keys: int
    """(source model, judge) keys with a defined ratio."""


@dataclass(frozen=True)
class _Key:
    """One key's per-scenario scores, one array per column, rows grouped by seed (``blocks``)."""

    arrays: dict[str, np.ndarray]
    blocks: tuple[np.ndarray, ...]
    """Row positions of each seed's scenarios."""


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom > DENOMINATOR_EPSILON else None


def _key_ratios(key: _Key, rows: np.ndarray | None = None) -> tuple[float | None, float | None]:
    m = {name: float(values.mean() if rows is None else values[rows].mean()) for name, values in key.arrays.items()}
    safety = _ratio(m["safety_sh"] - m["safety_h"], m["safety_s"] - m["safety_h"])
    helpfulness = _ratio(m["helpfulness_hs"] - m["helpfulness_s"], m["helpfulness_h"] - m["helpfulness_s"])
    return safety, helpfulness


def _averaged(ratios: list[tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
    out = []
    for i in range(2):
        values = [r[i] for r in ratios if r[i] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out[0], out[1]


def _keys(trained: pl.DataFrame, beta: float) -> list[_Key]:
    labels = {f"{prefix}-{beta:g}": role for prefix, role in ROLES.items()}
    wide = (
        trained.lazy()
        .filter(pl.col("config").is_in(list(labels)))
        .with_columns(role=pl.col("config").replace_strict(labels))
        .collect()
        .pivot(on="role", index=["nick", "judge", "seed", "scenario_index"], values=["safety", "helpfulness"])
    )
    needed = [c for c in COLUMNS if c in wide.columns]
    if len(needed) < len(COLUMNS):
        return []
    wide = wide.drop_nulls(list(COLUMNS)).sort("nick", "judge", "seed", "scenario_index")
    keys = []
    for _, group in wide.group_by("nick", "judge", maintain_order=True):
        seeds = group["seed"].to_numpy()
        blocks = tuple(np.flatnonzero(seeds == s) for s in np.unique(seeds))
        keys.append(_Key({c: group[c].to_numpy().astype(float) for c in COLUMNS}, blocks))
    return keys


def _bootstrap(keys: list[_Key], n: int) -> tuple[list[float | None], list[float | None]]:
    """``n`` resampled estimates of each ratio (``None`` where a draw leaves it undefined)."""
    rng = random.Random(BOOTSTRAP_SEED)
    safety: list[float | None] = []
    helpfulness: list[float | None] = []
    for _ in range(n):
        ratios = []
        for key in keys:
            rows = np.concatenate([block[rng.choices(range(len(block)), k=len(block))] for block in key.blocks])
            ratios.append(_key_ratios(key, rows))
        s, h = _averaged(ratios)
        safety.append(s)
        helpfulness.append(h)
    return safety, helpfulness


def _estimate(value: float | None, draws: list[float | None], keys: int) -> PersistenceEstimate:
    defined = [d for d in draws if d is not None]
    if value is None or not defined or len(defined) < len(draws) / 2:
        return PersistenceEstimate(value=value, ci_low=None, ci_high=None, keys=keys)
    return PersistenceEstimate(value=value, ci_low=float(np.percentile(defined, 2.5)),
                               ci_high=float(np.percentile(defined, 97.5)), keys=keys)


def persistence(trained: pl.DataFrame, *, n_bootstrap: int = 10_000) -> dict[str, dict[str, PersistenceEstimate]]:
    """Persistence of safety and of helpfulness for every beta that has all four configurations.

    Args:
        trained: per-scenario scores of trained models on their test scenarios, with ``nick``, ``judge``,
            ``seed``, ``scenario_index``, ``config`` (labels as ``ModelName.config``), ``beta``, ``safety``,
            ``helpfulness`` (``prefkit.frontier.compute.restrict_to_test``).
        n_bootstrap: resampling draws for the intervals (0: no intervals).

    Returns:
        ``{"0.1": {"safety": PersistenceEstimate, "helpfulness": PersistenceEstimate}, ...}``.
    """
    single = trained.filter(pl.col("config").str.count_matches(",") == 0)
    out: dict[str, dict[str, PersistenceEstimate]] = {}
    for beta in sorted(single["beta"].drop_nulls().unique().to_list()):
        keys = _keys(trained, beta)
        if not keys:
            continue
        ratios = [_key_ratios(key) for key in keys]
        s, h = _averaged(ratios)
        draws_s, draws_h = _bootstrap(keys, n_bootstrap)
        out[f"{beta:g}"] = {
            "safety": _estimate(s, draws_s, sum(r[0] is not None for r in ratios)),
            "helpfulness": _estimate(h, draws_h, sum(r[1] is not None for r in ratios)),
        }
    return out
