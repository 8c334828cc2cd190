"""Preference pairs from judged trajectories: config, scoring, pairing rules, split, TRL rows.

Public API: ``PairConfig``, ``build_pairs(store, config) -> PairingResult``, ``write_pairs(result, store,
config, out) -> dict``, ``split_scenarios``, and in ``prefkit.pairing.rows``: ``pair_rows_features``,
``build_pair_rows``, ``load_pair_rows``. ``prefkit.pairing.validate`` checks rows against TRL.
"""

from prefkit.pairing.config import PairConfig
from prefkit.pairing.pairs import PairingResult, build_pairs, write_pairs
from prefkit.pairing.split import split_scenarios

__all__ = ["PairConfig", "PairingResult", "build_pairs", "split_scenarios", "write_pairs"]
