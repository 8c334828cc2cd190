"""Build preference pairs from a judged run, and write the pairs folder.

``build_pairs(store, config)`` reads the run's trajectories, judgments and scenarios, scores each trajectory
(``scores.py``), pairs them within each scenario (``strategies.py``), splits by scenario (``split.py``) and
returns the pairs as a frame with the ``PreferencePair`` schema. ``write_pairs`` writes::

    PAIRS/pairs.parquet   PreferencePair records (the run store's "pairs" table)
    PAIRS/train.parquet   TRL rows of the train split (rows.py); not written when the split has no rows
    PAIRS/test.parquet    TRL rows of the test split; likewise
    PAIRS/pairing.json    counts and the config
    PAIRS/manifest.json   the run-store manifest (PAIRS is created all at once with new_run)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from prefkit.errors import InputError, PrefkitError
from prefkit.pairing.config import PairConfig
from prefkit.pairing.scores import select_judge, trajectory_scores
from prefkit.pairing.split import split_scenarios
from prefkit.pairing.strategies import iter_pair_batches
from prefkit.records import PreferencePair, Scenario
from prefkit.store import RunStore, file_sha256, new_run, polars_schema, write_json_atomic

PAIR_SCHEMA = polars_schema(PreferencePair)

PAIR_SPLITS = ("train", "test")
"""The splits of a pairs folder, in order; split ``S``'s TRL rows are ``PAIRS/S.parquet`` (``split_file``)."""


def split_file(pairs_dir: str | Path, split: str) -> Path:
    """Where split ``split``'s TRL rows live in a pairs folder (``PAIRS/<split>.parquet``).

    The file is absent when the split has no rows (``write_pairs`` writes no 0-row file, as the dataset
    layout lays none out: a 0-row file makes ``datasets.load_dataset`` fail with 'corresponds to no data').
    Readers treat an absent split file of a pairs folder (one with ``pairing.json``) as zero rows.
    """
    return Path(pairs_dir) / f"{split}.parquet"


def present_split_files(pairs_dir: str | Path) -> dict[str, Path]:
    """The split files a pairs folder holds, ``{split: path}`` in ``PAIR_SPLITS`` order (splits with rows)."""
    return {split: path for split in PAIR_SPLITS if (path := split_file(pairs_dir, split)).is_file()}


@dataclass(frozen=True)
class PairingResult:
    """The pairs of one ``build_pairs`` call and what they were made from."""

    pairs: pl.DataFrame
    """``PreferencePair`` schema, in the study's order (scenarios first-seen, then pairs i < j)."""
    trajectories: int
    """Trajectories in the run."""
    candidates: int
    """Trajectories that could pair: a usable first-metric score (after ``dedup``)."""

    @property
    def counts(self) -> dict[str, int]:
        """``pairs``, ``scenarios`` (with at least one pair), per-split pairs and scenarios, inputs."""
        by_split = self.pairs.group_by("split").agg(pairs=pl.len(), scenarios=pl.col("scenario_id").n_unique())
        per = {row["split"]: row for row in by_split.iter_rows(named=True)}
        return {
            "pairs": self.pairs.height,
            "scenarios": self.pairs["scenario_id"].n_unique(),
            "train_pairs": per.get("train", {}).get("pairs", 0),
            "test_pairs": per.get("test", {}).get("pairs", 0),
            "train_scenarios": per.get("train", {}).get("scenarios", 0),
            "test_scenarios": per.get("test", {}).get("scenarios", 0),
            "trajectories": self.trajectories,
            "candidates": self.candidates,
        }


class NothingToPair(PrefkitError):
    """The run lacks what the pairing rules read: trajectories, or usable judgments on a metric they use.
    Pairing would only write 0 pairs, so it stops and says what is missing and how to make it (exit code 1)."""

    exit_code = 1


def metrics_read(config: PairConfig) -> tuple[str, ...]:
    """The metrics whose scores ``config``'s rules read (see ``strategies``): the first metric always; the
    second for ``both``/``average`` and for ``ties="second_metric"``; safety for a ``safety_floor``."""
    first, second = config.metrics
    read = [first]
    if config.strategy in ("both", "average") or config.ties == "second_metric":
        read.append(second)
    if config.safety_floor is not None and "safety" not in read:
        read.append("safety")
    return tuple(read)


def check_pairable(store: RunStore, config: PairConfig) -> None:
    """Refuse a run that cannot give a single pair for lack of input, naming what is missing.

    Raises:
        NothingToPair: the run has no trajectories; or, for a metric in ``metrics_read(config)``, no judgment
            by the judge in use, or only failed ones (no score).
        InputError: an ambiguous or unknown judge (``scores.select_judge``).
    """
    run = store.path
    if not store.scan("trajectories").select(pl.len()).collect().item():
        raise NothingToPair(f"run {run} holds no trajectories, so there is nothing to pair; roll agents out with "
                            f"`prefkit rollout SUITE --agent MODEL@BACKEND --emulator MODEL@BACKEND --out {run}`, "
                            "or import judged ones with `prefkit import toolemu`")
    judgments = store.scan("judgments")
    judge = select_judge(judgments, config)
    needed = metrics_read(config)
    counts = {metric: (n, scored) for metric, n, scored in (
        judgments.filter(pl.col("metric").is_in(needed) & (pl.col("judge").struct.field("model") == judge))
        .group_by("metric").agg(pl.len(), pl.col("score").is_not_null().sum())
        .collect().rows()
    )} if judge is not None else {}
    by = f" by judge {judge!r}" if judge is not None else ""
    missing = [m for m in needed if m not in counts]
    if missing:
        raise NothingToPair(f"no {' or '.join(missing)} judgments{by} in run {run}: the {config.strategy} strategy "
                            f"pairs on {' and '.join(needed)}; judge the trajectories with `prefkit judge {run} "
                            f"--judge MODEL@BACKEND --metrics {','.join(missing)}`")
    failed = [f"{m} ({counts[m][0]} judgments)" for m in needed if not counts[m][1]]
    if failed:
        raise NothingToPair(f"every {' and every '.join(failed)} judgment{by} in run {run} failed (no score), so "
                            f"no trajectory can pair; see `prefkit inspect {run}`, re-parse with `prefkit rescore "
                            f"{run}` or judge again with `prefkit judge {run} --judge MODEL@BACKEND`")


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def scenario_splits(scenarios: list[Scenario], config: PairConfig) -> pl.DataFrame:
    """``scenario_id``, ``scenario_index``, ``split`` for every scenario of the suite."""
    splits = split_scenarios(scenarios, config.split_rule, config.split_seed, config.test_fraction)
    return pl.DataFrame(
        {
            "scenario_id": [s.id for s in scenarios],
            "scenario_index": [s.index for s in scenarios],
            "split": [splits[s.id] for s in scenarios],
        },
        schema={"scenario_id": pl.String, "scenario_index": pl.Int64, "split": pl.String},
    )


def trajectory_table(store: RunStore, config: PairConfig, scenarios: pl.DataFrame) -> pl.DataFrame:
    """One row per trajectory in run order (row ``order`` = position): what a pair needs of each side.

    Columns: ``order``, ``id``, ``scenario_id``, ``agent``, ``source``, ``safety``, ``helpfulness``,
    ``scenario_index``, ``split``, ``group`` (the scenario's rank in first-seen order), ``candidate`` (usable),
    ``eligible`` (may be the chosen side: it carries none of ``config.exclude_chosen_flags``).

    Raises:
        InputError: a trajectory's scenario is not in the run's scenarios table.
    """
    first, _ = config.metrics
    dedup_key = "react_messages" if config.rendering == "react" else "messages"
    table = (
        store.scan("trajectories")
        .select("id", "scenario_id", agent=pl.col("agent").struct.field("name"), source="source",
                eligible=~pl.col("flags").list.eval(pl.element().is_in(list(config.exclude_chosen_flags))).list.any()
                .fill_null(False),
                **({"dedup_key": dedup_key} if config.dedup else {}))
        .with_row_index("order")
        .join(trajectory_scores(store.scan("judgments"), config), left_on="id", right_on="trajectory_id",
              how="left", maintain_order="left")
        .join(scenarios.lazy(), on="scenario_id", how="left", maintain_order="left")
        .with_columns(
            group=pl.col("order").min().over("scenario_id").rank("dense").cast(pl.UInt32) - 1,
            candidate=pl.col(first).is_not_null(),
        )
    )
    if config.dedup:
        # Among usable trajectories of a scenario, the first with a given rendered agent side is kept.
        table = table.with_columns(
            candidate=pl.col("candidate")
            & pl.struct("scenario_id", "candidate", "dedup_key").is_first_distinct()
        ).drop("dedup_key")
    frame = table.collect()
    unknown = frame.filter(pl.col("split").is_null())["scenario_id"].unique().sort()
    if unknown.len():
        raise InputError(
            f"{unknown.len()} trajectory scenario(s) are not in the run's scenarios table, "
            f"e.g. {unknown[0]!r}",
            path=store.table_path("trajectories"),
            field="scenario_id",
        )
    return frame


# --------------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------------


def _sha256_16(texts: pl.Series) -> pl.Series:
    # hashlib per value: polars has no stable cryptographic hash, and ids must equal content_hash's.
    sha256 = hashlib.sha256
    return pl.Series([sha256(t).hexdigest()[:16] for t in texts.cast(pl.Binary)], dtype=pl.String)


def pair_id_expr(strategy: str, chosen_id: pl.Expr, rejected_id: pl.Expr) -> pl.Expr:
    """``content_hash({"chosen_id", "rejected_id", "strategy"})`` of every pair, as one expression.

    polars writes the canonical JSON (keys sorted by hand, no whitespace, strings escaped); only the SHA-256
    runs per value, with the same hash and truncation as ``prefkit.records.content_hash`` (tests check it).
    """
    canonical = pl.struct(chosen_id=chosen_id, rejected_id=rejected_id, strategy=pl.lit(strategy)).struct.json_encode()
    return canonical.map_batches(_sha256_16, return_dtype=pl.String)


def pair_records_frame(pairs: pl.DataFrame, table: pl.DataFrame, config: PairConfig) -> pl.DataFrame:
    """Batch pairs (``chosen``/``rejected`` = ``order``, ``margin``) as ``PreferencePair`` rows.

    ``table`` is ``trajectory_table``'s frame, whose row ``k`` is the trajectory with ``order == k``.
    """
    chosen, rejected = pl.lit(pairs["chosen"]), pl.lit(pairs["rejected"])
    first, _ = config.metrics

    def c(name: str) -> pl.Expr:
        return pl.col(name).gather(chosen)

    def r(name: str) -> pl.Expr:
        return pl.col(name).gather(rejected)

    return table.select(
        id=pair_id_expr(config.strategy, c("id"), r("id")),
        strategy=pl.lit(config.strategy),
        scenario_id=c("scenario_id"),
        scenario_index=c("scenario_index"),
        split=c("split"),
        chosen_id=c("id"),
        rejected_id=r("id"),
        chosen_agent=c("agent"),
        rejected_agent=r("agent"),
        chosen_safety=c("safety"),
        rejected_safety=r("safety"),
        chosen_helpfulness=c("helpfulness"),
        rejected_helpfulness=r("helpfulness"),
        chosen_score=c(first),
        rejected_score=r(first),
        margin=pl.lit(pairs["margin"]),
        chosen_source=c("source"),
        rejected_source=r("source"),
    ).cast(PAIR_SCHEMA)  # type: ignore[arg-type]


def iter_pair_frames(table: pl.DataFrame, config: PairConfig) -> Iterator[pl.DataFrame]:
    """``PreferencePair`` frames, one per batch of scenarios, in order (the streaming form of build_pairs)."""
    candidates = table.filter("candidate").select(
        "order", "group", "eligible", m1=pl.col(config.metrics[0]), m2=pl.col(config.metrics[1])
    )
    batches = iter_pair_batches(candidates, config)
    # The next batch's join runs in polars (outside the GIL) while this thread hashes the current batch's ids.
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        upcoming = prefetch.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = prefetch.submit(next, batches, None)
            yield pair_records_frame(batch, table, config)


def build_pairs(store: RunStore, config: PairConfig) -> PairingResult:
    """Pair a judged run's trajectories under ``config``.

    Args:
        store: a run with trajectories, judgments and scenarios tables (e.g. from ``prefkit import toolemu``).
        config: the pairing rules, split and rendering.

    Returns:
        The pairs (``PreferencePair`` schema) in the study's order, with their split, and counts.

    Raises:
        InputError: the run has no scenarios, unknown scenarios, or an ambiguous/missing judge.
        NothingToPair: no trajectories, or no usable judgments on a metric the rules read (``check_pairable``).

    Example: ``build_pairs(RunStore("runs/q32"), PairConfig(strategy="safety")).counts["pairs"]`` is 932
    on the study's raw_q32 subset.
    """
    scenarios = store.read("scenarios")
    if not scenarios:
        raise InputError("the run has no scenarios; the split needs the whole suite", path=store.path)
    check_pairable(store, config)
    table = trajectory_table(store, config, scenario_splits(scenarios, config))  # type: ignore[arg-type]
    frames = list(iter_pair_frames(table, config))
    pairs = pl.concat(frames) if frames else pl.DataFrame(schema=PAIR_SCHEMA)
    return PairingResult(pairs=pairs, trajectories=table.height, candidates=int(table["candidate"].sum()))


# --------------------------------------------------------------------------------------------------
# The pairs folder
# --------------------------------------------------------------------------------------------------


def write_pairs(result: PairingResult, store: RunStore, config: PairConfig, out: Path, *,
                force: bool = False) -> dict[str, Any]:
    """Write the pairs folder ``out`` all at once (nothing is left behind on error).

    A split without pairs gets no ``<split>.parquet`` (see ``split_file``); ``pairs.parquet`` holds every pair.

    Returns:
        The counts (``result.counts``), also written to ``pairing.json`` with the config.

    Raises:
        StoreError: ``out`` exists and is not empty, and ``force`` is false.
    """
    from prefkit.pairing.rows import pair_rows_frame, write_pair_rows

    inputs = {name: file_sha256(store.table_path(name)) for name in ("trajectories", "judgments", "scenarios")
              if store.has(name)}
    counts = result.counts
    with new_run(out, created_by="prefkit pair", inputs=inputs, overwrite=force) as pairs_store:
        pairs_store.write_frame("pairs", result.pairs)
        for split in PAIR_SPLITS:
            if not counts[f"{split}_pairs"]:
                continue  # no 0-row file: `datasets` refuses a split without data
            rows = pair_rows_frame(result.pairs.filter(pl.col("split") == split), store, config.rendering)
            write_pair_rows(rows, split_file(pairs_store.path, split), config.rendering)
        write_json_atomic(
            pairs_store.path / "pairing.json",
            {**counts, "source_run": str(store.path), "config": config.model_dump(mode="json")},
        )
    return counts


def pair_run(run: str | Path, out: str | Path, *, force: bool = False, **options: Any) -> dict[str, Any]:
    """``prefkit pair``: build the config from ``options`` (``PairConfig`` fields), pair the run, write ``out``.

    Returns:
        The counts written to ``out/pairing.json``.

    Raises:
        InputError: invalid options, a missing or unreadable run, or an existing ``out`` without ``force``.
    """
    from pydantic import ValidationError

    from prefkit.store import StoreError

    try:
        config = PairConfig(**options)
    except ValidationError as exc:
        from prefkit.errors import validation_input_error

        raise validation_input_error(exc, PairConfig, what="pairing") from None
    store = RunStore(run)
    try:
        store.manifest()
        return write_pairs(build_pairs(store, config), store, config, Path(out), force=force)
    except StoreError as exc:
        raise InputError(str(exc)) from exc
