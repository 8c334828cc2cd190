"""The rows a training stage gets: one split of a dataset, checked for leakage, pairs too long dropped.

A dataset is one of:

- a ``prefkit build`` output folder: ``data/<config>/<split>-00000-of-00001.parquet`` (``shard_path``);
- a ``prefkit pair`` output folder: ``train.parquet`` / ``test.parquet`` (the config is not used);
- a Hub dataset id (``owner/name``), loaded with ``datasets.load_dataset(id, config, split=...)``.

Local files are read with ``load_pair_rows`` (pyarrow, so nothing lands in the datasets cache) and reach
TRL as written: the ``Json`` message features and the metadata columns unchanged.

Leakage: a model is evaluated on the test scenarios of its split seed, so its training rows must come from
none of them. ``check_no_leakage`` uses the split the dataset was built with (``dataset_split``: a ``prefkit
build`` folder records its rule, seed and test scenarios in ``prefkit.json``; a ``prefkit pair`` folder its
rule and seed in ``pairing.json``), refuses a recipe whose split seed is not the dataset's, and refuses train
rows of its test scenarios or of the dataset's own test split. Only where nothing is recorded (a Hub id, other
folders) does it assume the study rule over ``suite_size`` scenarios.

An empty train split (every pair fell in test) is named as such, never reported as rows too long.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.errors import InputError
from prefkit.pairing.split import study_test_indices

if TYPE_CHECKING:
    from datasets import Dataset

    from prefkit.pairing.validate import ValidationReport


def _local_split_file(root: Path, config: str, split: str) -> Path | None:
    from prefkit.publish.layout import shard_path

    for candidate in (root / shard_path(config, split), root / f"{split}.parquet"):
        if candidate.is_file():
            return candidate
    return None


def _no_rows(config: str, split: str, present: dict[str, int], where: str | Path) -> InputError:
    """The one error for a split without rows (``present``: the config's splits that have rows)."""
    others = ", ".join(f"{s} {n}" for s, n in present.items() if s != split) or "none"
    return InputError(f"config {config!r} has no {split} rows (rows in its other splits: {others}): nothing to "
                      f"{'train on' if split == 'train' else 'read'}. The split is by scenario: build from more "
                      "scenarios, or with another split seed or rule", path=where, field=split)


def load_split(dataset: str, config: str, split: str, *, required: bool = True) -> Dataset | None:
    """One split of one config of ``dataset`` (see the module docstring for what ``dataset`` may be).

    Returns ``None`` for a missing split when ``required`` is false (an empty split is returned as it is).

    Raises:
        InputError: a local folder without the split, a required split without rows (named as such), an
            unreadable file, or a Hub dataset that does not load.
    """
    root = Path(dataset)
    if root.exists():
        if not root.is_dir():
            raise InputError("a dataset is a folder (a `prefkit build` or `prefkit pair` output) or a Hub id",
                             path=root)
        file = _local_split_file(root, config, split)
        if file is None:
            if not required:
                return None
            from prefkit.publish.layout import read_dataset_manifest, shard_path

            manifest = read_dataset_manifest(root)
            if manifest is not None and config in (manifest.get("scenario_split") or {}) | manifest["configs"]:
                # prefkit build lays out no file for a split without rows
                present = {s: int(e["rows"]) for s, e in manifest["configs"].get(config, {}).items()}
                raise _no_rows(config, split, present, root)
            if (root / "pairing.json").is_file():  # prefkit pair writes no file for a split without rows
                from prefkit.pairing.validate import load_rows

                siblings = {s: _local_split_file(root, config, s) for s in ("train", "test") if s != split}
                raise _no_rows(config, split, {s: len(load_rows(f)) for s, f in siblings.items() if f}, root)
            raise InputError(f"no {split} split of config {config!r}: expected {shard_path(config, split)} "
                             f"(a `prefkit build` output) or {split}.parquet (a `prefkit pair` output)", path=root)
        from prefkit.pairing.validate import load_rows

        rows = load_rows(file)
        if required and len(rows) == 0:
            siblings = {s: _local_split_file(root, config, s) for s in ("train", "test") if s != split}
            present = {s: len(load_rows(f)) for s, f in siblings.items() if f is not None}
            raise _no_rows(config, split, present, file)
        return rows
    return _hub_split(dataset, config, split, required=required)


@dataclass(frozen=True)
class DatasetSplit:
    """How a dataset's scenarios were split, as recorded with it (``dataset_split``)."""

    rule: str
    """``study`` or ``fraction`` (``prefkit.pairing.split``)."""
    seed: int
    test_scenarios: frozenset[str] | None
    """The suite's test scenario ids, when recorded (``prefkit build`` folders)."""
    source: str
    """The file it was read from, for messages."""
    test_fraction: float | None = None
    """The ``fraction`` rule's test share, when recorded (``prefkit eval`` applies a pair folder's rule)."""


def dataset_split(dataset: str, config: str) -> DatasetSplit | None:
    """The split ``config`` of ``dataset`` was built with: from a build folder's ``prefkit.json``
    (``scenario_split``) or a pair folder's ``pairing.json``; None when neither records it (a Hub id, a folder
    written before prefkit recorded it, or by other tools).

    Raises:
        InputError: a ``prefkit.json`` or ``pairing.json`` that does not read.
    """
    from prefkit.publish.layout import MANIFEST_FILE, manifest_scenario_split, read_dataset_manifest

    root = Path(dataset)
    if not root.is_dir():
        return None
    manifest = read_dataset_manifest(root)
    if manifest is not None:
        record = manifest_scenario_split(manifest, config)
        if record is None:
            return None
        return DatasetSplit(record.rule, record.seed, frozenset(record.test_scenarios), str(root / MANIFEST_FILE),
                            record.test_fraction)
    pairing = root / "pairing.json"
    if not pairing.is_file():
        return None
    try:
        recorded = json.loads(pairing.read_text(encoding="utf-8"))["config"]
        fraction = recorded.get("test_fraction") if recorded["split_rule"] == "fraction" else None
        return DatasetSplit(str(recorded["split_rule"]), int(recorded["split_seed"]), None, str(pairing),
                            None if fraction is None else float(fraction))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the split from pairing.json ({type(exc).__name__}: {exc})",
                         path=pairing) from exc


def _hub_split(repo_id: str, config: str, split: str, *, required: bool) -> Dataset | None:
    from datasets import load_dataset

    try:
        return load_dataset(repo_id, config, split=split)
    except ValueError as exc:  # datasets: unknown split
        if not required and "split" in str(exc).lower():
            return None
        raise InputError(f"cannot load split {split!r} of config {config!r} from the Hub dataset {repo_id!r}: {exc}",
                         path=repo_id) from exc
    except Exception as exc:  # network, missing repo, bad config: one clear message
        raise InputError(f"cannot load the Hub dataset {repo_id!r} (config {config!r}, split {split!r}): "
                         f"{type(exc).__name__}: {exc}", path=repo_id) from exc


def _column(rows: Dataset, name: str, where: str) -> list[Any]:
    if name not in rows.column_names:
        raise InputError(f"the rows have no {name!r} column, so leakage into the evaluation split cannot be "
                         "checked; train on rows written by prefkit (`prefkit build` or `prefkit pair`)", path=where)
    return list(rows[name])


def _shown(items: list[str]) -> str:
    return ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")


def check_no_leakage(train: Dataset, *, test: Dataset | None, split_seed: int, suite_size: int, where: str,
                     split: DatasetSplit | None = None) -> None:
    """Refuse train rows whose scenario is an evaluation scenario.

    With the dataset's recorded ``split`` (``dataset_split``): its seed must be ``split_seed`` (the seed the
    model is named and evaluated with), and no train row may come from its recorded test scenarios. Without
    one: the study rule's test scenarios for ``split_seed`` in a suite of ``suite_size`` (by scenario index).
    Always: no train scenario may be in the dataset's own test split (by scenario id).

    Raises:
        InputError: naming the dataset, the seeds, or how many scenarios overlap and the first few.
    """
    ids = _column(train, "scenario_id", where)
    if split is not None and split.seed != split_seed:
        raise InputError(
            f"the dataset was split with seed {split.seed} ({split.rule} rule, recorded in {split.source}), but the "
            f"recipe's split_seed is {split_seed}: the model would be evaluated on scenarios it trained on. Set "
            f"split_seed: {split.seed}, or build the dataset with split seed {split_seed}", path=where,
            field="split_seed")
    if split is not None and split.test_scenarios is not None:
        leaked_ids = sorted(set(ids) & split.test_scenarios)
        if leaked_ids:
            raise InputError(f"the train split holds {len(leaked_ids)} scenario(s) that the dataset's own split "
                             f"({split.rule} rule, seed {split.seed}) puts in test: {_shown(leaked_ids)}",
                             path=where)
    elif split is None or split.rule == "study":
        # Nothing recorded but the rule (a pair folder) or nothing at all: the study rule over the suite.
        indices = _column(train, "scenario_index", where)
        test_indices = set(study_test_indices(suite_size, split_seed))
        leaked = sorted({(i, s) for i, s in zip(indices, ids, strict=True) if i is not None and i in test_indices})
        if leaked:
            raise InputError(
                f"the train split holds {len(leaked)} scenario(s) that are evaluation (test) scenarios for split "
                f"seed {split_seed} of a {suite_size}-scenario suite (the study rule; the dataset records no split "
                f"of its own): {_shown([s for _, s in leaked])}. Build the dataset with split seed {split_seed}, "
                "or set the recipe's split_seed to the seed the dataset was built with", path=where,
                field="split_seed")
    if test is not None and len(test):
        shared = sorted(set(ids) & set(_column(test, "scenario_id", where)))
        if shared:
            raise InputError(f"the train split shares {len(shared)} scenario(s) with the dataset's own test split: "
                             f"{_shown(shared)}; pairs must be split by scenario", path=where)


def drop_too_long(rows: Dataset, tokenizer: Any, *, max_length: int, where: str) -> tuple[Dataset, ValidationReport]:
    """The rows within ``max_length`` tokens (prompt + chosen and prompt + rejected, as TRL tokenizes them),
    checked by ``prefkit.pairing.validate``; longer rows are dropped, never truncated.

    Raises:
        InputError: a row that breaks the row contract (the first three are named).
    """
    from prefkit.pairing.validate import validate_pair_rows

    report = validate_pair_rows(rows, tokenizer=tokenizer, max_length=max_length)
    if not report.ok:
        reasons = "; ".join(f"row {bad.index}: {bad.reason}" for bad in report.invalid_rows[:3])
        raise InputError(f"{report.invalid} row(s) are not valid DPO rows for this tokenizer ({reasons})", path=where)
    if report.kept == 0:
        raise InputError(f"no row is within max_length {max_length} tokens (the longest is {report.max_tokens}); "
                         "raise max_length", path=where, field="max_length")
    kept = rows if report.kept == len(rows) else rows.select(report.kept_indices())
    return kept, report
