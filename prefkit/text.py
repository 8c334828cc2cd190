"""Text as it enters prefkit: JSON values found inside free text, and text that cannot be encoded.

Two rules every reader of model output and foreign files shares, so each lives once:

- ``json_values``: the JSON values embedded in a text, found by the standard library's JSON decoder
  (``json.JSONDecoder.raw_decode``), so a brace or a closing tag inside a JSON string never ends a
  value early. The judge parser, the tool-call extractor and the ReAct ``Action Input`` reader use it.
- ``clean_text``: lone UTF-16 surrogates (e.g. ``"\\ud83d"``, half an emoji, which ``json.loads``
  accepts from a ``\\u`` escape) replaced by U+FFFD, so nothing downstream (hashing, Parquet,
  terminal output) fails to encode it. Valid surrogate pairs are joined into their character.

Imports nothing of prefkit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_DECODER = json.JSONDecoder()

REPLACEMENT_CHARACTER = "\ufffd"


def json_value_at(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value that begins at ``text[start]`` and the index just past it, or ``None`` when no
    complete value begins there (not JSON, or cut off before its end)."""
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None


def json_values(text: str, *, opening: str = "{") -> Iterator[tuple[int, int, Any]]:
    """Every complete JSON value in ``text`` that starts with one of the ``opening`` characters, as
    ``(start, end, value)`` in order of appearance, never overlapping.

    A candidate that does not decode (prose such as ``{like this}``, or a value cut off at the end) is
    skipped and the scan goes on at the next opening character, so a value after prose with braces is
    still found. ``opening="{["`` finds arrays too.
    """
    position = 0
    while True:
        starts = [i for i in (text.find(ch, position) for ch in opening) if i >= 0]
        if not starts:
            return
        start = min(starts)
        found = json_value_at(text, start)
        if found is None:
            position = start + 1
            continue
        value, end = found
        yield start, end, value
        position = end


def first_json_object(text: str) -> str | None:
    """The text of the first complete JSON object in ``text`` (see ``json_values``), or ``None``."""
    for start, end, _ in json_values(text):
        return text[start:end]
    return None


def is_encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and surrogate pairs joined; other text unchanged."""
    if is_encodable(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
