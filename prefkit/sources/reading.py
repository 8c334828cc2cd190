"""Reading input files: JSON, JSON Lines and file-format models, with errors that name the file,
the 1-based line and the field.

Text enters prefkit here, so it is made encodable here: a ``\\uXXXX`` escape of a lone surrogate (half
an emoji, valid JSON that ``json.loads`` decodes to a string nothing can encode) is replaced by U+FFFD
before decoding (``prefkit.text.clean_json_text``), in the parsed values and in the raw lines kept as
``Judgment.raw_output`` alike. Records holding U+FFFD are counted: the flag ``unencodable_text`` on
trajectories, ``judgment_flags.unencodable_text`` in ``prefkit inspect``. A file that is not UTF-8 at all
is an error naming its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from prefkit.errors import InputError
from prefkit.text import clean_json_text

M = TypeVar("M", bound=BaseModel)


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file; a missing or malformed file is an ``InputError``."""
    text = _read_text(path, str(path))
    try:
        return json.loads(clean_json_text(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from exc


def read_jsonl(path: Path, *, shown_as: str | None = None) -> list[tuple[str, Any]]:
    """Every line of a JSON Lines file as ``(raw line without its newline, parsed value)``.

    Blank lines are errors rather than skipped: ToolEmu's files are matched line by line, so a
    blank line would silently shift every later record onto the wrong partner. Lone surrogate escapes
    are replaced by U+FFFD in the raw line before it is parsed (see the module docstring).

    Args:
        path: the file to read.
        shown_as: how errors name the file (default: ``path`` itself).
    """
    return list(_iter_jsonl(path, shown_as or str(path)))


def _read_text(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=shown) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc})", path=shown) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} ({exc.reason})",
                         path=shown, line=line) from None


def _iter_jsonl(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    text = _read_text(path, shown)
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    for number, line in enumerate(lines, start=1):
        raw = clean_json_text(line.removesuffix("\r"))
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
