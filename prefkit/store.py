"""The run store: a directory of Parquet tables of records plus a JSON manifest.

Layout of a run directory::

    RUN/
      manifest.json        # prefkit version, schema version, inputs' hashes, row counts, stage keys
      scenarios.parquet    # Scenario records
      toolkits.parquet     # Toolkit records
      trajectories.parquet # Trajectory records
      judgments.parquet    # Judgment records
      pairs.parquet        # PreferencePair records

Each table's Parquet schema is derived from its pydantic model (``polars_schema``), so an empty table
still has the right columns and nested records survive the round trip unchanged. Every write goes to
a temporary file in the same directory and is renamed into place, so a killed process never leaves a
half-written table behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl
from pydantic import BaseModel

from prefkit.errors import PrefkitError
from prefkit.records import SCHEMA_VERSION, Judgment, PreferencePair, Record, Scenario, Toolkit, Trajectory

R = TypeVar("R", bound=Record)

TableName = Literal["scenarios", "toolkits", "trajectories", "judgments", "pairs"]

TABLES: dict[str, type[Record]] = {
    "scenarios": Scenario,
    "toolkits": Toolkit,
    "trajectories": Trajectory,
    "judgments": Judgment,
    "pairs": PreferencePair,
}
"""Every table a run may hold, and the record type of its rows."""

MANIFEST = "manifest.json"


class StoreError(PrefkitError):
    """A run directory that is missing, incomplete or of an unknown format (exit code 2 in the CLI)."""


# --------------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------------


def _polars_dtype(annotation: Any) -> pl.DataType:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) != 1:
            raise TypeError(f"unsupported union in a record: {annotation!r}")
        return _polars_dtype(non_null[0])
    if origin is Literal:
        return pl.String()
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return pl.List(_polars_dtype(args[0]))
        raise TypeError(f"only variable-length tuples are supported in records, got {annotation!r}")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pl.Struct(polars_schema(annotation))
    simple = {str: pl.String(), int: pl.Int64(), float: pl.Float64(), bool: pl.Boolean()}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"unsupported type in a record: {annotation!r}")


def polars_schema(model: type[BaseModel]) -> dict[str, pl.DataType]:
    """The Parquet/polars schema of a record type, field by field in declaration order."""
    return {name: _polars_dtype(field.annotation) for name, field in model.model_fields.items()}


def records_to_frame(records: Iterable[Record], model: type[Record]) -> pl.DataFrame:
    """Records of one type as a DataFrame with the model's exact schema."""
    rows = [r.model_dump(mode="python") for r in records]
    return pl.DataFrame(rows, schema=polars_schema(model), orient="row" if not rows else None)


def frame_to_records(frame: pl.DataFrame, model: type[R]) -> list[R]:
    """Rows of a DataFrame (in order) back to records; validation errors name the row."""
    out: list[R] = []
    for i, row in enumerate(frame.iter_rows(named=True)):
        try:
            out.append(model.model_validate(row))
        except Exception as exc:  # re-raised with the row number, the cause kept
            raise StoreError(f"row {i} is not a valid {model.__name__}: {exc}") from exc
    return out


# --------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    # No statistics and a fixed compression keep the bytes a pure function of the data.
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=False)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(root: Path, files: Sequence[Path]) -> str:
    """One hash over several files' relative paths and contents (the hash of an input folder)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.relative_to(root).parts):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(file_sha256(f).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# The run directory
# --------------------------------------------------------------------------------------------------


def _prefkit_version() -> str:
    from prefkit import __version__

    return __version__


class RunStore:
    """A run directory. Cheap to create; nothing is read until asked for."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # tables -------------------------------------------------------------------------------------

    def table_path(self, name: str) -> Path:
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}; a run holds {', '.join(TABLES)}")
        return self.path / f"{name}.parquet"

    def has(self, name: str) -> bool:
        return self.table_path(name).exists()

    def write(self, name: str, records: Iterable[Record]) -> int:
        """Replace table ``name`` with ``records`` (atomically); returns the row count."""
        frame = records_to_frame(records, TABLES[name])
        self.write_frame(name, frame)
        return frame.height

    def write_frame(self, name: str, frame: pl.DataFrame) -> None:
        """Write a frame that already has the table's schema (checked) as table ``name``."""
        expected = polars_schema(TABLES[name])
        if dict(frame.schema) != expected:
            raise StoreError(f"frame for table {name!r} does not have the {TABLES[name].__name__} schema")
        write_parquet_atomic(frame, self.table_path(name))
        self._update_counts({name: frame.height})

    def scan(self, name: str) -> pl.LazyFrame:
        """Table ``name`` as a lazy frame (an empty frame with the right schema if absent)."""
        path = self.table_path(name)
        if not path.exists():
            return pl.LazyFrame(schema=polars_schema(TABLES[name]))
        return pl.scan_parquet(path)

    def frame(self, name: str) -> pl.DataFrame:
        return self.scan(name).collect()

    def read(self, name: str) -> list[Record]:
        """All records of table ``name``, in stored order."""
        return frame_to_records(self.frame(name), TABLES[name])

    # manifest -----------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        if not path.exists():
            raise StoreError(f"{self.path} is not a prefkit run: {MANIFEST} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc})") from exc
        if data.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema_version {data.get('schema_version')!r}, this prefkit reads {SCHEMA_VERSION}"
            )
        return data

    def init_manifest(self, *, created_by: str, inputs: dict[str, str] | None = None) -> None:
        """Write a fresh manifest (replacing any) for a run created by ``created_by``."""
        write_json_atomic(
            self.path / MANIFEST,
            {
                "prefkit_version": _prefkit_version(),
                "schema_version": SCHEMA_VERSION,
                "created_by": created_by,
                "inputs": dict(sorted((inputs or {}).items())),
                "counts": {},
                "stages": {},
            },
        )

    def update_manifest(self, **fields: Any) -> None:
        data = self.manifest()
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        write_json_atomic(self.path / MANIFEST, data)

    def _update_counts(self, counts: dict[str, int]) -> None:
        if (self.path / MANIFEST).exists():
            self.update_manifest(counts=counts)

    def counts(self) -> dict[str, int]:
        return {name: self.scan(name).select(pl.len()).collect().item() for name in TABLES if self.has(name)}


@contextlib.contextmanager
def new_run(path: str | os.PathLike[str], *, created_by: str, inputs: dict[str, str] | None = None,
            overwrite: bool = False) -> Iterator[RunStore]:
    """Create a run directory all at once: tables are written to a temporary sibling directory that
    is renamed to ``path`` only when the block succeeds. On any error nothing is left behind.

    Raises:
        StoreError: ``path`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target} exists and is not a folder; choose another --out")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise StoreError(f"{target} already exists and is not empty; choose another --out or pass --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a run directory is an ordinary folder
    try:
        store = RunStore(tmp)
        store.init_manifest(created_by=created_by, inputs=inputs)
        yield store
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        store.path = target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
