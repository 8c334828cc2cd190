"""What a new user hits first, found by trying the README's "Use" commands and plausible mistakes with them:
Ctrl-C during `prefkit import toolemu` says one line (it used to exit 130 silently), `prefkit validate` on
a Parquet table that is not pair rows is one error (it used to list one "missing key 'prompt'" per row and
exit 1), and a split file has the same columns in the same order whether or not it holds rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from prefkit.cli import main
from prefkit.pairing.rows import load_pair_rows, pair_rows_features, write_pair_rows

PREFKIT = Path(sys.executable).parent / "prefkit"
"""The installed console script, next to this interpreter."""


def test_ctrl_c_during_import_toolemu_says_interrupted_and_writes_nothing(
        raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path, tmp_path):
    out = tmp_path / "runs" / "q32"
    args = [str(PREFKIT), "import", "toolemu", str(raw_q32_dir), "--cases", str(toolemu_cases_path),
            "--toolkits", str(toolemu_toolkits_path), "--out", str(out)]
    # A real SIGINT to the process once the run files are read, before the run is written (prefkit.faults).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFKIT_FAULT_STAGE": "import", "PREFKIT_FAULT_SIGNAL": "INT"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["interrupted"]
    assert done.stdout == ""
    assert not out.exists()

    env.pop("PREFKIT_FAULT_STAGE")
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "1152 trajectories" in again.stdout


def test_validate_on_a_table_that_is_not_pair_rows_is_one_error(q32_run, tiny_model_dir, capsys):
    trajectories = q32_run.path / "trajectories.parquet"
    code = main(["validate", str(trajectories), "--tokenizer", str(tiny_model_dir), "--max-length", "8192"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {trajectories}: not pair rows: missing column(s) prompt, chosen, rejected")


def test_a_split_file_has_the_features_columns_in_order_with_or_without_rows(q32_pairs, tmp_path):
    pairs = q32_pairs(strategy="safety", rendering="native")
    expected = list(pair_rows_features("native"))
    for name in ("train.parquet", "test.parquet"):
        assert list(pl.read_parquet_schema(pairs / name)) == expected, name

    rows = load_pair_rows(pairs / "test.parquet").to_list()
    assert rows and rows[0]["chosen_flags"] is not None
    written = {"some": write_pair_rows(rows[:3], tmp_path / "some.parquet", "native"),
               "none": write_pair_rows([], tmp_path / "none.parquet", "native")}
    assert written == {"some": 3, "none": 0}
    for name in written:
        assert list(pl.read_parquet_schema(tmp_path / f"{name}.parquet")) == expected, name
    # Rows without flag columns (rows from elsewhere) get empty lists, not nulls.
    bare = [{k: v for k, v in row.items() if not k.endswith("_flags")} for row in rows[:1]]
    write_pair_rows(bare, tmp_path / "bare.parquet", "native")
    assert pl.read_parquet(tmp_path / "bare.parquet")["chosen_flags"].to_list() == [[]]
