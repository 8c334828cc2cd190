"""Tool calls written as text: Hermes/Qwen-style ``<tool_call>`` blocks taken out of a model's answer.

The one extraction routine for every backend (transformers and vLLM decode the text themselves; an
OpenAI-compatible server started without a tool-call parser returns it as content) and for the
native agent parser (``prefkit.render.turns.parse_native``), which also uses it to notice markup that
did not parse.

The rule (JSON-aware, so a closing tag inside a JSON string never ends a call; the failure that
NousResearch/hermes-agent #22696 reports for a lazy ``<tool_call>(.*?)</tool_call>`` regex):

- after ``<tool_call>`` and optional whitespace, one JSON value is decoded with the standard library's
  decoder (``prefkit.text.json_value_at``);
- it must be followed by optional whitespace and ``</tool_call>``, or by the end of the text (a call
  cut off at the end of the turn before its closing tag is still a call when its JSON is complete);
- the value is one call ``{"name": ..., "arguments": ...}`` or a non-empty list of them.
  ``arguments`` may be an object (kept as JSON text) or a string (kept as written, normally JSON
  text); ``parameters`` is accepted for ``arguments`` (Llama 3.1 style), missing or ``null`` means
  ``{}``; the OpenAI shape ``{"type": "function", "function": {...}}`` is unwrapped.

Anything else (JSON cut off, not a call, text between the JSON and the closing tag, a stray
``</tool_call>``) stays in the text as it was written and is reported as ``unparsed``, so nothing the
model wrote is lost and no caller mistakes the markup for prose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefkit.records import ToolCall, content_hash
from prefkit.text import json_value_at

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_CALL_ID_LENGTH = 9
"""Call ids are 9 alphanumerics (hex), the form the strictest chat templates (Mistral's) accept."""


@dataclass(frozen=True)
class ToolCallExtraction:
    """What ``extract_tool_calls`` found in a text."""

    text: str
    """The text outside the parsed blocks, stripped; the input unchanged when no call was parsed."""
    calls: tuple[ToolCall, ...]
    """The parsed calls in the order written; ``()`` when none."""
    unparsed: bool
    """Tool-call markup (``<tool_call>`` or ``</tool_call>``) remains in ``text``: a block that did not parse."""


def tool_call_id(index: int, name: str, arguments: str) -> str:
    """A deterministic call id: the content hash of the call and its position in the answer
    (``TOOL_CALL_ID_LENGTH`` hex characters), so the same output always gets the same ids."""
    return content_hash({"index": index, "name": name, "arguments": arguments}, length=TOOL_CALL_ID_LENGTH)


def extract_tool_calls(text: str) -> ToolCallExtraction:
    """Split the ``<tool_call>`` blocks out of ``text`` (see the module rules).

    Example: ``'Checking.\\n<tool_call>{"name": "f", "arguments": {"s": "</tool_call>"}}</tool_call>'``
    gives text ``"Checking."``, one call ``f`` with arguments ``'{"s": "</tool_call>"}'`` and
    ``unparsed=False``; ``'<tool_call>{"name": "f", "argu'`` gives the text unchanged, no call and
    ``unparsed=True``.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    while (start := text.find(TOOL_CALL_OPEN, position)) >= 0:
        block = _block_at(text, start)
        if block is None:
            # Keep the markup as written and look for further blocks after its opening tag.
            kept.append(text[position : start + len(TOOL_CALL_OPEN)])
            position = start + len(TOOL_CALL_OPEN)
            continue
        objects, end = block
        kept.append(text[position:start])
        calls.extend(_tool_call(obj, index=len(calls) + i) for i, obj in enumerate(objects))
        position = end
    kept.append(text[position:])
    rest = "".join(kept)
    unparsed = TOOL_CALL_OPEN in rest or TOOL_CALL_CLOSE in rest
    if not calls:
        return ToolCallExtraction(text=text, calls=(), unparsed=unparsed)
    return ToolCallExtraction(text=rest.strip(), calls=tuple(calls), unparsed=unparsed)


def parse_tool_calls(text: str) -> tuple[str, tuple[ToolCall, ...] | None]:
    """``extract_tool_calls`` in the shape ``Completion`` holds: the text outside the parsed blocks
    and the calls, or the text unchanged and ``None`` when no block parsed. Blocks that did not parse
    stay in the text (``prefkit.render.turns.parse_native`` re-prompts such a turn)."""
    found = extract_tool_calls(text)
    return found.text, found.calls or None


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _block_at(text: str, start: int) -> tuple[list[dict[str, Any]], int] | None:
    """The call objects of the block opening at ``text[start]`` and the index just past the block,
    or ``None`` when it does not parse."""
    found = json_value_at(text, _skip_space(text, start + len(TOOL_CALL_OPEN)))
    if found is None:
        return None
    value, end = found
    after = _skip_space(text, end)
    if text.startswith(TOOL_CALL_CLOSE, after):
        end = after + len(TOOL_CALL_CLOSE)
    elif after == len(text):
        end = after  # cut off at the end of the turn, its JSON complete
    else:
        return None
    objects = [_call_object(v) for v in (value if isinstance(value, list) else [value])]
    if not objects or any(obj is None for obj in objects):
        return None
    return objects, end  # type: ignore[return-value]


def _call_object(value: Any) -> dict[str, Any] | None:
    """``value`` as ``{"name": str, "arguments": ...}`` when it is a call, else ``None``."""
    if not isinstance(value, dict):
        return None
    if "name" not in value and isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = value["arguments"] if "arguments" in value else value.get("parameters")
    return {"name": name.strip(), "arguments": {} if arguments is None else arguments}


def _tool_call(obj: dict[str, Any], *, index: int) -> ToolCall:
    arguments = obj["arguments"]
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=tool_call_id(index, obj["name"], text), name=obj["name"], arguments=text)
