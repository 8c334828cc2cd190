"""Check DPO rows against TRL before training: shapes, roles, the chat template, token lengths.

Rows are the pairer's TRL rows (``prompt``/``chosen``/``rejected`` message lists, an optional ``tools``
JSON string, metadata columns). Each row is checked in a fixed order and the first failure is its
reason (see ``check_pair_row``):

1. the contract's shape: the three message lists are present and non-empty; every message has
   the keys ``role``, ``content`` (a string) and ``tool_calls``, and may have ``tool_call_id``
   (the pairer writes all four on every message); ``tool_calls`` is ``None`` or, on an assistant
   message, a list of ``{"id", "type": "function", "function": {"name", "arguments"}}`` whose
   ``arguments`` is a JSON object (a string would be quoted a second time by templates that apply
   ``tojson``); ``tool_call_id`` is ``None`` except on a ``tool`` message, where it is required and must
   name a call of the nearest assistant message before it; call ids are unique within prompt+chosen
   and prompt+rejected; roles are ``system``/``user``/``assistant``/``tool``, ``system``
   only first in the prompt; the prompt ends with a ``user`` message (a prompt ending in a ``tool``
   message is rejected by older TRL, huggingface/trl#3529, and is never what the pairer writes);
   ``chosen``/``rejected`` start with an ``assistant`` message; ``tools`` parses to a list of
   function schemas that strict function-calling validators accept
   (``prefkit.records.function_schema_problems``);
2. TRL's own utilities: ``trl.data_utils.is_conversational`` and ``apply_chat_template`` (its key-set
   and last-role checks, and the template itself) with the given tokenizer and the row's tools;
3. the prompt-prefix property, on text and on tokens, exactly as ``DPOTrainer`` tokenizes a row:
   template(prompt, generation prompt) must be a prefix of template(prompt + chosen) and of
   template(prompt + rejected). When it is not, TRL silently cuts the prompt at the common prefix
   (text) or warns once (tokens) and trains on a context the model never sees at inference;
4. the token lengths of prompt+chosen and prompt+rejected. A valid row longer than ``max_length``
   is *dropped* and counted (the study drops, never truncates; TRL itself would truncate).

Counts: ``rows == valid + invalid`` and ``valid == kept + dropped_too_long``. Also counted (not a
failure): rows whose chosen or rejected trajectory is flagged ``non_object_arguments`` (an action input
that is not a JSON object, rendered as ReAct text even in native rows), from the rows' flag columns.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from prefkit.errors import InputError
from prefkit.records import function_schema_problems
from prefkit.store import atomic_path

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

MESSAGE_KEYS = frozenset({"role", "content", "tool_calls"})
"""Every message dict of a row has these keys (same keys everywhere keeps Arrow happy)..."""
OPTIONAL_MESSAGE_KEYS = frozenset({"tool_call_id"})
"""...and may have these (the pairer writes them on every message; rows without them are older)."""
CALL_KEYS = frozenset({"id", "type", "function"})
"""The keys of one tool call of an assistant message."""
FLAG = "non_object_arguments"
"""The trajectory flag whose rows ``validate_pair_rows`` counts."""
ROLES = frozenset({"system", "user", "assistant", "tool"})
"""Roles the rows may use. Chat templates silently drop roles they do not know (Qwen2.5 does)."""
TRL_KEYS = ("prompt", "chosen", "rejected")
"""The columns TRL trains on; the others are metadata, which DPOTrainer ignores."""


class InvalidRow(BaseModel):
    """A row that TRL must not see, and why (the first failed check)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    """0-based position of the row in its file or dataset."""
    reason: str


class FlaggedRows(BaseModel):
    """How many rows hold a flagged trajectory: on either side, as chosen, as rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int
    chosen: int
    rejected: int


class ValidationReport(BaseModel):
    """What ``validate_pair_rows`` found in one set of rows.

    ``rows == valid + invalid`` and ``valid == kept + dropped_too_long``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = None
    """The file the rows came from, if any."""
    max_length: int
    """The token limit used: longer valid rows are dropped."""
    rows: int
    valid: int
    """Rows that pass every check, whatever their length."""
    kept: int
    """Valid rows within ``max_length``: what training gets."""
    dropped_too_long: int
    invalid: int
    max_tokens: int
    """Longest tokenized prompt+chosen or prompt+rejected among valid rows (0 if none)."""
    max_prompt_tokens: int
    """Longest tokenized prompt (with the generation prompt) among valid rows (0 if none)."""
    row_tokens: tuple[int, ...] = ()
    """Per row, in order: the longer of prompt+chosen and prompt+rejected in tokens (0 for an invalid row)."""
    dropped_indices: tuple[int, ...] = ()
    invalid_rows: tuple[InvalidRow, ...] = ()
    non_object_arguments: FlaggedRows | None = None
    """Rows (valid or not) whose chosen/rejected trajectory holds an action input that is not a JSON object
    (flag ``non_object_arguments``); ``None`` when the rows have no ``chosen_flags``/``rejected_flags``."""

    @property
    def ok(self) -> bool:
        """True when no row is invalid (drops for length are not failures)."""
        return self.invalid == 0

    def kept_indices(self) -> list[int]:
        """Positions of the rows to train on, in order."""
        skip = set(self.dropped_indices) | {r.index for r in self.invalid_rows}
        return [i for i in range(self.rows) if i not in skip]

    def counts(self) -> dict[str, int]:
        """The integer summary the CLI prints."""
        return {
            "rows": self.rows,
            "valid": self.valid,
            "kept": self.kept,
            "invalid": self.invalid,
            "dropped_too_long": self.dropped_too_long,
            "max_tokens": self.max_tokens,
            "max_prompt_tokens": self.max_prompt_tokens,
        }


class RowLengths(BaseModel):
    """Token counts of one valid row, tokenized as DPOTrainer does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: int
    prompt_chosen: int
    prompt_rejected: int

    @property
    def longest(self) -> int:
        return max(self.prompt_chosen, self.prompt_rejected)


class RowError(ValueError):
    """A row breaks the contract; the message is the reason reported for it."""


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A local tokenizer with a chat template (never from the Hub).

    Raises:
        InputError: the folder is missing, holds no tokenizer, or its tokenizer has no chat template.
    """
    from transformers import AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise InputError("tokenizer folder not found", path=folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from this folder ({exc})", path=folder) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the tokenizer has no chat template; DPO on message rows needs one", path=folder)
    return tokenizer


def load_rows(path: str | os.PathLike[str]) -> Dataset:
    """Pair rows from a Parquet file written by the pairer, with their ``datasets`` features.

    Raises:
        InputError: the file is missing, not a readable Parquet file, or a table without the message
            columns (``prompt``, ``chosen``, ``rejected``: e.g. a run's ``trajectories.parquet``).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError("pair rows file not found", path=file)
    from prefkit.pairing.rows import MESSAGE_COLUMNS, load_pair_rows

    try:
        rows = load_pair_rows(file)
    except InputError:
        raise
    except Exception as exc:  # pyarrow/datasets raise many types for a corrupt file
        raise InputError(f"cannot read pair rows ({type(exc).__name__}: {exc})", path=file) from exc
    # A whole table of other records is one error, not one "missing key" per row.
    missing = [name for name in MESSAGE_COLUMNS if name not in rows.column_names]
    if missing:
        raise InputError(f"not pair rows: missing column(s) {', '.join(missing)} (columns: "
                         f"{', '.join(rows.column_names[:8])}{', ...' if len(rows.column_names) > 8 else ''}); "
                         "is it a `prefkit pair` output?", path=file)
    return rows


# --------------------------------------------------------------------------------------------------
# Checking one row
# --------------------------------------------------------------------------------------------------


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list) or not calls:
        raise RowError(f"{where}.tool_calls must be None or a non-empty list, got {calls!r:.80}")
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(call, Mapping) or set(call) != CALL_KEYS or call["type"] != "function" \
                or not isinstance(fn, Mapping):
            missing = sorted(CALL_KEYS - set(call)) if isinstance(call, Mapping) else []
            hint = " (rows written before prefkit kept call ids: pair the run again)" if missing == ["id"] else ""
            raise RowError(f'{where}.tool_calls[{k}] must be {{"id": ..., "type": "function", "function": {{...}}}}'
                           f"{f', missing {missing}' if missing else ''}{hint}")
        if not isinstance(call["id"], str) or not call["id"]:
            raise RowError(f"{where}.tool_calls[{k}].id must be a non-empty string, got {call['id']!r:.40}")
        if set(fn) != {"name", "arguments"} or not isinstance(fn["name"], str) or not fn["name"]:
            raise RowError(f"{where}.tool_calls[{k}].function must have exactly a non-empty name and arguments")
        if not isinstance(fn["arguments"], dict):
            raise RowError(f"{where}.tool_calls[{k}].function.arguments must be a JSON object (dict), got "
                           f"{type(fn['arguments']).__name__} {fn['arguments']!r:.60}: templates that apply tojson "
                           "would quote a string a second time")


def _check_messages(row: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    messages = row.get(key)
    if messages is None:
        raise RowError(f"missing key {key!r}")
    if not isinstance(messages, list) or not messages:
        raise RowError(f"{key} must be a non-empty list of messages")
    for i, msg in enumerate(messages):
        where = f"{key}[{i}]"
        if not isinstance(msg, Mapping):
            raise RowError(f"{where} is not a message dict")
        if not MESSAGE_KEYS <= set(msg) <= MESSAGE_KEYS | OPTIONAL_MESSAGE_KEYS:
            missing = sorted(MESSAGE_KEYS - set(msg))
            extra = sorted(set(msg) - MESSAGE_KEYS - OPTIONAL_MESSAGE_KEYS)
            raise RowError(f"{where} keys must be role, content, tool_calls and optionally tool_call_id "
                           f"(missing {missing}, extra {extra})")
        if msg["role"] not in ROLES:
            raise RowError(f"{where} has role {msg['role']!r}; allowed: {', '.join(sorted(ROLES))}")
        if not isinstance(msg["content"], str):
            raise RowError(f"{where}.content must be a string, got {type(msg['content']).__name__}")
        if msg["tool_calls"] is not None:
            if msg["role"] != "assistant":
                raise RowError(f"{where} has tool_calls but role {msg['role']!r}; only assistant messages call tools")
            _check_tool_calls(msg["tool_calls"], where)
        tool_call_id = msg.get("tool_call_id")
        if msg["role"] == "tool":
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise RowError(f"{where} is a tool message without a tool_call_id (the id of the call it answers; "
                               "rows written before prefkit kept call ids: pair the run again)")
        elif tool_call_id is not None:
            raise RowError(f"{where} has a tool_call_id but role {msg['role']!r}; only tool messages answer calls")
        if msg["role"] == "system" and not (key == "prompt" and i == 0):
            raise RowError(f"{where} is a system message; only the first prompt message may be one")
    return messages


def _check_call_ids(prompt: list[Mapping[str, Any]], side: list[Mapping[str, Any]], key: str) -> None:
    """Tool-call ids in prompt+``side``: unique, and every tool message answers a call of the nearest
    assistant message before it (what templates that render ids, e.g. Mistral's, rely on)."""
    seen: set[str] = set()
    open_calls: set[str] | None = None  # the ids of the nearest assistant message so far
    for where, msg in [*((f"prompt[{i}]", m) for i, m in enumerate(prompt)),
                       *((f"{key}[{i}]", m) for i, m in enumerate(side))]:
        if msg["role"] == "assistant":
            ids = [call["id"] for call in msg["tool_calls"] or []]
            repeated = sorted({i for i in ids if i in seen or ids.count(i) > 1})
            if repeated:
                raise RowError(f"{where} repeats tool call id {repeated[0]!r}; ids must be unique in a conversation")
            seen.update(ids)
            open_calls = set(ids)
        elif msg["role"] == "tool" and msg["tool_call_id"] not in (open_calls or ()):
            raise RowError(f"{where}.tool_call_id {msg['tool_call_id']!r} names no call of the assistant message "
                           f"before it (its calls: {sorted(open_calls or ())})")


def _parse_tools(row: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    # DPOTrainer json.loads a string `tools` value; a list is passed as is.
    tools = row.get("tools")
    if tools is None:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise RowError(f"tools is not valid JSON ({exc})") from exc
    if not isinstance(tools, list):
        raise RowError('tools must be a list of {"type": "function", "function": {"name": ...}} schemas')
    for k, schema in enumerate(tools):
        problems = function_schema_problems(schema)
        if problems:
            raise RowError(f"tools[{k}]{problems[0]} (strict function-calling validators reject it"
                           f"{f'; {len(problems) - 1} more problem(s)' if len(problems) > 1 else ''})")
    return tools


def check_row_shape(row: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Check step 1 (the contract's shape) of one row; returns its parsed tools.

    Raises:
        RowError: the first problem found, in the order of the module docstring.
    """
    prompt = _check_messages(row, "prompt")
    chosen = _check_messages(row, "chosen")
    rejected = _check_messages(row, "rejected")
    last = prompt[-1]["role"]
    if last == "tool":
        raise RowError("the prompt ends with a tool message (some TRL versions reject it, huggingface/trl#3529); "
                       "end the prompt with the user message and put the tool turns in chosen/rejected")
    if last != "user":
        raise RowError(f"the prompt must end with a user message, not {last!r}")
    for key, messages in (("chosen", chosen), ("rejected", rejected)):
        if messages[0]["role"] != "assistant":
            raise RowError(f"{key} must start with an assistant message, not {messages[0]['role']!r}")
        _check_call_ids(prompt, messages, key)
    return _parse_tools(row)


class TokenCounter:
    """Tokenizes rendered rows as DPOTrainer does, remembering results by text digest.

    One trajectory is chosen or rejected in many pairs of its scenario, and every pair of a scenario
    shares the prompt: remembering each distinct text's tokens makes checking a dataset cost about one
    tokenization per distinct trajectory instead of three per row. Only digests and integers are kept
    for completions (their id lists are large); prompt ids are kept to compare prefixes.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._prompts: dict[bytes, list[int]] = {}
        self._sequences: dict[tuple[bytes, bytes], tuple[int, int]] = {}

    def _ids(self, text: str) -> list[int]:
        # What `tokenizer.apply_chat_template(..., tokenize=True)` (TRL's `_tokenize`) does with the
        # rendered text: no special tokens added on top of the template's own.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, text: str) -> tuple[bytes, list[int]]:
        """The digest and token ids of a rendered prompt."""
        key = _digest(text)
        if key not in self._prompts:
            self._prompts[key] = self._ids(text)
        return key, self._prompts[key]

    def sequence(self, prompt: tuple[bytes, list[int]], text: str) -> tuple[int, int]:
        """Token count of a rendered prompt+completion, and how many leading tokens it shares with the prompt."""
        from trl.data_utils import common_prefix_length

        key = (prompt[0], _digest(text))
        if key not in self._sequences:
            ids = self._ids(text)
            self._sequences[key] = (len(ids), common_prefix_length(prompt[1], ids))
        return self._sequences[key]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def check_pair_row(row: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, *,
                   tokens: TokenCounter | None = None) -> RowLengths:
    """Check one row as DPOTrainer will see it; returns its token lengths.

    ``tokens`` shares tokenizations between the rows of one dataset (a fresh one is made if omitted).

    Raises:
        RowError: the row is invalid; the message says why.
    """
    from trl.data_utils import apply_chat_template, is_conversational

    tools = check_row_shape(row)
    example = {key: row[key] for key in row if key != "tools"}
    if not is_conversational(example):
        raise RowError("TRL does not see a conversational row (is_conversational is False)")
    try:
        rendered = apply_chat_template(example, tokenizer, tools=tools)
    except Exception as exc:  # TRL's KeyError/ValueError, or the template's own errors
        raise RowError(f"TRL apply_chat_template failed: {type(exc).__name__}: {exc}") from exc

    # TRL cuts its "prompt" to the text prompt, prompt+chosen and prompt+rejected share; anything
    # shorter than the prompt rendered alone means the template is not prefix-preserving here.
    prompt_text = tokenizer.apply_chat_template(
        row["prompt"], tools=tools or None, add_generation_prompt=True, tokenize=False
    )
    if rendered["prompt"] != prompt_text:
        raise RowError(
            "chat template: the prompt (with generation prompt) is not a prefix of prompt+chosen/rejected; "
            f"they diverge after {len(rendered['prompt'])} of {len(prompt_text)} characters, at "
            f"{prompt_text[len(rendered['prompt']):][:60]!r}"
        )
    tokens = tokens or TokenCounter(tokenizer)
    prompt = tokens.prompt(prompt_text)
    n_prompt = len(prompt[1])
    n_chosen, shared_chosen = tokens.sequence(prompt, prompt_text + rendered["chosen"])
    n_rejected, shared_rejected = tokens.sequence(prompt, prompt_text + rendered["rejected"])
    shared = min(shared_chosen, shared_rejected)
    if shared < n_prompt:
        raise RowError(
            f"tokens: the prompt's {n_prompt} tokens are not a prefix of prompt+completion "
            f"(they diverge at token {shared}: {tokenizer.decode(prompt[1][shared:])!r:.60})"
        )
    if n_chosen <= n_prompt or n_rejected <= n_prompt:
        raise RowError("chosen or rejected renders to no tokens after the prompt")
    return RowLengths(prompt=n_prompt, prompt_chosen=n_chosen, prompt_rejected=n_rejected)


# --------------------------------------------------------------------------------------------------
# Checking many rows
# --------------------------------------------------------------------------------------------------


def _check_max_length(max_length: int) -> None:
    if max_length < 1:
        raise InputError(f"max_length must be a positive number of tokens, got {max_length}", field="max_length")


def validate_pair_rows(
    dataset_or_path: Dataset | Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str],
    max_length: int,
) -> ValidationReport:
    """Check every row with TRL's utilities and the tokenizer; count the rows too long to keep.

    Args:
        dataset_or_path: a ``datasets.Dataset`` of rows, a list of row dicts, or a Parquet file
            written by the pairer (``train.parquet`` / ``test.parquet``).
        tokenizer: the tokenizer (with a chat template) training will use, or its local folder.
        max_length: valid rows whose prompt+chosen or prompt+rejected is longer are dropped.

    Returns:
        The report; ``report.kept_indices()`` are the rows to train on.

    Raises:
        InputError: unreadable rows file or tokenizer folder, or ``max_length`` < 1.

    Example::

        report = validate_pair_rows("pairs/train.parquet", tokenizer="models/tiny", max_length=8192)
        assert report.ok, report.invalid_rows[:3]
    """
    _check_max_length(max_length)
    source = None
    rows = dataset_or_path
    if isinstance(rows, str | os.PathLike):
        source = str(rows)
        rows = load_rows(rows)
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = load_tokenizer(tokenizer)

    invalid: list[InvalidRow] = []
    row_tokens: list[int] = []
    prompt_tokens: list[int] = []
    tokens = TokenCounter(tokenizer)
    flagged = _flagged_rows(rows)
    for index, row in enumerate(rows):
        try:
            lengths = check_pair_row(row, tokenizer, tokens=tokens)
        except RowError as exc:
            invalid.append(InvalidRow(index=index, reason=str(exc)))
            row_tokens.append(0)
            continue
        row_tokens.append(lengths.longest)
        prompt_tokens.append(lengths.prompt)
    dropped = tuple(i for i, n in enumerate(row_tokens) if n > max_length)
    valid = len(row_tokens) - len(invalid)
    return ValidationReport(
        source=source,
        max_length=max_length,
        rows=len(row_tokens),
        valid=valid,
        kept=valid - len(dropped),
        dropped_too_long=len(dropped),
        invalid=len(invalid),
        max_tokens=max(row_tokens, default=0),
        max_prompt_tokens=max(prompt_tokens, default=0),
        row_tokens=tuple(row_tokens),
        dropped_indices=dropped,
        invalid_rows=tuple(invalid),
        non_object_arguments=flagged,
    )


def _flagged_rows(rows: Any) -> FlaggedRows | None:
    """Rows whose chosen/rejected flags hold ``FLAG``; ``None`` when the rows have no flag columns."""
    names = getattr(rows, "column_names", None)
    if names is not None:  # a Dataset: read the two small columns, not every message
        if not {"chosen_flags", "rejected_flags"} <= set(names):
            return None
        sides = zip(rows["chosen_flags"], rows["rejected_flags"], strict=True)
    else:
        if any("chosen_flags" not in r or "rejected_flags" not in r for r in rows):
            return None
        sides = ((r["chosen_flags"], r["rejected_flags"]) for r in rows)
    marks = [(FLAG in (c or ()), FLAG in (r or ())) for c, r in sides]
    return FlaggedRows(rows=sum(c or r for c, r in marks), chosen=sum(c for c, _ in marks),
                       rejected=sum(r for _, r in marks))


def write_kept_rows(rows: Dataset, report: ValidationReport, out: str | os.PathLike[str]) -> int:
    """Write the rows ``report`` keeps to the Parquet file ``out`` (same features); returns the count."""
    if report.rows != len(rows):
        raise ValueError(f"the report covers {report.rows} rows, the dataset has {len(rows)}")
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    kept = rows.select(report.kept_indices())
    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        with atomic_path(Path(out)) as tmp:  # `out` may replace the very file the rows came from
            kept.to_parquet(str(tmp))
    finally:
        if was_enabled:
            enable_progress_bar()
    return len(kept)


def validate_pairs_path(
    path: str | os.PathLike[str],
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str],
    max_length: int,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, ValidationReport]:
    """Validate a pairer output folder (its ``train.parquet`` and ``test.parquet``) or one Parquet file.

    With ``out``, the kept rows of each file are written to ``out/<file name>``.

    Returns:
        File name -> report, in ``prefkit.pairing.pairs.PAIR_SPLITS`` order for a folder.

    Raises:
        InputError: the path is missing, a folder that is not a pairs folder (no ``pairing.json``) holds
            neither split file, or a file is unreadable. A pairs folder's absent split file is a split
            without rows (``prefkit.pairing.pairs.split_file``): it gets no report.
    """
    _check_max_length(max_length)
    root = Path(path)
    if root.is_dir():
        from prefkit.pairing.pairs import PAIR_SPLITS, present_split_files, split_file

        files = list(present_split_files(root).values())
        # A pairs folder (pairing.json) leaves out the file of a split without rows: zero rows, nothing to check.
        if not files and not (root / "pairing.json").is_file():
            names = " or ".join(split_file(root, split).name for split in PAIR_SPLITS)
            raise InputError(f"no {names} in this folder; is it a `prefkit pair` output?",
                             path=root)
    elif root.is_file():
        files = [root]
    else:
        raise InputError("no such file or folder", path=root)
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = load_tokenizer(tokenizer)

    reports: dict[str, ValidationReport] = {}
    for file in files:
        rows = load_rows(file)
        report = validate_pair_rows(rows, tokenizer=tokenizer, max_length=max_length)
        reports[file.name] = report.model_copy(update={"source": str(file)})
        if out is not None:
            write_kept_rows(rows, report, Path(out) / file.name)
    return reports


def summarize_reports(reports: Mapping[str, ValidationReport]) -> dict[str, Any]:
    """Totals over several reports (integers, maxima for token counts) plus each file's counts.

    ``non_object_arguments`` (in the totals and per file) is ``{"rows", "chosen", "rejected"}``: rows whose
    either / chosen / rejected trajectory is flagged ``non_object_arguments``; ``None`` for rows without
    flag columns."""
    keys = ("rows", "valid", "kept", "invalid", "dropped_too_long")
    total: dict[str, Any] = {k: sum(r.counts()[k] for r in reports.values()) for k in keys}
    total["max_tokens"] = max((r.max_tokens for r in reports.values()), default=0)
    total["max_prompt_tokens"] = max((r.max_prompt_tokens for r in reports.values()), default=0)
    # rows holding a trajectory flagged non_object_arguments (either side, chosen, rejected); None if unknown
    flagged = [r.non_object_arguments for r in reports.values()]
    total[FLAG] = None if None in flagged or not flagged else {
        k: sum(getattr(f, k) for f in flagged if f is not None) for k in ("rows", "chosen", "rejected")
    }
    total["files"] = {
        name: {**r.counts(), FLAG: r.non_object_arguments.model_dump() if r.non_object_arguments else None}
        for name, r in reports.items()
    }
    total["invalid_rows"] = [
        {"file": name, "index": bad.index, "reason": bad.reason}
        for name, r in reports.items() for bad in r.invalid_rows
    ]
    return total
