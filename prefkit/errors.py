"""The errors prefkit raises for bad input. The CLI turns them into one message and exit code 2."""

from __future__ import annotations

from pathlib import Path


class PrefkitError(Exception):
    """Base class of prefkit's own errors."""

    exit_code = 2


class InputError(PrefkitError):
    """Bad input: a file, line or field that prefkit cannot use. The message names where.

    Example: ``InputError("eval_id is 3, expected 2", path="runs/a.jsonl", line=3)`` prints
    ``runs/a.jsonl:3: eval_id is 3, expected 2``. ``line`` is 1-based, as editors count.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self.location() + message)

    def location(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line is not None else "")
        if self.field:
            where = f"{where} [{self.field}]" if where else f"[{self.field}]"
        return f"{where}: " if where else ""
