"""Reading input files: JSON, JSON Lines and file-format models, with errors that name the file,
the 1-based line and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from prefkit.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file; a missing or malformed file is an ``InputError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file ({exc})", path=path) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from exc


def read_jsonl(path: Path, *, shown_as: str | None = None) -> list[tuple[str, Any]]:
    """Every line of a JSON Lines file as ``(raw line without its newline, parsed value)``.

    Blank lines are errors rather than skipped: ToolEmu's files are matched line by line, so a
    blank line would silently shift every later record onto the wrong partner.

    Args:
        path: the file to read.
        shown_as: how errors name the file (default: ``path`` itself).
    """
    return list(_iter_jsonl(path, shown_as or str(path)))


def _iter_jsonl(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file ({exc})", path=shown) from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    for number, line in enumerate(lines, start=1):
        raw = line.removesuffix("\r")
        if not raw.strip():
            raise InputError("blank line (every line must hold one JSON object)", path=shown, line=number)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=shown, line=number) from exc
        yield raw, value


def validate_as(model: type[M], value: Any, *, path: str | Path, where: str, line: int | None = None) -> M:
    """``value`` validated as the file-format ``model``; the first problem becomes an ``InputError``
    whose field is ``where`` followed by the path inside the value (e.g. ``cases[3].Toolkits[0]``)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        got = "" if err["type"] == "missing" else f", got {_short(err['input'])}"
        raise InputError(f"{err['msg'].lower()}{got}", path=path, line=line, field=field) from None


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
