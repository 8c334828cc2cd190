"""The local dataset folder: exactly the files that go to the Hub, laid out as the Hub serves them.

Layout::

    OUT/
      README.md                                  the dataset card (YAML metadata + prose)
      prefkit.json                               what prefkit wrote here: configs, files, rows, fingerprint
      data/<config>/<split>-00000-of-00001.parquet
      plots/<name>.png

``datasets.load_dataset(str(OUT), CONFIG)`` loads every config, because the card's ``configs`` metadata maps
each config's splits to ``data/<config>/<split>-*.parquet`` (``data_files_pattern``, the one source of that
path). The parquet files are the pairer's files copied byte for byte, so the ``datasets`` Features stored in
their schema metadata (messages as ``Json``) survive, and tool-call arguments load back unchanged.

``prefkit.json`` marks the folder (and the Hub repo it is published to) as a prefkit dataset. Its
``fingerprint`` hashes the configs' names, splits and file contents: publishing compares it with the one in
the remote repo to tell "the same dataset again" from "a different dataset" (``prefkit.publish.hub``).
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
from pydantic import RootModel, field_validator

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
    word characters, as ``datasets`` requires. Order is kept: the first config is the card's default.
    """

    @field_validator("root")
    @classmethod
    def _check_names(cls, value: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
        if not value:
            raise ValueError("no dataset configs given")
        for config, splits in value.items():
            if not _CONFIG_NAME.match(config):
                raise ValueError(f"config name {config!r} must be letters, digits, '_', '.' or '-'")
            if not splits:
                raise ValueError(f"config {config!r} has no splits")
            for split in splits:
                if not _SPLIT_NAME.match(split):
                    raise ValueError(f"split name {split!r} of config {config!r} must be word characters")
        return value

    @classmethod
    def from_pairs_dirs(cls, pairs_dirs: Mapping[str, Path], splits: Sequence[str] = ("train", "test")
                        ) -> DatasetConfigFiles:
        """Configs from ``prefkit pair`` output folders: ``{config: PAIRS}`` -> ``PAIRS/<split>.parquet``."""
        return cls({name: {split: Path(folder) / f"{split}.parquet" for split in splits}
                    for name, folder in pairs_dirs.items()})


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
    return {config: {split: int(pl.scan_parquet(source).select(pl.len()).collect().item())
                     for split, source in splits.items()}
            for config, splits in configs.root.items()}


def dataset_fingerprint(configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]]) -> str:
    """SHA-256 over every config's name, split names and file contents: equal iff the data is equal."""
    configs = _as_configs(configs)
    _check_sources(configs)
    h = hashlib.sha256()
    for config, splits in configs.root.items():
        for split, source in splits.items():
            h.update(f"{config}\0{split}\0{file_sha256(Path(source))}\n".encode())
    return h.hexdigest()


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


def write_dataset_dir(out: Path, configs: DatasetConfigFiles | Mapping[str, Mapping[str, Path]], *,
                      card_text: str, plots: Sequence[Path] | Mapping[str, Path] = ()) -> list[Path]:
    """Write the dataset folder ``out`` (see the module docstring) and return the files written.

    ``plots`` are PNG files, copied to ``plots/<file name>``; give a mapping ``{name: file}`` to choose the
    names (e.g. ``{"safety-score_gap.png": ...}`` when several datasets have plots of one name).
    Each file is written atomically. ``out`` must be empty, absent, or an earlier dataset folder (it holds a
    ``prefkit.json``); then files that this call no longer writes under ``data/`` and ``plots/`` are removed,
    so the folder holds exactly this dataset.

    Raises:
        InputError: a missing source file or plot, a plot that is not a PNG, two plots with one name, or an
            ``out`` that holds something other than a prefkit dataset.
    """
    out = Path(out)
    configs = _as_configs(configs)
    _check_sources(configs)
    named = list(plots.items()) if isinstance(plots, Mapping) else [(Path(p).name, p) for p in plots]
    plot_names: dict[str, Path] = {}
    for name, plot in ((name, Path(plot)) for name, plot in named):
        if not plot.is_file():
            raise InputError("plot not found", path=plot)
        if plot.suffix.lower() != ".png" or not name.endswith(".png") or "/" in name or name.startswith("."):
            raise InputError(f"plots must be PNG files with plain .png names, got {name!r}", path=plot)
        if name in plot_names:
            raise InputError(f"two plots named {name!r} (also {plot_names[name]}); pass {{name: file}} to "
                             "give them distinct names", path=plot)
        plot_names[name] = plot
    if out.exists() and any(out.iterdir()) and read_dataset_manifest(out) is None:
        raise InputError(f"refusing to write a dataset into a non-empty folder without {MANIFEST_FILE}; "
                         "choose an empty or new folder", path=out)

    written: list[Path] = []
    manifest_configs: dict[str, dict[str, Any]] = {}
    counts = split_counts(configs)
    for config, splits in configs.root.items():
        manifest_configs[config] = {}
        for split, source in splits.items():
            relative = shard_path(config, split)
            # Byte-for-byte copy: the schema metadata carries the `datasets` Features (Json messages).
            with atomic_path(out / relative) as tmp:
                shutil.copyfile(source, tmp)
            written.append(out / relative)
            manifest_configs[config][split] = {"path": relative, "rows": counts[config][split],
                                               "sha256": file_sha256(out / relative)}
    for name, plot in plot_names.items():
        with atomic_path(out / plot_path(name)) as tmp:
            shutil.copyfile(plot, tmp)
        written.append(out / plot_path(name))
    with atomic_path(out / CARD_FILE) as tmp:
        tmp.write_text(card_text, encoding="utf-8")
    written.append(out / CARD_FILE)

    from prefkit import __version__

    write_json_atomic(out / MANIFEST_FILE, {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "prefkit_version": __version__,
        "fingerprint": dataset_fingerprint(configs),
        "configs": manifest_configs,
        "plots": [plot_path(name) for name in plot_names],
    })
    written.append(out / MANIFEST_FILE)
    _remove_stale(out, set(written))
    return written


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
