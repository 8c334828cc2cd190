"""TRL rows written by the pairer: shapes per rendering, the tools column, tool-call arguments through a
Parquet round trip, and train/test files that hold only their split's scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from prefkit.pairing.rows import (
    FLAG_COLUMNS,
    METADATA_COLUMNS,
    load_pair_rows,
    pair_rows_features,
    row_messages,
    write_pair_rows,
)
from prefkit.records import arguments_object
from prefkit.render.prompts import native_prompt, react_prompt, tool_schemas

MESSAGE_KEYS = {"role", "content", "tool_calls", "tool_call_id"}


@pytest.fixture(scope="module")
def suite(q32_run):
    return {s.id: s for s in q32_run.read("scenarios")}, q32_run.read("toolkits")


@pytest.fixture(scope="module")
def trajectories(q32_run) -> dict[str, dict]:
    frame = q32_run.frame("trajectories").select("id", "steps", "messages", "react_messages")
    return {row["id"]: row for row in frame.iter_rows(named=True)}


@pytest.mark.parametrize("strategy", ["safety", "both"])
def test_react_rows_are_the_study_conversation(q32_pairs, q32_run, suite, trajectories, strategy: str) -> None:
    scenarios, toolkits = suite
    folder = q32_pairs(strategy=strategy, rendering="react")
    rows = load_pair_rows(folder / "train.parquet")
    assert rows.features == pair_rows_features("react") and "tools" not in rows.column_names
    assert len(rows) > 0
    for row in rows:
        system, user = row["prompt"]
        assert (system["role"], user["role"]) == ("system", "user") and user["content"].endswith("Thought: ")
        expected_prompt = row_messages(react_prompt(scenarios[row["scenario_id"]], toolkits))
        assert row["prompt"] == expected_prompt
        for side in ("chosen", "rejected"):
            messages = row[side]
            assert messages and all(set(m) == MESSAGE_KEYS and m["tool_calls"] is m["tool_call_id"] is None
                                    for m in messages)
            assert [m["role"] for m in messages] == ["assistant", "user"] * (len(messages) // 2) + ["assistant"]
            assert all(m["content"].startswith("Observation: ") for m in messages if m["role"] == "user")
            source = trajectories[row[f"{side}_id"]]["react_messages"]
            assert messages == row_messages(source)
        assert row["pair_type"] == strategy and row["rendering"] == "react" and row["split"] == "train"


def test_native_rows_have_tools_and_tool_calls(q32_pairs, suite, trajectories) -> None:
    scenarios, toolkits = suite
    folder = q32_pairs(strategy="safety", rendering="native")
    rows = [*load_pair_rows(folder / "train.parquet"), *load_pair_rows(folder / "test.parquet")]
    assert len(rows) == 932
    calls = 0
    for row in rows:
        scenario = scenarios[row["scenario_id"]]
        assert json.loads(row["tools"]) == tool_schemas(scenario, toolkits)
        assert row["prompt"] == row_messages(native_prompt(scenario))
        for side in ("chosen", "rejected"):
            messages = row[side]
            assert all(set(m) == MESSAGE_KEYS for m in messages) and messages[-1]["role"] == "assistant"
            for i, m in enumerate(messages):
                if m["role"] == "tool":  # every tool message answers the assistant call just before it
                    assert messages[i - 1]["role"] == "assistant" and messages[i - 1]["tool_calls"]
                    assert m["tool_calls"] is None
                    assert m["tool_call_id"] == messages[i - 1]["tool_calls"][0]["id"]
                for call in m["tool_calls"] or []:  # 9 alphanumerics, what Mistral-family templates demand
                    assert len(call["id"]) == 9 and call["id"].isalnum()
            calls += sum(len(m["tool_calls"] or []) for m in messages)
    assert calls > 500


def test_tool_call_arguments_survive_the_parquet_round_trip(q32_pairs, trajectories) -> None:
    folder = q32_pairs(strategy="helpfulness", rendering="native")
    rows = [*load_pair_rows(folder / "train.parquet"), *load_pair_rows(folder / "test.parquet")]
    seen_dicts = 0
    key_sets = set()
    for row in rows:
        for side in ("chosen", "rejected"):
            # a step whose input is not a JSON object is ReAct text, not a call (prefkit.render.native)
            steps = [s for s in trajectories[row[f"{side}_id"]]["steps"] if arguments_object(s["tool_input"]) is not None]
            calls = [c for m in row[side] for c in (m["tool_calls"] or [])]
            assert len(calls) == len(steps)
            for call, step in zip(calls, steps, strict=True):
                assert call["type"] == "function" and call["function"]["name"] == step["tool"]
                # exactly the agent's arguments: no keys merged in from other calls, no types changed
                assert call["function"]["arguments"] == json.loads(step["tool_input"])
                seen_dicts += 1
                key_sets.add(tuple(sorted(call["function"]["arguments"])))
    assert seen_dicts > 500 and len(key_sets) > 50


def test_mixed_arguments_round_trip_through_write_and_load(tmp_path: Path) -> None:
    def call(arguments):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "Search", "arguments": arguments}}]}

    prompt = [{"role": "system", "content": "s", "tool_calls": None}, {"role": "user", "content": "u", "tool_calls": None}]
    tool = {"role": "tool", "content": "{}", "tool_calls": None}
    final = {"role": "assistant", "content": "done", "tool_calls": None}
    metadata = {name: (0.0 if dtype == "float64" else 0 if dtype == "int64" else "x") for name, dtype in METADATA_COLUMNS.items()}
    metadata.update({name: [] for name in FLAG_COLUMNS})
    rows = [
        {"prompt": prompt, "chosen": [call({"query": "a", "limit": 3, "amount": 332.6666666666667}), tool, final],
         "rejected": [call({"city": None, "nested": {"k": [1, 2]}}), tool, final], "tools": "[]", **metadata},
        {"prompt": prompt, "chosen": [call("not json {"), tool, final], "rejected": [final], "tools": "[]",
         **{**metadata, "chosen_safety": None}},
    ]
    path = tmp_path / "rows.parquet"
    assert write_pair_rows(rows, path, "native") == 2
    loaded = load_pair_rows(path)
    assert [dict(r) for r in loaded] == rows
    assert loaded.features == pair_rows_features("native")
    # the file holds Python's exact JSON text of each message (datasets' own encoder keeps 10 digits of a
    # float; its decoder may still round a 17th digit, e.g. 1.0000000000000002, on the way back)
    exact = [*prompt, call({"x": 1.0000000000000002}), final]
    write_pair_rows([{**rows[0], "chosen": exact}], path, "native")
    import pyarrow.parquet as pq

    stored = pq.read_table(path).column("chosen").to_pylist()[0]
    assert [json.loads(text) for text in stored] == exact


@pytest.mark.parametrize("rendering", ["react", "native"])
def test_split_files_hold_only_their_split(q32_pairs, rendering: str) -> None:
    folder = q32_pairs(strategy="both", rendering=rendering)
    pairs = pl.read_parquet(folder / "pairs.parquet")
    counts = json.loads((folder / "pairing.json").read_text())
    by_split = {}
    for split in ("train", "test"):
        rows = load_pair_rows(folder / f"{split}.parquet")
        frame = rows.select_columns([c for c in rows.column_names if c in METADATA_COLUMNS]).to_polars()
        assert set(frame["split"]) == {split} and len(rows) == counts[f"{split}_pairs"]
        expected = pairs.filter(pl.col("split") == split)
        # same pairs, same order, metadata copied from the pair records
        assert frame["chosen_id"].to_list() == expected["chosen_id"].to_list()
        assert frame["rejected_id"].to_list() == expected["rejected_id"].to_list()
        assert frame["margin"].to_list() == expected["margin"].to_list()
        assert (frame["margin_safety"] == expected["chosen_safety"] - expected["rejected_safety"]).all()
        assert (frame["pair_type"] == "both").all() and (frame["rendering"] == rendering).all()
        by_split[split] = set(frame["scenario_id"])
    assert by_split["train"] and by_split["test"] and not by_split["train"] & by_split["test"]
    assert len(by_split["train"]) == counts["train_scenarios"] and len(by_split["test"]) == counts["test_scenarios"]
