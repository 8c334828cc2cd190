"""The local dataset folder: exactly the files that go to the Hub, laid out as the Hub serves them.

Layout::

    OUT/
      README.md                                  the dataset card (YAML metadata + prose)
      prefkit.json                               what prefkit wrote here: configs, files, rows, fingerprint
      data/<config>/<split>-00000-of-00001.parquet
      plots/<name>.png                           (or plots/<dataset>/<name>.png)

``datasets.load_dataset(str(OUT), CONFIG)`` loads every config, because the card's ``configs`` metadata maps
each config's splits to ``data/<config>/<split>-*.parquet`` (``data_files_pattern``, the one source of that
path). The parquet files are the pairer's files copied byte for byte, so the ``datasets`` Features stored in
their schema metadata (messages as ``Json``) survive, and tool-call arguments load back unchanged.

A split without rows is never laid out: no file is written (or uploaded) for it, so the folder, the card's
``configs`` and the Hub hold only splits that load (``datasets`` refuses a split whose files hold no rows,
huggingface/datasets PR #8401, and the dataset viewer cannot convert an empty Parquet file, dataset-viewer
#2709). A config with no rows at all has no folder.

``prefkit.json`` marks the folder (and the Hub repo it is published to) as a prefkit dataset:
``{"format": "prefkit-dataset", "format_version", "prefkit_version", "fingerprint", "configs": {config: {split:
{"rows", "files": [{"path", "rows", "sha256"}]}}}, "plots": [...], "scenario_split": {config: ScenarioSplit}}``.
The ``fingerprint`` hashes every data file's path and contents: publishing compares it with the one in the
remote repo to tell "the same dataset again" from "a different dataset" (``prefkit.publish.hub``).
``scenario_split`` (when the writer knows it, as ``prefkit build`` does) records how each config's scenarios
were split, so that training checks leakage with the dataset's own rule and seed (``prefkit.train.data``).

Stale loads: ``datasets`` (5.x) caches a local folder under its folder name, config name and a hash of the
card's ``configs`` entries, never of the files (huggingface/datasets #2956). ``config_fingerprint`` is put in
each config's ``description`` by the card (``prefkit.publish.card``), so a folder rebuilt with other rows, or
another folder of the same name, gets its own cache entry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, Field, RootModel, field_validator

from prefkit.errors import InputError
from prefkit.store import atomic_path, file_sha256, write_json_atomic

CARD_FILE = "README.md"
MANIFEST_FILE = "prefkit.json"
DATA_DIR = "data"
PLOTS_DIR = "plots"
MANAGED_DIRS = (DATA_DIR, PLOTS_DIR)
"""Folders whose every file prefkit writes: stale files in them are removed locally and on the Hub."""
MANIFEST_FORMAT = "prefkit-dataset"
MANIFEST_VERSION = 1

_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT_NAME = re.compile(r"^\w+$")  # the names `datasets` accepts for a split


def shard_path(config: str, split: str) -> str:
    """Where one split of one config lives in the dataset folder (and in the Hub repo)."""
    return f"{DATA_DIR}/{config}/{split}-00000-of-00001.parquet"


def data_files_pattern(config: str, split: str) -> str:
    """The glob the card's ``configs`` metadata gives for one split; it matches ``shard_path``."""
    return f"{DATA_DIR}/{config}/{split}-*.parquet"


class DatasetConfigFiles(RootModel[dict[str, dict[str, Path]]], frozen=True):
    """The datasets to lay out: config name -> {split -> source parquet file (TRL rows)}.

    Example: ``DatasetConfigFiles({"safety": {"train": Path("P/train.parquet"), "test": Path("P/test.parquet")}})``.
    Config names become folder names and Hub config names (letters, digits, ``_ . -``); split names are
    word characters, as ``datasets`` requires. Order is kept: the first config is the card's default. A config
    may name no split (a pairs folder without pairs): like a config whose splits have no rows, nothing of it
    is laid out.
    """

    @field_validator("root")
    @classmethod
    def _check_names(cls, value: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
        if not value:
            raise ValueError("no dataset configs given")
        for config, splits in value.items():
            if not _CONFIG_NAME.match(config):
                raise ValueError(f"config name {config!r} must be letters, digits, '_', '.' or '-'")
            for split in splits:
                if not _SPLIT_NAME.match(split):
                    raise ValueError(f"split name {split!r} of config {config!r} must be word characters")
        return value

    @classmethod
    def from_pairs_dirs(cls, pairs_dirs: Mapping[str, Path], splits: Sequence[str] = ("train", "test")
                        ) -> DatasetConfigFiles:
        """Configs from ``prefkit pair`` output folders: ``{config: PAIRS}`` -> ``PAIRS/<split>.parquet``.

        A split whose file the folder lacks has no rows (``prefkit pair`` writes no 0-row file) and is left out.
        """
        from prefkit.pairing.pairs import split_file

        return cls({name: {split: path for split in splits if (path := split_file(folder, split)).is_file()}
                    for name, folder in pairs_dirs.items()})


class ScenarioSplit(BaseModel, frozen=True, extra="forbid"):
    """How one config's scenarios were split into train and test (``prefkit.json``'s ``scenario_split``).

    The rule itself lives in ``prefkit.pairing.split``; this is its record. Example:
    ``{"rule": "study", "seed": 0, "test_fraction": null, "suite_size": 144, "test_scenarios": [...72 ids]}``.
    """

    rule: str
    """``study`` or ``fraction`` (``prefkit.pairing.config.SplitRule``)."""
    seed: int
    test_fraction: float | None = None
    """The test share of the ``fraction`` rule; null for ``study``."""
    suite_size: int = Field(ge=0)
    """Scenarios in the suite the split was drawn from (with or without pairs)."""
    test_scenarios: tuple[str, ...]
    """The ids of the suite's test scenarios, sorted: what a model trained on this config must not see."""


def _as_configs(configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]]) -> DatasetConfigFiles:
    if isinstance(configs, DatasetConfigFiles):
        return configs
    try:
        return DatasetConfigFiles({k: dict(v) for k, v in configs.items()})
    except ValueError as exc:
        raise InputError(str(exc), field="configs") from exc


def _check_sources(configs: DatasetConfigFiles) -> None:
    for config, splits in configs.root.items():
        for split, source in splits.items():
            if not Path(source).is_file():
                raise InputError(f"no parquet file for split {split!r} of config {config!r}", path=source)


def split_counts(configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]]) -> dict[str, dict[str, int]]:
    """Rows per config and split, read from the parquet files' metadata (nothing is loaded)."""
    configs = _as_configs(configs)
    _check_sources(configs)
    return {config: {split: _rows(Path(source)) for split, source in splits.items()}
            for config, splits in configs.root.items()}


def _rows(source: Path) -> int:
    return int(pl.scan_parquet(source).select(pl.len()).collect().item())


def nonempty_splits(configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]]) -> dict[str, dict[str, Path]]:
    """The splits that hold rows, per config (configs without any are left out): what gets laid out."""
    configs = _as_configs(configs)
    _check_sources(configs)
    kept = {config: {split: Path(source) for split, source in splits.items() if _rows(Path(source)) > 0}
            for config, splits in configs.root.items()}
    return {config: splits for config, splits in kept.items() if splits}


def _fingerprint(entries: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for relative, sha in sorted(entries):
        h.update(f"{relative}\0{sha}\n".encode())
    return h.hexdigest()


def dataset_fingerprint(configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]]) -> str:
    """SHA-256 over every laid-out data file's place (config, split) and contents: equal iff the data is equal.
    Splits without rows are not laid out, so they do not count.

    The same value as the ``fingerprint`` that ``write_dataset_manifest`` computes from the laid-out files.
    """
    return _fingerprint([(shard_path(config, split), file_sha256(source))
                         for config, splits in nonempty_splits(configs).items() for split, source in splits.items()])


def config_fingerprint(config: str, splits: Mapping[str, Path]) -> str:
    """SHA-256 (hex) over one config's laid-out files (its splits with rows): what the card's ``configs`` entry
    carries in its ``description`` so that ``datasets`` caches each version of the data apart."""
    return dataset_fingerprint({config: dict(splits)})


def read_dataset_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``prefkit.json`` of a dataset folder, or None if the folder holds none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"not valid JSON: {exc}", path=path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"not a prefkit dataset manifest (expected format {MANIFEST_FORMAT!r})", path=path)
    return manifest


def hub_files(folder: Path) -> list[str]:
    """The files of a dataset folder that go to the Hub, as sorted posix paths relative to it.

    Hidden files and folders (``.cache``, editors' temporaries, half-written ``.tmp`` files) stay local.
    """
    folder = Path(folder)
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def plot_path(name: str) -> str:
    """Where a plot named ``name`` lives in the dataset folder (what the card links to)."""
    return f"{PLOTS_DIR}/{name}"


def _plot_names(plots: Sequence[Path] | Mapping[str, Path]) -> dict[str, Path]:
    named = list(plots.items()) if isinstance(plots, Mapping) else [(Path(p).name, p) for p in plots]
    plot_names: dict[str, Path] = {}
    for name, plot in ((str(name), Path(plot)) for name, plot in named):
        if not plot.is_file():
            raise InputError("plot not found", path=plot)
        parts = name.split("/")
        if plot.suffix.lower() != ".png" or not name.endswith(".png") or any(
                not part or part.startswith(".") for part in parts):
            raise InputError(f"plots must be PNG files named like 'name.png' or 'dataset/name.png', got {name!r}",
                             path=plot)
        if name in plot_names:
            raise InputError(f"two plots named {name!r} (also {plot_names[name]}); pass {{name: file}} to "
                             "give them distinct names", path=plot)
        plot_names[name] = plot
    return plot_names


def write_dataset_dir(out: Path, configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]], *,
                      card_text: str, plots: Sequence[Path] | Mapping[str, Path] = (),
                      scenario_split: Mapping[str, ScenarioSplit] | None = None) -> list[Path]:
    """Write the dataset folder ``out`` (see the module docstring) and return the files written.

    Splits whose source holds no rows are not written (the card's ``configs`` must leave them out too:
    ``prefkit.publish.card`` does). ``plots`` are PNG files, copied to ``plots/<file name>``; give a mapping
    ``{name: file}`` to choose the names (``{"safety/score_gap.png": ...}`` when several datasets have plots
    of one name). ``scenario_split`` (per config) goes to ``prefkit.json``.
    Each file is written atomically, ``prefkit.json`` last. Files that this call does not write under
    ``data/`` and ``plots/`` are removed, so those folders hold exactly this dataset; other files in ``out``
    are left alone (and are published with it; hidden ones, like a build's ``.prefkit/``, are not).

    Raises:
        InputError: a missing source file or plot, a plot that is not a PNG, two plots with one name, or an
            ``out`` that already holds a card or data that prefkit did not write (no ``prefkit.json``).
    """
    out = Path(out)
    configs = _as_configs(configs)
    _check_sources(configs)
    plot_names = _plot_names(plots)
    if read_dataset_manifest(out) is None and ((out / CARD_FILE).exists() or (out / DATA_DIR).exists()):
        raise InputError(f"refusing to overwrite a {CARD_FILE} or {DATA_DIR}/ that prefkit did not write (no "
                         f"{MANIFEST_FILE}); choose an empty or new folder", path=out)

    written: list[Path] = []
    for config, splits in nonempty_splits(configs).items():
        for split, source in splits.items():
            # Byte-for-byte copy: the schema metadata carries the `datasets` Features (Json messages).
            with atomic_path(out / shard_path(config, split)) as tmp:
                shutil.copyfile(source, tmp)
            written.append(out / shard_path(config, split))
    for name, plot in plot_names.items():
        with atomic_path(out / plot_path(name)) as tmp:
            shutil.copyfile(plot, tmp)
        written.append(out / plot_path(name))
    with atomic_path(out / CARD_FILE) as tmp:
        tmp.write_text(card_text, encoding="utf-8")
    written.append(out / CARD_FILE)
    _remove_stale(out, set(written))
    written.append(write_dataset_manifest(out, scenario_split=scenario_split))
    return written


def write_dataset_manifest(out: Path, *, scenario_split: Mapping[str, ScenarioSplit] | None = None) -> Path:
    """Write ``out/prefkit.json`` from the files laid out in ``out``: every ``data/<config>/<split>-*.parquet``
    (path, rows, sha256), the plots, the fingerprint and, when given, each config's ``scenario_split``.
    ``write_dataset_dir`` calls it last; call it yourself after laying out a folder another way. Returns its
    path. A folder with no data file (every split of every config empty) gets a manifest with no configs."""
    from prefkit import __version__

    out = Path(out)
    shards = sorted((out / DATA_DIR).glob("*/*.parquet"))
    configs: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str]] = []
    for shard in shards:
        relative = shard.relative_to(out).as_posix()
        split = shard.name.split("-", 1)[0]
        sha = file_sha256(shard)
        entries.append((relative, sha))
        rows = int(pl.scan_parquet(shard).select(pl.len()).collect().item())
        entry = configs.setdefault(shard.parent.name, {}).setdefault(split, {"rows": 0, "files": []})
        entry["rows"] += rows
        entry["files"].append({"path": relative, "rows": rows, "sha256": sha})
    plots = sorted(p.relative_to(out).as_posix() for p in (out / PLOTS_DIR).rglob("*.png")) \
        if (out / PLOTS_DIR).is_dir() else []
    path = out / MANIFEST_FILE
    write_json_atomic(path, {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "prefkit_version": __version__,
        "fingerprint": _fingerprint(entries),
        "configs": configs,
        "plots": plots,
        **({"scenario_split": {name: ScenarioSplit.model_validate(split).model_dump(mode="json")
                               for name, split in scenario_split.items()}} if scenario_split else {}),
    })
    return path


def manifest_scenario_split(manifest: Mapping[str, Any], config: str) -> ScenarioSplit | None:
    """The recorded split of ``config`` in a read ``prefkit.json`` (``read_dataset_manifest``), or None when
    the manifest does not record it (folders written before it did, or by other writers).

    Raises:
        InputError: a record that is not a ``ScenarioSplit``.
    """
    record = (manifest.get("scenario_split") or {}).get(config)
    if record is None:
        return None
    try:
        return ScenarioSplit.model_validate(record)
    except ValueError as exc:
        raise InputError(f"scenario_split of config {config!r} in {MANIFEST_FILE} is malformed: {exc}",
                         field=f"scenario_split.{config}") from exc


def load_command(dataset: str | Path, config: str) -> str:
    """The Python line that loads one config of a dataset folder or Hub repo, as prefkit prints and documents
    it: ``datasets.load_dataset("out", "safety")``. Safe after a rebuild: see the module docstring."""
    return f"datasets.load_dataset({json.dumps(str(dataset))}, {json.dumps(config)})"


def _remove_stale(out: Path, keep: set[Path]) -> None:
    for managed in MANAGED_DIRS:
        root = out / managed
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_file() and path not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(root.iterdir()):
            root.rmdir()
