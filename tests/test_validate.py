"""``prefkit validate``: pair rows checked with TRL's own utilities and the tiny model's tokenizer.

Hand-made rows in the agreed format exercise each rule; the pairer's real rows (raw_q32, the
best-of-both dataset, both renderings) must all pass.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.pairing.rows import METADATA_COLUMNS, load_pair_rows, write_pair_rows
from prefkit.pairing.validate import (
    check_pair_row,
    load_tokenizer,
    validate_pair_rows,
    validate_pairs_path,
    write_kept_rows,
)

# Hand-made rows in the contract's format ---------------------------------------------------------


def msg(role: str, content: str, tool_calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "tool_calls": tool_calls, "tool_call_id": tool_call_id}


def call(name: str, arguments: dict[str, Any] | str, id: str = "call00000") -> list[dict[str, Any]]:
    return [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]


TOOLS = [
    {"type": "function", "function": {"name": "TodoistSearchTasks", "description": "Search tasks.",
                                      "parameters": {"type": "object", "properties": {
                                          "keywords": {"type": "string", "description": "Words."}},
                                          "required": ["keywords"]}}},
    {"type": "function", "function": {"name": "TodoistDeleteTask", "description": "Delete a task.",
                                      "parameters": {"type": "object", "properties": {
                                          "task_id": {"type": "string", "description": "Id."}},
                                          "required": ["task_id"]}}},
]


def _metadata(i: int, rendering: str) -> dict[str, Any]:
    values = {"pair_type": "safety", "scenario_id": f"official_{i}", "scenario_index": i, "split": "train",
              "rendering": rendering, "chosen_id": f"c{i}", "rejected_id": f"r{i}", "chosen_agent": "gpt-5",
              "rejected_agent": "gpt-5-nano", "chosen_safety": 3.0, "chosen_helpfulness": 2.0,
              "rejected_safety": 0.0, "rejected_helpfulness": 3.0, "chosen_score": 3.0, "rejected_score": 0.0,
              "margin": 3.0, "margin_safety": 3.0, "margin_helpfulness": -1.0}
    assert list(values) == list(METADATA_COLUMNS)
    return values


def react_row(i: int = 0) -> dict[str, Any]:
    return {
        "prompt": [msg("system", "You are an agent with tools."),
                   msg("user", f"Tools: TodoistSearchTasks, TodoistDeleteTask.\nUser Input: Delete my test tasks ({i}).\n"
                               "Thought: ")],
        "chosen": [msg("assistant", 'I should look first.\nAction: TodoistSearchTasks\nAction Input: {"keywords": "Test"}'),
                   msg("user", 'Observation: {"tasks": [{"task_id": "t1", "title": "Test plan"}]}'),
                   msg("assistant", "Thought: \"Test plan\" may matter; ask first.\nFinal Answer: Shall I delete it?")],
        "rejected": [msg("assistant", "Final Answer: I deleted every task.")],
        **_metadata(i, "react"),
    }


def native_row(i: int = 0) -> dict[str, Any]:
    return {
        "prompt": [msg("system", "You are an agent with tools."), msg("user", f"Delete my test tasks ({i}).")],
        "chosen": [msg("assistant", "I should look first.", call("TodoistSearchTasks", {"keywords": "Test"})),
                   msg("tool", '{"tasks": [{"task_id": "t1", "title": "Test plan"}]}', tool_call_id="call00000"),
                   msg("assistant", "Shall I delete \"Test plan\"?")],
        "rejected": [msg("assistant", "", call("TodoistDeleteTask", {"task_id": "t1"})),
                     msg("tool", "", tool_call_id="call00000"),
                     msg("assistant", "Done.")],
        "tools": json.dumps(TOOLS),
        **_metadata(i, "native"),
    }


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return load_tokenizer(tiny_model_dir)


def test_hand_made_rows_pass_and_lengths_are_what_the_template_gives(tokenizer):
    for row in (react_row(), native_row()):
        lengths = check_pair_row(row, tokenizer)
        tools = json.loads(row["tools"]) if "tools" in row else None
        alone = tokenizer.apply_chat_template(row["prompt"], tools=tools, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tools=tools, tokenize=True,
                                             return_dict=True)["input_ids"]
        assert lengths.prompt == len(alone) and lengths.prompt_chosen == len(full)
        assert full[: len(alone)] == alone
        assert lengths.prompt_rejected > lengths.prompt
    report = validate_pair_rows([react_row(0), react_row(1)], tokenizer=tokenizer, max_length=10_000)
    assert (report.rows, report.valid, report.kept, report.invalid, report.dropped_too_long) == (2, 2, 2, 0, 0)
    assert report.ok and report.kept_indices() == [0, 1]
    assert report.max_tokens == max(report.row_tokens) > report.max_prompt_tokens > 0


def _with(row: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A deep copy of ``row`` with the item at ``path`` replaced (``...`` deletes it)."""
    out = copy.deepcopy(row)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


TOOL_MSG = msg("tool", "{}")
BAD_ROWS = {
    # name: (row, words the reason must contain)
    "bad role": (_with(react_row(), ("chosen", 0, "role"), "function"), "role 'function'"),
    "missing message key": (_with(react_row(), ("chosen", 1, "tool_calls"), ...), "missing ['tool_calls']"),
    "missing content": (_with(react_row(), ("prompt", 1, "content"), ...), "missing ['content']"),
    "extra message key": (_with(native_row(), ("chosen", 1, "name"), "TodoistSearchTasks"), "extra ['name']"),
    "missing rejected": (_with(react_row(), ("rejected",), ...), "missing key 'rejected'"),
    "empty chosen": (_with(react_row(), ("chosen",), []), "chosen must be a non-empty list"),
    "content not a string": (_with(react_row(), ("chosen", 0, "content"), None), "content must be a string"),
    "prompt ends with a tool message (trl#3529)": (
        _with(native_row(), ("prompt",), native_row()["prompt"] + native_row()["chosen"][:2]), "trl#3529"),
    "prompt ends with the assistant": (
        _with(react_row(), ("prompt",), react_row()["prompt"] + [msg("assistant", "Thought: ")]),
        "must end with a user message, not 'assistant'"),
    "chosen starts with the user": (
        _with(react_row(), ("chosen",), [msg("user", "Observation: x")] + react_row()["chosen"]),
        "chosen must start with an assistant message"),
    "system message inside a completion": (
        _with(react_row(), ("rejected",), [msg("assistant", "x"), msg("system", "be bad")]), "rejected[1] is a system"),
    "tool_calls on a user message": (
        _with(react_row(), ("prompt", 1, "tool_calls"), call("f", {})), "only assistant messages call tools"),
    "malformed tool call": (
        _with(native_row(), ("chosen", 0, "tool_calls"),
              [{"id": "call00000", "type": "function", "function": {"arguments": {}}}]),
        "tool_calls[0].function must have exactly a non-empty name"),
    "tool call arguments of the wrong type": (
        _with(native_row(), ("chosen", 0, "tool_calls"), call("f", 3)), "arguments must be a JSON object (dict)"),
    "tools not JSON": (_with(native_row(), ("tools",), "[{"), "tools is not valid JSON"),
    "tools not function schemas": (_with(native_row(), ("tools",), json.dumps([{"name": "x"}])),
                                   'tools[0]: must be {"type": "function"'),
    # passes prefkit's shape rules, fails TRL's own key-set check
    "an extra TRL column": (_with(react_row(), ("completion",), react_row()["chosen"]), "Invalid keys in the example"),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_each_broken_rule_is_reported_with_its_reason(name: str, tokenizer):
    bad, reason = BAD_ROWS[name]
    report = validate_pair_rows([react_row(), bad, native_row()], tokenizer=tokenizer, max_length=10_000)
    assert (report.rows, report.valid, report.invalid) == (3, 2, 1)
    assert not report.ok and report.kept_indices() == [0, 2]
    [invalid] = report.invalid_rows
    assert invalid.index == 1
    assert reason in invalid.reason
    assert report.row_tokens[1] == 0


def test_trl_accepts_what_prefkit_rejects_and_a_template_drops_unknown_roles(tokenizer):
    """Facts about TRL 1.16 + the Qwen2.5 template that the rules above exist for."""
    from trl.data_utils import apply_chat_template

    ends_in_tool = BAD_ROWS["prompt ends with a tool message (trl#3529)"][0]
    rendered = apply_chat_template(ends_in_tool, tokenizer, tools=TOOLS)  # TRL 1.16 no longer raises
    assert rendered["prompt"].endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    # An unknown role renders to nothing at all: without prefkit's role check the chosen side would
    # silently lose the message.
    bad_role = BAD_ROWS["bad role"][0]
    rendered = apply_chat_template({k: bad_role[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
    assert "function" not in rendered["prompt"] + rendered["chosen"]


def _tokenizer_with_template(tiny_model_dir: Path, tmp_path: Path, template: str):
    folder = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").write_text(template)
    return load_tokenizer(folder)


# A template whose generation prompt is not what an assistant turn starts with: Qwen3-style empty
# think block added only by the generation prompt.
THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)
# Text-prefix-preserving, but the generation prompt ends inside a word the completion finishes, so
# the tokens merge across the boundary.
SPLIT_WORD_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' %}wea{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\nwea{% endif %}"
)


def test_a_template_that_is_not_prefix_preserving_makes_rows_invalid(tiny_model_dir, tmp_path):
    row = _with(react_row(), ("chosen",), [msg("assistant", "ther in Paris")])
    think = _tokenizer_with_template(tiny_model_dir, tmp_path / "a", THINK_TEMPLATE)
    [bad] = validate_pair_rows([row], tokenizer=think, max_length=10_000).invalid_rows
    assert "chat template: the prompt (with generation prompt) is not a prefix" in bad.reason
    assert "<think>" in bad.reason
    split = _tokenizer_with_template(tiny_model_dir, tmp_path / "b", SPLIT_WORD_TEMPLATE)
    [bad] = validate_pair_rows([row], tokenizer=split, max_length=10_000).invalid_rows
    assert bad.reason.startswith("tokens: the prompt's")


def test_rows_longer_than_max_length_are_dropped_and_counted_never_truncated(tokenizer, tmp_path):
    rows = [react_row(0), native_row(1), react_row(2)]
    rows[2]["rejected"][0]["content"] += " and more" * 200  # make row 2 much longer
    full = validate_pair_rows(rows, tokenizer=tokenizer, max_length=100_000)
    limit = sorted(full.row_tokens)[1]  # keeps the two shorter rows
    report = validate_pair_rows(rows, tokenizer=tokenizer, max_length=limit)
    assert report.row_tokens == full.row_tokens
    assert (report.valid, report.kept, report.dropped_too_long, report.invalid) == (3, 2, 1, 0)
    assert report.ok and report.dropped_indices == (2,)
    assert report.max_tokens == full.row_tokens[2] > limit

    path = tmp_path / "rows.parquet"
    write_pair_rows([rows[0], rows[2]], path, "react")
    dataset = load_pair_rows(path)
    on_disk = validate_pair_rows(path, tokenizer=tokenizer, max_length=limit)
    assert on_disk.source == str(path) and on_disk.dropped_indices == (1,)
    assert write_kept_rows(dataset, on_disk, tmp_path / "kept.parquet") == 1
    kept = load_pair_rows(tmp_path / "kept.parquet")
    assert kept.features == dataset.features
    assert kept[0] == dataset[0]


def test_bad_arguments_and_unreadable_inputs_are_input_errors(tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match="max_length must be a positive"):
        validate_pair_rows([react_row()], tokenizer=tiny_model_dir, max_length=0)
    with pytest.raises(InputError, match="tokenizer folder not found"):
        validate_pair_rows([react_row()], tokenizer=tmp_path / "nope", max_length=10)
    with pytest.raises(InputError, match="pair rows file not found"):
        validate_pair_rows(tmp_path / "nope.parquet", tokenizer=tiny_model_dir, max_length=10)
    no_template = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(InputError, match="no chat template"):
        load_tokenizer(no_template)


# Real rows ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["react", "native"])
def real_reports(request, q32_pairs, tokenizer):
    folder = q32_pairs(strategy="both", rendering=request.param)
    return request.param, folder, validate_pairs_path(folder, tokenizer=tokenizer, max_length=4096)


def test_every_real_row_passes_in_both_renderings(real_reports):
    rendering, folder, reports = real_reports
    counts = json.loads((folder / "pairing.json").read_text())
    assert list(reports) == ["train.parquet", "test.parquet"]
    assert reports["train.parquet"].rows == counts["train_pairs"] == 133
    assert reports["test.parquet"].rows == counts["test_pairs"] == 102
    for name, report in reports.items():
        assert report.invalid == 0, f"{rendering} {name}: {report.invalid_rows[:3]}"
        assert report.valid == report.rows and report.kept + report.dropped_too_long == report.rows
        assert all(n > 0 for n in report.row_tokens)
        assert report.dropped_indices == tuple(i for i, n in enumerate(report.row_tokens) if n > 4096)
    # with the tiny tokenizer (~460 tokens) real rows are long: a few fit in 4096 tokens, most do not
    assert sum(r.kept for r in reports.values()) > 0
    assert sum(r.dropped_too_long for r in reports.values()) > 0
    rows = load_pair_rows(folder / "train.parquet")
    assert ("tools" in rows.column_names) == (rendering == "native")


def test_cli_on_a_real_rows_file(q32_pairs, tiny_model_dir, tmp_path, capsys):
    rows_file = q32_pairs(strategy="both", rendering="native") / "test.parquet"
    out = tmp_path / "kept"
    rc = main(["validate", str(rows_file), "--tokenizer", str(tiny_model_dir), "--max-length", "3000",
               "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert all(isinstance(summary[k], int) for k in ("rows", "valid", "invalid", "dropped_too_long", "kept"))
    assert (summary["rows"], summary["invalid"]) == (102, 0)
    assert summary["kept"] + summary["dropped_too_long"] == 102
    assert summary["kept"] > 0 and summary["dropped_too_long"] > 0
    kept = load_pair_rows(out / "test.parquet")
    assert len(kept) == summary["kept"]
    assert kept.features == load_pair_rows(rows_file).features


# CLI exit codes ----------------------------------------------------------------------------------


@pytest.fixture()
def hand_pairs(tmp_path: Path) -> Path:
    folder = tmp_path / "pairs"
    write_pair_rows([native_row(0), native_row(1)], folder / "train.parquet", "native")
    write_pair_rows([native_row(2)], folder / "test.parquet", "native")
    return folder


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["validate", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_exit_0_when_every_row_is_valid_even_with_drops(hand_pairs, tiny_model_dir, capsys):
    rc, out, _ = _cli(capsys, str(hand_pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "10000", "--json")
    summary = json.loads(out)
    assert rc == 0
    assert {k: summary[k] for k in ("rows", "valid", "kept", "invalid", "dropped_too_long")} == {
        "rows": 3, "valid": 3, "kept": 3, "invalid": 0, "dropped_too_long": 0}
    rc, out, _ = _cli(capsys, str(hand_pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "20", "--json")
    assert rc == 0 and json.loads(out)["dropped_too_long"] == 3
    rc, out, _ = _cli(capsys, str(hand_pairs / "test.parquet"), "--tokenizer", str(tiny_model_dir),
                      "--max-length", "10000")
    assert rc == 0 and "test.parquet" in out and "train.parquet" not in out


def test_cli_exit_1_names_the_invalid_row(hand_pairs, tiny_model_dir, capsys):
    bad = _with(native_row(5), ("chosen", 1, "role"), "observation")
    write_pair_rows([native_row(3), bad], hand_pairs / "test.parquet", "native")
    rc, out, _ = _cli(capsys, str(hand_pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "10000", "--json")
    summary = json.loads(out)
    assert rc == 1
    assert (summary["rows"], summary["invalid"]) == (4, 1)
    assert summary["invalid_rows"] == [
        {"file": "test.parquet", "index": 1, "reason": summary["invalid_rows"][0]["reason"]}]
    assert "role 'observation'" in summary["invalid_rows"][0]["reason"]
    rc, out, _ = _cli(capsys, str(hand_pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "10000")
    assert rc == 1 and "test.parquet row 1" in out


def test_cli_exit_2_on_bad_input(hand_pairs, tiny_model_dir, tmp_path, capsys):
    cases = {
        "no such file or folder": [str(tmp_path / "missing")],
        "no train.parquet or test.parquet": [str(tmp_path / "empty")],
        "cannot read pair rows": [str(tmp_path / "garbage.parquet")],
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    for message, target in cases.items():
        rc, _, err = _cli(capsys, *target, "--tokenizer", str(tiny_model_dir), "--max-length", "100")
        assert rc == 2, message
        assert message in err and target[0] in err
    rc, _, err = _cli(capsys, str(hand_pairs), "--tokenizer", str(tmp_path / "no-tok"), "--max-length", "100")
    assert rc == 2 and "tokenizer folder not found" in err
    rc, _, err = _cli(capsys, str(hand_pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "0")
    assert rc == 2 and "max_length" in err
