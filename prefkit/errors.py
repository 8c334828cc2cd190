"""The errors prefkit raises for bad input. The CLI turns them into one message and exit code 2."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


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


# --------------------------------------------------------------------------------------------------
# pydantic ValidationError -> InputError: the one conversion (recipes, training recipes, CLI configs)
# --------------------------------------------------------------------------------------------------


def validation_input_error(exc: Any, model: type | None = None, *, what: str = "input",
                           path: str | Path | None = None, line_of: Callable[[tuple[Any, ...]], int | None] | None = None,
                           overridden: Iterable[str] = ()) -> InputError:
    """One ``InputError`` for a pydantic ``ValidationError``: the error the user most needs to see, with its
    field path (and, with ``line_of``, its line in the file).

    A misspelled key is reported as a typo with the nearest known field (``difflib``), e.g.
    ``recipe.yaml:7 [datasets.0.stratgy]: unknown key 'stratgy' (not a recipe field); did you mean
    'strategy'?``, ahead of the "field required" pydantic also reports for the field it was meant to be.
    Discriminator tags that pydantic puts in the location (``source.generate.agents``) are left out.

    Args:
        exc: the ``pydantic.ValidationError``.
        model: the model class that was validated (to find the known fields of a misspelled key's parent;
            without it only the missing fields next to it are candidates).
        what: what was validated, for the message (``recipe``, ``training recipe``).
        path: the file, when the input came from one.
        line_of: the 1-based line of a (cleaned) location in the file.
        overridden: field paths set on the command line (``--set``): an error there is named as such.
    """
    errors = [(err, *_clean_loc(model, tuple(err["loc"]))) for err in exc.errors()]
    missing = {(loc[:-1], str(loc[-1])) for err, loc, _ in errors if err["type"] == "missing" and loc}
    for err, loc, known in errors:
        if err["type"] == "extra_forbidden" and loc:
            key = str(loc[-1])
            candidates = set(known or ()) | {name for parent, name in missing if parent == loc[:-1]}
            near = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
            if near:
                chosen = (loc, f"unknown key {key!r} (not a {what} field); did you mean {near[0]!r}?")
                break
    else:
        err, loc, _ = errors[0]
        msg = err["msg"]
        if err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our own validators' words, without pydantic's "Value error, "
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown key {str(loc[-1])!r} (not a {what} field)" if loc else f"unknown key (not a {what} field)"
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        chosen = (loc, msg)
    loc, msg = chosen
    field = ".".join(str(p) for p in loc) or None
    if field and any(field == o or field.startswith(o + ".") for o in overridden):
        return InputError(f"{msg} (set by --set)", path=path, field=field)
    return InputError(msg, path=path, line=line_of(loc) if line_of and path else None, field=field)


def _clean_loc(model: type | None, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[str, ...] | None]:
    """``loc`` without discriminator tags, and the field names of the model that holds its last part
    (``None`` when the type path cannot be followed)."""
    from pydantic import BaseModel

    tp: Any = model
    clean: list[Any] = []
    known: tuple[str, ...] | None = None
    i = 0
    while i < len(loc):
        part = loc[i]
        tp = _unwrap(tp)
        if isinstance(tp, tuple):  # a union: pydantic names the member by its tag when it is discriminated
            member = next((m for m in tp if _has_tag(m, part)), None)
            if member is not None:
                tp, i = member, i + 1
                continue
            tp = None
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            known = tuple(tp.model_fields)
            field = tp.model_fields.get(str(part))
            tp = field.annotation if field is not None else None
        else:
            known = None
            origin = typing.get_origin(tp) if tp is not None else None
            if origin in (tuple, list) and isinstance(part, int):
                tp = typing.get_args(tp)[0]
            elif origin is dict:
                tp = typing.get_args(tp)[1]
            else:
                tp = None
        clean.append(part)
        i += 1
    return tuple(clean), known


def _unwrap(tp: Any) -> Any:
    """A type without ``Annotated`` and ``None``: one type, or a tuple of a union's members."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = tuple(_unwrap(m) for m in typing.get_args(tp) if m is not type(None))
        return members[0] if len(members) == 1 else members
    return tp


def _has_tag(member: Any, tag: Any) -> bool:
    fields = getattr(member, "model_fields", {})
    return any(typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation)
               for f in fields.values())
