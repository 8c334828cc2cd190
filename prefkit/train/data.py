"""The rows a training stage gets: one split of a dataset, checked for leakage, pairs too long dropped.

A dataset is one of:

- a ``prefkit build`` output folder: ``data/<config>/<split>-00000-of-00001.parquet`` (``shard_path``);
- a ``prefkit pair`` output folder: ``train.parquet`` / ``test.parquet`` (the config is not used);
- a Hub dataset id (``owner/name``), loaded with ``datasets.load_dataset(id, config, split=...)``.

Local files are read with ``load_pair_rows`` (pyarrow, so nothing lands in the datasets cache) and reach
TRL as written: the ``Json`` message features and the metadata columns unchanged.

Leakage: a model is evaluated on the test scenarios of its split seed (the study rule), so its training
rows must come from none of them. ``check_no_leakage`` compares the train rows' scenarios with those test
scenarios and with the dataset's own test split, and refuses any overlap.
"""

from __future__ import annotations

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


def load_split(dataset: str, config: str, split: str, *, required: bool = True) -> Dataset | None:
    """One split of one config of ``dataset`` (see the module docstring for what ``dataset`` may be).

    Returns ``None`` for a missing split when ``required`` is false.

    Raises:
        InputError: a local folder without the split, an unreadable file, or a Hub dataset that does not load.
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
            from prefkit.publish.layout import shard_path

            raise InputError(f"no {split} split of config {config!r}: expected {shard_path(config, split)} "
                             f"(a `prefkit build` output) or {split}.parquet (a `prefkit pair` output)", path=root)
        from prefkit.pairing.validate import load_rows

        return load_rows(file)
    return _hub_split(dataset, config, split, required=required)


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


def check_no_leakage(train: Dataset, *, test: Dataset | None, split_seed: int, suite_size: int, where: str) -> None:
    """Refuse train rows whose scenario is an evaluation scenario.

    The evaluation scenarios are the study rule's test scenarios for ``split_seed`` in a suite of
    ``suite_size`` (by scenario index) and, when the dataset has one, its own test split (by scenario id).

    Raises:
        InputError: naming the dataset, how many scenarios overlap and the first few.
    """
    ids = _column(train, "scenario_id", where)
    indices = _column(train, "scenario_index", where)
    test_indices = set(study_test_indices(suite_size, split_seed))
    leaked = sorted({(i, s) for i, s in zip(indices, ids, strict=True) if i is not None and i in test_indices})
    if leaked:
        shown = ", ".join(s for _, s in leaked[:5]) + (" ..." if len(leaked) > 5 else "")
        raise InputError(
            f"the train split holds {len(leaked)} scenario(s) that are evaluation (test) scenarios for split seed "
            f"{split_seed} of a {suite_size}-scenario suite: {shown}. Build the dataset with split seed {split_seed}, "
            "or set the recipe's split_seed to the seed the dataset was built with", path=where, field="split_seed")
    if test is not None and len(test):
        shared = sorted(set(ids) & set(_column(test, "scenario_id", where)))
        if shared:
            shown = ", ".join(shared[:5]) + (" ..." if len(shared) > 5 else "")
            raise InputError(f"the train split shares {len(shared)} scenario(s) with the dataset's own test split: "
                             f"{shown}; pairs must be split by scenario", path=where)


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
