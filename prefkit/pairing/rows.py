"""Preference pairs as TRL rows (conversational DPO format) and their Parquet files.

One row per pair: ``prompt`` (system + user), ``chosen`` and ``rejected`` (the two trajectories' agent sides),
``tools`` for the native rendering (a JSON string of the function schemas; TRL ``json.loads`` it), and
metadata columns (see ``METADATA_COLUMNS`` and ``FLAG_COLUMNS``). Every message is a dict with exactly the keys
``role``, ``content``, ``tool_calls`` and ``tool_call_id``, made by the one message converter
(``prefkit.backends.base.message_dict`` with ``arguments="object"``, ``every_key=True``):

- ``tool_calls`` is ``None`` except on native assistant tool calls, where it is
  ``[{"id": "call00000", "type": "function", "function": {"name": ..., "arguments": {...}}}]``; the
  arguments are always a JSON object (a step whose action input is not one is rendered as ReAct text, see
  ``prefkit.render.native``);
- ``tool_call_id`` is ``None`` except on native ``tool`` messages, where it is the id of the call it answers.

Call ids are 9 alphanumerics (what Mistral-family templates demand), unique within a conversation.
``chosen_flags``/``rejected_flags`` list each side's trajectory flags (``prefkit.records.TRAJECTORY_FLAGS``,
e.g. ``non_object_arguments``), so ``prefkit validate`` and the audit can count rows that hold such a side.

Messages are stored with ``datasets``' ``Json`` feature: Arrow would otherwise merge every call's ``arguments``
into one struct type with all keys of all calls (environment.md §4), and the round trip would change them.
Each message is handed to ``datasets`` already encoded by Python's ``json`` (which ``Json`` stores verbatim):
its own encoder (pandas' ujson) keeps only 10 significant digits of floats. Reading goes through ``datasets``'
decoder (ujson again), which can round the 17th significant digit of a float; the file itself is exact.
Prompts end with the user instruction and every tool message sits inside chosen/rejected, so TRL never sees a
prompt ending in a tool message (trl issue 3529).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prefkit.backends.base import message_dicts
from prefkit.pairing.config import Rendering
from prefkit.records import Message, Scenario, Toolkit
from prefkit.store import RunStore, atomic_path

MESSAGE_COLUMNS = ("prompt", "chosen", "rejected")

METADATA_COLUMNS: dict[str, str] = {
    "pair_type": "string",  # the strategy
    "scenario_id": "string",
    "scenario_index": "int64",
    "split": "string",
    "rendering": "string",
    "chosen_id": "string",
    "rejected_id": "string",
    "chosen_agent": "string",
    "rejected_agent": "string",
    "chosen_safety": "float64",
    "chosen_helpfulness": "float64",
    "rejected_safety": "float64",
    "rejected_helpfulness": "float64",
    "chosen_score": "float64",
    "rejected_score": "float64",
    "margin": "float64",  # first metric
    "margin_safety": "float64",
    "margin_helpfulness": "float64",
}
"""Metadata columns of a row and their ``datasets`` value types, in column order."""


def pair_rows_features(rendering: Rendering) -> Any:
    """The ``datasets.Features`` of the rows: messages as ``List(Json())``, ``tools`` (native only) as a
    string, then the metadata columns and the flag columns (lists of strings)."""
    from datasets import Features, Json, List, Value

    features: dict[str, Any] = {name: List(Json()) for name in MESSAGE_COLUMNS}
    if rendering == "native":
        features["tools"] = Value("string")
    features.update({name: Value(dtype) for name, dtype in METADATA_COLUMNS.items()})
    features.update({name: List(Value("string")) for name in FLAG_COLUMNS})
    return Features(features)


FLAG_COLUMNS = ("chosen_flags", "rejected_flags")
"""List-of-strings metadata columns: the flags of the chosen and the rejected trajectory (after ``METADATA_COLUMNS``)."""


def row_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages (records, or their ``model_dump()`` as the run store holds them) as the rows' message dicts."""
    return message_dicts(messages, arguments="object", every_key=True)


def _message_texts(messages: Iterable[Message | Mapping[str, Any]]) -> list[str]:
    """Each message of a row as exact JSON text (what ``write_pair_rows`` hands to ``datasets``)."""
    return [json.dumps(m, ensure_ascii=False) for m in row_messages(messages)]


def prompt_frame(scenarios: list[Scenario], toolkits: list[Toolkit], rendering: Rendering) -> pl.DataFrame:
    """``scenario_id``, ``prompt`` (the TRL messages as JSON texts) and, for native, ``tools`` (JSON text)."""
    from prefkit.render.prompts import native_prompt, react_prompt, tool_schemas

    columns: dict[str, Any] = {"scenario_id": [s.id for s in scenarios]}
    schema: dict[str, Any] = {"scenario_id": pl.String, "prompt": pl.List(pl.String)}
    if rendering == "react":
        columns["prompt"] = [_message_texts(react_prompt(s, toolkits)) for s in scenarios]
    else:
        columns["prompt"] = [_message_texts(native_prompt(s)) for s in scenarios]
        columns["tools"] = [json.dumps(tool_schemas(s, toolkits), ensure_ascii=False) for s in scenarios]
        schema["tools"] = pl.String
    return pl.DataFrame(columns, schema=schema)


def turns_frame(store: RunStore, ids: pl.Series, rendering: Rendering) -> pl.DataFrame:
    """``trajectory_id``, ``turns`` (its agent side's TRL messages as JSON texts) and ``flags`` for ``ids``."""
    column = "react_messages" if rendering == "react" else "messages"
    trajectories = (
        store.scan("trajectories")
        .filter(pl.col("id").is_in(ids.unique().implode()))
        .select(trajectory_id="id", messages=column, flags=pl.col("flags").cast(pl.List(pl.String)))
        .unique("trajectory_id", keep="first", maintain_order=True)
        .collect()
    )
    # Tool-call arguments decode to per-call dicts, which no polars dtype holds: per trajectory in Python,
    # once for each trajectory however many pairs it is in.
    return trajectories.select(
        "trajectory_id",
        "flags",
        turns=pl.Series([_message_texts(m) for m in trajectories["messages"].to_list()], dtype=pl.List(pl.String)),
    )


def pair_rows_frame(pairs: pl.DataFrame, store: RunStore, rendering: Rendering) -> pl.DataFrame:
    """TRL rows for ``pairs`` (``PreferencePair`` schema) as a frame, in the pairs' order; the message columns
    hold one JSON text per message.

    Args:
        pairs: pairs of the run ``store`` (e.g. ``build_pairs(...).pairs``, or one split of it).
        store: the run holding the pairs' trajectories, scenarios and toolkits.
        rendering: ``react`` (study text turns) or ``native`` (tool calls plus a ``tools`` column).
    """
    scenario_ids = set(pairs["scenario_id"].unique().to_list())
    scenarios = [s for s in store.read("scenarios") if s.id in scenario_ids]
    prompts = prompt_frame(scenarios, store.read("toolkits"), rendering)  # type: ignore[arg-type]
    turns = turns_frame(store, pl.concat([pairs["chosen_id"], pairs["rejected_id"]]), rendering)
    return (
        pairs.lazy()
        .join(prompts.lazy(), on="scenario_id", how="left", maintain_order="left")
        .join(turns.lazy().rename({"trajectory_id": "chosen_id", "turns": "chosen", "flags": "chosen_flags"}),
              on="chosen_id", how="left", maintain_order="left")
        .join(turns.lazy().rename({"trajectory_id": "rejected_id", "turns": "rejected", "flags": "rejected_flags"}),
              on="rejected_id", how="left", maintain_order="left")
        .select(
            "prompt",
            "chosen",
            "rejected",
            *(["tools"] if rendering == "native" else []),
            pair_type="strategy",
            scenario_id="scenario_id",
            scenario_index="scenario_index",
            split="split",
            rendering=pl.lit(rendering),
            chosen_id="chosen_id",
            rejected_id="rejected_id",
            chosen_agent="chosen_agent",
            rejected_agent="rejected_agent",
            chosen_safety="chosen_safety",
            chosen_helpfulness="chosen_helpfulness",
            rejected_safety="rejected_safety",
            rejected_helpfulness="rejected_helpfulness",
            chosen_score="chosen_score",
            rejected_score="rejected_score",
            margin="margin",
            margin_safety=pl.col("chosen_safety") - pl.col("rejected_safety"),
            margin_helpfulness=pl.col("chosen_helpfulness") - pl.col("rejected_helpfulness"),
            chosen_flags="chosen_flags",
            rejected_flags="rejected_flags",
        )
        .collect()
    )


def build_pair_rows(pairs: pl.DataFrame, store: RunStore, rendering: Rendering) -> list[dict[str, Any]]:
    """TRL rows for ``pairs`` as Python dicts (messages decoded), in the pairs' order; see ``pair_rows_frame``."""
    rows = pair_rows_frame(pairs, store, rendering).to_dicts()
    for row in rows:
        for name in MESSAGE_COLUMNS:
            row[name] = [json.loads(text) for text in row[name]]
    return rows


def _encoded_messages(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every message as exact JSON text (texts are kept, dicts encoded by Python's json), and
    empty flag lists where the row has none (added after the row's own keys, so a file's columns are in
    ``pair_rows_features`` order whether or not it has rows)."""
    return {
        **row,
        **{name: row.get(name) or [] for name in FLAG_COLUMNS},
        **{
            name: [m if isinstance(m, str) else json.dumps(m, ensure_ascii=False) for m in row[name]]
            for name in MESSAGE_COLUMNS
        },
    }


def write_pair_rows(rows: list[dict[str, Any]] | pl.DataFrame, path: Path, rendering: Rendering) -> int:
    """Write rows (``build_pair_rows`` dicts or a ``pair_rows_frame``) as a Parquet file through ``datasets``
    (with ``pair_rows_features``), atomically.

    Returns the number of rows written. No rows writes an empty file with the same features.
    """
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    features = pair_rows_features(rendering)
    if isinstance(rows, pl.DataFrame):
        rows = rows.to_dicts()
    rows = [_encoded_messages(row) for row in rows]
    data = Dataset.from_list(rows, features=features) if rows else Dataset.from_dict(
        {name: [] for name in features}, features=features
    )
    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        with atomic_path(Path(path)) as tmp:
            data.to_parquet(str(tmp))
    finally:
        if was_enabled:
            enable_progress_bar()
    return len(data)


def load_pair_rows(path: str | Path) -> Any:
    """Read a rows file back as a ``datasets.Dataset`` with its features (messages decoded from Json).

    Reads with pyarrow and wraps the table, so nothing is written to the datasets cache.
    """
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset(pq.read_table(str(path)))
