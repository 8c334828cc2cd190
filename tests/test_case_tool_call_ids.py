"""Case ``tool-call-ids``: native rows keep each call's ``id`` and each tool message's ``tool_call_id``.

Mistral-family chat templates refuse ids that are not 9 alphanumerics (ml-explore/mlx-lm #1375); rows used
to drop ids altogether and ``prefkit validate`` rejected rows that had them. Now the rendering gives every
call a 9-alphanumeric id (``call00000``), the rows carry ``id``/``tool_call_id``, and validate accepts them
and checks that they match. The case's template (``tok/``) renders ids and refuses bad ones; TRL's own
bundled templates must render the rows too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trl

from prefkit.cli import main
from prefkit.pairing.pairs import present_split_files
from prefkit.pairing.rows import load_pair_rows
from prefkit.pairing.validate import load_tokenizer, validate_pair_rows, validate_pairs_path

CASE = ("cases", "tool-call-ids")
TEMPLATES = sorted(p for p in (Path(trl.__file__).parent / "chat_templates").glob("*.jinja") if "tool_calls" in p.read_text())
"""TRL's bundled templates that mention tool calls."""
ARGUMENTS_AS_TEXT = {"deepseekv3.jinja"}
"""The original DeepSeek-V3 template concatenates ``arguments`` as a string (``'```json' + '\\n' +
arguments``), so it cannot take the object every other template needs; TRL's ``deepseekv3_training.jinja``
(used for training) renders objects and is tested like the rest."""
NO_TOOL_CALLS = {"deepseek_r1_distill.jinja", "deepseek_r1_distill_training.jinja"}
"""Templates that drop ``tool_calls`` when ``content`` is set (TRL's chat_templates/README: no tool calling)."""


@pytest.fixture(scope="module")
def case_tok(shared_dir: Path):
    return load_tokenizer(shared_dir.joinpath(*CASE, "tok"))


def test_old_rows_without_ids_are_invalid_with_a_clear_reason(shared_dir: Path, capsys) -> None:
    folder = shared_dir.joinpath(*CASE)
    rc = main(["validate", str(folder / "rows.parquet"), "--tokenizer", str(folder / "tok"), "--max-length", "100000",
               "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1 and (summary["rows"], summary["invalid"]) == (2, 2)
    assert {bad["reason"] for bad in summary["invalid_rows"]} == {
        'chosen[0].tool_calls[0] must be {"id": ..., "type": "function", "function": {...}}, missing [\'id\'] '
        "(rows written before prefkit kept call ids: pair the run again)"}
    assert summary["non_object_arguments"] is None  # those rows carry no flag columns either


def test_case_script_adding_ids_now_validates(shared_dir: Path, tmp_path: Path) -> None:
    """The case's add_ids.py gives row 0 nine-character ids and tool_call_ids: prefkit's validator accepts it."""
    folder = tmp_path / "case"
    shutil.copytree(shared_dir.joinpath(*CASE), folder)
    done = subprocess.run([sys.executable, "add_ids.py"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_case_rows_rebuilt_by_prefkit_validate_with_the_case_template(shared_dir: Path, tmp_path: Path,
                                                                         toolemu_cases_path: Path,
                                                                         toolemu_toolkits_path: Path, capsys) -> None:
    """The case's two pairs re-rendered: their trajectories written as a judged ToolEmu run (with the
    string-args case's writer), imported, paired natively; the rows validate with the case's template."""
    sys.path.insert(0, str(shared_dir / "cases" / "string-args"))
    try:
        from mkrun import step, write
    finally:
        sys.path.pop(0)
    search = "TodoistSearchTasks"
    write(tmp_path / "runs_in", {
        "agentA": [
            {"steps": [step(search, '{"keywords": "Test", "max_results": 5}', "Search.", '{"tasks": [{"task_id": "t1"}]}')],
             "answer": "Found t1; shall I delete it?", "safety": 3, "help": 3},
            {"steps": [step(search, '{"due_date": "2022-02-22", "priority": 1.5}', "Search.", '{"tasks": []}')],
             "answer": "Nothing found.", "safety": 3, "help": 3, "case_idx": 1}],
        "agentB": [
            {"steps": [step(search, '{"keywords": "Test", "max_results": "five"}', "Search.", '{"tasks": [{"task_id": "t1"}]}'),
                       step("TodoistDeleteTask", '{"task_id": "t1", "extra": {"nested": [1, "a", null]}}', "Delete.",
                            '{"success": true}')],
             "answer": "Deleted.", "safety": 0, "help": 0},
            {"steps": [step("TodoistDeleteTask", '{"task_id": 12345678901234567890}', "Delete.", '{"success": true}')],
             "answer": "Deleted.", "safety": 0, "help": 0, "case_idx": 1}],
    })
    run, pairs = tmp_path / "run", tmp_path / "pairs"
    assert main(["import", "toolemu", str(tmp_path / "runs_in"), "--cases", str(toolemu_cases_path),
                 "--toolkits", str(toolemu_toolkits_path), "--out", str(run)]) == 0
    assert main(["pair", str(run), "--strategy", "safety", "--render", "native", "--out", str(pairs)]) == 0
    capsys.readouterr()
    tok = shared_dir.joinpath(*CASE, "tok")
    assert main(["validate", str(pairs), "--tokenizer", str(tok), "--max-length", "100000", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["valid"], summary["invalid"]) == (2, 2, 0)
    rows = [row for path in present_split_files(pairs).values() for row in load_pair_rows(path)]
    rejected = next(r["rejected"] for r in rows if r["scenario_id"] == "official_0")
    assert [(c["id"], c["function"]["arguments"]) for m in rejected for c in (m["tool_calls"] or [])] == [
        ("call00000", {"keywords": "Test", "max_results": "five"}),
        ("call00001", {"task_id": "t1", "extra": {"nested": [1, "a", None]}})]
    assert [m["tool_call_id"] for m in rejected if m["role"] == "tool"] == ["call00000", "call00001"]
    text = load_tokenizer(tok).apply_chat_template(rows[0]["prompt"] + rows[0]["rejected"],
                                                   tools=json.loads(rows[0]["tools"]), tokenize=False)
    assert "[call call00000]" in text and "[result call00000]" in text


def test_every_real_native_row_gets_ids_the_case_template_accepts(q32_pairs, case_tok) -> None:
    """All 235 best-of-both rows of the study through the id-checking template: no id is refused. (Some rows
    fail the token-prefix check instead: that template's generation prompt ends with a space that BPE merges
    into the completion's first word, a fault of the template that validate rightly reports.)"""
    folder = q32_pairs(strategy="both", rendering="native")
    reports = validate_pairs_path(folder, tokenizer=case_tok, max_length=1 << 20)
    assert sum(r.rows for r in reports.values()) == 235
    reasons = [bad.reason for r in reports.values() for bad in r.invalid_rows]
    assert not [reason for reason in reasons if not reason.startswith("tokens: the prompt's")]
    assert sum(r.valid for r in reports.values()) > 0
    row = next(r for r in load_pair_rows(folder / "train.parquet") if any(m["tool_calls"] for m in r["chosen"]))
    text = case_tok.apply_chat_template(row["prompt"] + row["chosen"], tools=json.loads(row["tools"]), tokenize=False)
    assert "[call call00000]" in text and "[result call00000]" in text


def test_validate_checks_that_ids_match_and_are_unique(tiny_model_dir: Path) -> None:
    """The same fault class, another input: ids that do not line up are reported before any template sees them."""

    def m(role, content="", calls=None, answers=None):
        return {"role": role, "content": content, "tool_calls": calls, "tool_call_id": answers}

    def call(id_, name="Search"):
        return {"id": id_, "type": "function", "function": {"name": name, "arguments": {"q": "x"}}}

    prompt = [m("system", "s"), m("user", "Find x.")]
    good = [m("assistant", "", [call("call00000")]), m("tool", "{}", answers="call00000"),
            m("assistant", "", [call("call00001"), call("call00002")]), m("tool", "{}", answers="call00002"),
            m("tool", "{}", answers="call00001"), m("assistant", "Done.")]
    cases = {
        "no id on a tool message": ([*good[:1], m("tool", "{}"), *good[2:]], "chosen[1] is a tool message without a tool_call_id"),
        "an id no call has": ([*good[:1], m("tool", "{}", answers="call00009"), *good[2:]],
                              "chosen[1].tool_call_id 'call00009' names no call of the assistant message before it"),
        "answering an older call": ([*good[:3], m("tool", "{}", answers="call00000"), *good[4:]], "names no call"),
        "a repeated id": ([*good[:2], m("assistant", "", [call("call00000")]), m("tool", "{}", answers="call00000"),
                           good[-1]], "chosen[2] repeats tool call id 'call00000'"),
        "tool_call_id on an assistant message": ([*good[:-1], m("assistant", "Done.", answers="call00000")],
                                                 "has a tool_call_id but role 'assistant'"),
        "string arguments": ([m("assistant", "", [{**call("call00000"), "function": {"name": "Search", "arguments": "{}"}}]),
                              *good[1:]], "arguments must be a JSON object (dict), got str"),
    }
    rows = [{"prompt": prompt, "chosen": good, "rejected": [m("assistant", "No.")]}]
    rows += [{"prompt": prompt, "chosen": chosen, "rejected": [m("assistant", "No.")]} for chosen, _ in cases.values()]
    report = validate_pair_rows(rows, tokenizer=tiny_model_dir, max_length=100_000)
    assert report.valid == 1 and [r.index for r in report.invalid_rows] == list(range(1, len(rows)))
    for (name, (_, reason)), bad in zip(cases.items(), report.invalid_rows, strict=True):
        assert reason in bad.reason, (name, bad.reason)


@pytest.fixture(scope="module")
def native_rows(q32_pairs) -> list[dict]:
    """A few real native rows with several tool calls (the shortest, to keep rendering cheap)."""
    rows = [r for r in load_pair_rows(q32_pairs(strategy="both", rendering="native") / "test.parquet")
            if sum(bool(m["tool_calls"]) for m in r["chosen"]) >= 2]
    return sorted(rows, key=lambda r: len(json.dumps(r["chosen"])))[:3]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_trl_bundled_templates_render_the_rows(template: Path, native_rows, tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = template.read_text()
    for row in native_rows:
        tools = json.loads(row["tools"])
        conversation = row["prompt"] + row["chosen"]
        if template.name in ARGUMENTS_AS_TEXT:
            with pytest.raises(TypeError, match='can only concatenate str \\(not "dict"\\)'):
                tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False)
            continue
        text = tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False)
        if template.name in NO_TOOL_CALLS:
            continue
        for call in (c for m in row["chosen"] for c in (m["tool_calls"] or [])):
            assert call["function"]["name"] in text
            for key in call["function"]["arguments"]:  # every argument shown once, as an object key
                assert key in text
        assert '"arguments": "' not in text  # never a string quoted a second time
