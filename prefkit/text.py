"""Text as it enters prefkit: JSON values found inside free text, and text that cannot be encoded.

Two rules every reader of model output and foreign files shares, so each lives once:

- ``json_values``: the JSON values embedded in a text, found by the standard library's JSON decoder
  (``json.JSONDecoder.raw_decode``), so a brace or a closing tag inside a JSON string never ends a
  value early. The judge parser, the tool-call extractor and the ReAct ``Action Input`` reader use it.
- ``clean_text``: lone UTF-16 surrogates (e.g. ``"\\ud83d"``, half an emoji, which ``json.loads``
  accepts from a ``\\u`` escape) replaced by U+FFFD, so nothing downstream (hashing, Parquet,
  terminal output) fails to encode it. Valid surrogate pairs are joined into their character.
  ``clean_value`` applies it to a decoded JSON value, ``clean_json_text`` to JSON text (its lone
  surrogate escapes, so that the text decodes clean), ``has_replacement`` tells whether a text holds
  U+FFFD (the mark ``unencodable_text`` flags and ``prefkit inspect`` counts are read from).

Imports nothing of prefkit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_DECODER = json.JSONDecoder()

REPLACEMENT_CHARACTER = "\ufffd"


def json_value_at(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value that begins at ``text[start]`` and the index just past it, or ``None`` when no
    complete value begins there (not JSON, or cut off before its end).

    Strings in the value are ``clean_value``-ed: a model that writes a lone surrogate escape
    (``"\\ud83d"``) in its JSON gets U+FFFD, not a string that fails to encode when it is stored.
    """
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return clean_value(value), end


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


def clean_value(value: Any) -> Any:
    """A decoded JSON value (or any nest of dicts, lists and tuples) with ``clean_text`` applied to every
    string in it, keys included; other values unchanged. Returns ``value`` itself when nothing needed
    cleaning."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value


# One ``\uXXXX`` escape of a surrogate pair (kept), of a lone surrogate (replaced), or any other escape
# (kept, and consumed whole so that the ``u`` of an escaped backslash ``\\ud83d`` is not read as an escape).
_ESCAPE = re.compile(r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[dD][89a-fA-F][0-9a-fA-F]{2}|.)",
                     re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def clean_json_text(text: str) -> str:
    """JSON text whose ``\\uXXXX`` escapes of lone surrogates (``"\\ud83d"``: half an emoji, which
    ``json.loads`` accepts and decodes to an unencodable string) are replaced by U+FFFD, so that what it
    decodes to is encodable; the text itself is cleaned with ``clean_text`` too. Valid surrogate-pair
    escapes and every other escape are kept as written; text without such escapes is returned as is.

    The escape-level twin of ``clean_text``: for JSON text that prefkit stores and decodes again later
    (an imported eval line kept as a judgment's ``raw_output``, a tool call's arguments).
    """
    text = clean_text(text)
    if _SURROGATE_ESCAPE.search(text) is None:  # the common case: one quick scan, no rewriting
        return text
    return _ESCAPE.sub(lambda m: REPLACEMENT_CHARACTER if len(m.group()) == 6 else m.group(), text)


def has_replacement(text: str | None) -> bool:
    """Whether ``text`` holds U+FFFD: something in it could not be encoded or decoded and was replaced
    (by ``clean_text``/``clean_json_text``, or by a tokenizer decoding a cut multi-byte character)."""
    return text is not None and REPLACEMENT_CHARACTER in text
