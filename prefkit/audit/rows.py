"""Reading a pairs folder's TRL rows for the audit: one narrow, enriched row per pair.

A row's split is the file it is in (``train.parquet`` / ``test.parquet``): that is what gets trained on. The
metadata columns (the pairer's row contract) carry the pair's ids, agents and both metrics' scores; the message
columns give each side's length, its rendered tool turns and the keys that find duplicates, and are then
dropped. With the run, each side's tool calls and the chosen final answer come from its trajectory.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from prefkit.audit.refusal import refusal_expr
from prefkit.errors import InputError
from prefkit.pairing.pairs import PAIR_SPLITS, split_file
from prefkit.store import RunStore

MESSAGE_COLUMNS = ("prompt", "chosen", "rejected")
META_COLUMNS: dict[str, pl.DataType] = {
    "scenario_id": pl.String(),
    "chosen_id": pl.String(),
    "rejected_id": pl.String(),
    "chosen_agent": pl.String(),
    "rejected_agent": pl.String(),
    "chosen_safety": pl.Float64(),
    "chosen_helpfulness": pl.Float64(),
    "rejected_safety": pl.Float64(),
    "rejected_helpfulness": pl.Float64(),
    "margin": pl.Float64(),
    "margin_safety": pl.Float64(),
    "margin_helpfulness": pl.Float64(),
    "pair_type": pl.String(),
    "rendering": pl.String(),
}
"""The row columns the audit reads (the pairer's TRL row contract), cast to these types."""
FLAG_COLUMNS = ("chosen_flags", "rejected_flags")
"""Each side's trajectory flags (lists of strings); rows written before they existed lack them (read as null)."""



# --------------------------------------------------------------------------------------------------
# Reading the rows
# --------------------------------------------------------------------------------------------------


def _message_texts(name: str, dtype: pl.DataType) -> pl.Expr:
    """A message-list column as ``List(String)`` of each message's JSON text, whatever Arrow type holds it
    (``datasets``' Json feature is an ``arrow.json`` extension type; plain strings and structs also work)."""
    inner = getattr(dtype, "inner", None)
    if inner is None:
        raise TypeError(f"column {name!r} is {dtype}, expected a list of messages")
    if inner == pl.String:
        return pl.col(name)
    if isinstance(inner, pl.Struct):
        return pl.col(name).list.eval(pl.element().struct.json_encode())
    return pl.col(name).list.eval(pl.element().ext.storage().cast(pl.String))


def _no_rows(split: str) -> pl.LazyFrame:
    """The rows of a split without rows, in ``scan_pair_rows``'s columns."""
    schema = {"split": pl.String(), **META_COLUMNS, **dict.fromkeys((*FLAG_COLUMNS, *MESSAGE_COLUMNS),
                                                                     pl.List(pl.String()))}
    return pl.LazyFrame(schema=schema)


def scan_pair_rows(pairs_dir: Path) -> pl.LazyFrame:
    """The rows of ``train.parquet`` and ``test.parquet`` with a ``split`` column from the file name, the
    metadata columns of ``META_COLUMNS`` and the message columns as JSON texts.

    A split file that a pairs folder (one with ``pairing.json``) lacks is a split without rows: ``prefkit
    pair`` writes no 0-row file (``prefkit.pairing.pairs.split_file``).

    Raises:
        InputError: a file is missing from a folder without ``pairing.json``, unreadable, or lacks a column.
    """
    frames = []
    for split in PAIR_SPLITS:
        path = split_file(pairs_dir, split)
        file_name = path.name
        if not path.is_file():
            if (pairs_dir / "pairing.json").is_file():
                frames.append(_no_rows(split))
                continue
            raise InputError(f"{file_name} is missing: not a pairs folder written by `prefkit pair`", path=path)
        try:
            lazy = pl.scan_parquet(path)
            schema = lazy.collect_schema()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=path) from exc
        missing = [c for c in (*MESSAGE_COLUMNS, *META_COLUMNS) if c not in schema]
        if missing:
            raise InputError(f"the rows lack column(s) {', '.join(missing)}", path=path, field=missing[0])
        try:
            texts = [_message_texts(c, schema[c]).alias(c) for c in MESSAGE_COLUMNS]
        except TypeError as exc:
            raise InputError(str(exc), path=path) from exc
        flags = [pl.col(c).cast(pl.List(pl.String)) if c in schema else pl.lit(None, dtype=pl.List(pl.String)).alias(c)
                 for c in FLAG_COLUMNS]
        frames.append(
            lazy.select(
                pl.lit(split).alias("split"),
                *(pl.col(c).cast(t) for c, t in META_COLUMNS.items()),
                *flags,
                *texts,
            )
        )
    return pl.concat(frames, how="vertical")


def _chars(messages: pl.Expr) -> pl.Expr:
    """Characters of a rendered side: each message's content plus its tool calls' JSON text."""
    element = pl.element()
    per_message = (element.str.json_path_match("$.content").str.len_chars().fill_null(0)
                   + element.str.json_path_match("$.tool_calls").str.len_chars().fill_null(0))
    return messages.list.eval(per_message).list.sum().cast(pl.Int64)


def _tool_turns(messages: pl.Expr) -> pl.Expr:
    """Rendered tool steps of a side: ``tool`` messages (native) or ``user`` "Observation:" turns (react)."""
    roles = pl.element().str.json_path_match("$.role")
    return messages.list.eval(roles.is_in(["tool", "user"])).list.sum().cast(pl.Int64)


def enrich_pair_rows(rows: pl.LazyFrame, run: RunStore | None) -> pl.LazyFrame:
    """One narrow row per pair: the metadata plus ``chosen_chars``/``rejected_chars``,
    ``chosen_tool_calls``/``rejected_tool_calls``, ``chosen_refusal`` (null without the run), ``example_key``,
    ``identical_sides`` and, with the run, ``known`` (both sides' trajectories are in it)."""
    joined = pl.col("prompt").list.join("\x1f")
    chosen, rejected = pl.col("chosen").list.join("\x1f"), pl.col("rejected").list.join("\x1f")
    frame = rows.with_columns(
        chosen_chars=_chars(pl.col("chosen")),
        rejected_chars=_chars(pl.col("rejected")),
        chosen_tool_calls=_tool_turns(pl.col("chosen")),
        rejected_tool_calls=_tool_turns(pl.col("rejected")),
        # 64-bit hash of the whole example; a collision among a dataset's pairs is vanishingly unlikely
        example_key=pl.concat_str(joined, chosen, rejected, separator="\x1e").hash(seed=0),
        identical_sides=chosen == rejected,
        chosen_refusal=pl.lit(None, dtype=pl.Boolean),
    ).drop(*MESSAGE_COLUMNS)
    if run is None:
        return frame
    trajectories = run.scan("trajectories").select(
        "id", tool_calls=pl.col("steps").list.len().cast(pl.Int64), final_answer="final_answer",
        flags=pl.col("flags").cast(pl.List(pl.String)),
    )
    return (
        frame.join(trajectories.rename(lambda c: f"c_{c}"), left_on="chosen_id", right_on="c_id", how="left",
                   maintain_order="left")
        .join(trajectories.rename(lambda c: f"r_{c}"), left_on="rejected_id", right_on="r_id", how="left",
              maintain_order="left")
        .with_columns(
            # the run's steps are the truth about what the agent did; the rendered turns are a fallback
            chosen_tool_calls=pl.col("c_tool_calls"),
            rejected_tool_calls=pl.col("r_tool_calls"),
            chosen_refusal=refusal_expr(pl.col("c_final_answer")),
            known=pl.col("c_tool_calls").is_not_null() & pl.col("r_tool_calls").is_not_null(),
            # the rows' own flags are what was written with them; the run's are a fallback for older rows
            chosen_flags=pl.coalesce("chosen_flags", "c_flags"),
            rejected_flags=pl.coalesce("rejected_flags", "r_flags"),
        )
        .drop("c_tool_calls", "r_tool_calls", "c_final_answer", "r_final_answer", "c_flags", "r_flags")
    )
