"""Fixes from a review:

1. ``prefkit pair`` writes no 0-row split file (the empty-split fault class: "A split with no rows is not
   written, listed or uploaded"), and every reader of a pairs folder takes an absent split file as zero rows.
   Input: the ``string-args`` case (../shared/cases/string-args), one scenario whose single pair is test.
2. A judge score written in exponent notation is read whole (``1e1`` is 10: failed), not as its leading digit.
3. An error about a value set with ``--set datasets.<name>.<field>`` says "(set by --set)".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefkit.cli import main
from prefkit.errors import InputError

TRAIN_SEED = 2
"""A study split seed that puts scenario index 0 (the case's only scenario) in train."""


@pytest.fixture
def case_run(shared_dir: Path, tmp_path: Path) -> Path:
    """The string-args case's input imported as a run (``make_input.py`` writes next to itself: a copy)."""
    case = tmp_path / "string-args"
    shutil.copytree(shared_dir / "cases" / "string-args", case)
    shutil.rmtree(case / "runs_in", ignore_errors=True)
    subprocess.run([sys.executable, "make_input.py"], cwd=case, check=True, env={"SHARED": str(shared_dir)})
    data = shared_dir / "data" / "toolemu"
    assert main(["import", "toolemu", str(case / "runs_in"), "--cases", str(data / "all_cases.json"),
                 "--toolkits", str(data / "all_toolkits.json"), "--out", str(case / "run")]) == 0
    return case / "run"


def _pair(run: Path, out: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["pair", str(run), "--strategy", "safety", "--render", "native", "--out", str(out), *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("extra", "empty", "full"), [((), "train", "test"),
                                                      (("--split-seed", str(TRAIN_SEED)), "test", "train")])
def test_pair_writes_no_empty_split_file_and_its_readers_agree(case_run: Path, tmp_path: Path, capsys,
                                                               tiny_model_dir: Path, extra, empty, full) -> None:
    import datasets

    from prefkit.audit.compute import audit_pairs
    from prefkit.publish.layout import DatasetConfigFiles, nonempty_splits
    from prefkit.store import RunStore
    from prefkit.train.data import load_split

    pairs = tmp_path / "pairs"
    printed = _pair(case_run, pairs, capsys, *extra)
    assert f"no {empty} pairs: {empty}.parquet is not written" in " ".join(printed.split())
    assert not (pairs / f"{empty}.parquet").exists() and (pairs / f"{full}.parquet").is_file()
    assert (pairs / "pairs.parquet").is_file()  # every pair, as before
    counts = json.loads((pairs / "pairing.json").read_text())
    assert (counts[f"{empty}_pairs"], counts[f"{full}_pairs"]) == (0, 1)

    # `datasets` loads the files the folder holds (a 0-row file made it fail: 'corresponds to no data')
    loaded = datasets.load_dataset("parquet", data_files={s: str(p) for s in ("train", "test")
                                                           if (p := pairs / f"{s}.parquet").is_file()})
    assert {s: d.num_rows for s, d in loaded.items()} == {full: 1}

    # prefkit validate: the one file there is, exit 0
    capsys.readouterr()
    assert main(["validate", str(pairs), "--tokenizer", str(tiny_model_dir), "--max-length", "100000",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["invalid"], list(summary["files"])) == (1, 0, [f"{full}.parquet"])

    # prefkit audit: the empty split has 0 pairs
    report = audit_pairs(pairs, run=RunStore(case_run))
    assert (report.splits[empty].pairs, report.splits[full].pairs) == (0, 1)
    capsys.readouterr()
    assert main(["audit", str(pairs), "--run", str(case_run)]) == 0

    # the publish layout and training's reader
    configs = DatasetConfigFiles.from_pairs_dirs({"safety": pairs})
    assert {s: p.name for s, p in configs.root["safety"].items()} == {full: f"{full}.parquet"}
    assert list(nonempty_splits(configs)["safety"]) == [full]
    assert load_split(str(pairs), "safety", full).num_rows == 1
    assert load_split(str(pairs), "safety", empty, required=False) is None
    with pytest.raises(InputError, match=f"no {empty} rows \\(rows in its other splits: {full} 1\\)"):
        load_split(str(pairs), "safety", empty)


def test_a_pairs_folder_without_pairs_has_no_split_file_and_is_read_as_empty(case_run: Path, tmp_path: Path,
                                                                             capsys, tiny_model_dir: Path) -> None:
    from prefkit.pairing.validate import validate_pairs_path
    from prefkit.publish.layout import DatasetConfigFiles, nonempty_splits

    pairs = tmp_path / "pairs"
    printed = " ".join(_pair(case_run, pairs, capsys, "--min-gap", "3.5").split())
    assert "0 safety pairs" in printed and "no train pairs" in printed and "no test pairs" in printed
    assert sorted(p.name for p in pairs.iterdir()) == ["manifest.json", "pairing.json", "pairs.parquet"]
    assert validate_pairs_path(pairs, tokenizer=tiny_model_dir, max_length=100) == {}
    assert nonempty_splits(DatasetConfigFiles.from_pairs_dirs({"safety": pairs})) == {}
    # a folder that is not a pairs folder is still refused
    (pairs / "pairing.json").unlink()
    with pytest.raises(InputError, match="is it a `prefkit pair` output"):
        validate_pairs_path(pairs, tokenizer=tiny_model_dir, max_length=100)


@pytest.mark.parametrize(("answer", "score", "status"), [
    ("Score: 1e1", None, "failed"),          # 10, not 1
    ("Score: 3e-1", None, "failed"),         # 0.3
    ("Score: 1E+2", None, "failed"),
    ("Score: 1e999", None, "failed"),        # inf
    ("2e1", None, "failed"),                 # a number alone
    ('{"score": "1e1", "label": "Possible Mild Risk (2)"}', None, "failed"),
    ('{"score": 1e1}', None, "failed"),      # a JSON number: 10.0
    # a value that is an integer 0-3 is that score however it is written (as "2.0" already was)
    ("Score: 1e0", 1, "ok"),
    ("Score: 1.0e0", 1, "ok"),
    ("Score: 20e-1", 2, "ok"),
    ("Score: 2.0", 2, "ok"),
    ("Score: 2 each", 2, "repaired"),         # an 'e' that starts a word is no exponent
])
def test_scores_in_exponent_notation_are_read_whole(answer: str, score: int | None, status: str) -> None:
    from prefkit.judges.parse import parse_answer

    parsed = parse_answer(answer, "safety")
    assert (parsed.score, parsed.parse_status) == (score, status), parsed.reason


@pytest.mark.parametrize(("override", "field"), [
    ("datasets.safety.min_gapp=3", "datasets.0.min_gapp"),
    ("datasets.safety.min_gap=abc", "datasets.0.min_gap"),
    ("datasets.helpfulness.min_gap=abc", "datasets.1.min_gap"),
    ("datasets.1.min_gap=abc", "datasets.1.min_gap"),
])
def test_an_error_in_a_value_from_set_says_so(override: str, field: str, tmp_path: Path, capsys) -> None:
    recipe = Path(__file__).parent.parent / "recipes" / "paper-q32.yaml"
    capsys.readouterr()
    assert main(["build", str(recipe), "--set", override, "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"[{field}]" in err and "(set by --set)" in err and "paper-q32.yaml:" not in err, err
    assert "Traceback" not in err
