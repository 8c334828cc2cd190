"""Case ``empty-split`` (../shared/cases/empty-split): one scenario, one safety pair, so the study split
leaves ``train`` empty. Every consumer of the dataset folder's layout must then agree that ``train`` does
not exist: no 0-row file is written (or uploaded), the card's metadata and its "Load it" / "Train on it"
snippets name only splits with rows, the README's loading advice works, the build's closing line works,
and the audit warns (or, with ``min_train_pairs``, fails the build).

The same class, the other way round: a split seed that puts the scenario in train leaves ``test`` empty.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefkit.cli import main
from prefkit.publish.layout import hub_files, read_dataset_manifest

TRAIN_SEED = 2
"""A study split seed for which scenario index 0 (the case's only scenario) is a train scenario."""


def make_case(shared_dir: Path, where: Path) -> Path:
    """The case folder copied to ``where`` with its input written (``make_input.py`` writes next to itself)."""
    case = where / "empty-split"
    shutil.copytree(shared_dir / "cases" / "empty-split", case)
    shutil.rmtree(case / "runs_in", ignore_errors=True)
    subprocess.run([sys.executable, "make_input.py"], cwd=case, check=True, env={"SHARED": str(shared_dir)})
    return case


def build_case(case: Path, out: str, *sets: str, shared_dir: Path, capsys: Any = None) -> tuple[int, str, str]:
    """``prefkit build recipe.yaml --out OUT`` run in the case folder (the recipe's paths are relative to it
    and to the shared data two levels up, so the data paths are given)."""
    data = shared_dir / "data" / "toolemu"
    args = ["build", str(case / "recipe.yaml"), "--out", str(case / out),
            "--set", f"source.path={case / 'runs_in'}", "--set", f"source.cases={data / 'all_cases.json'}",
            "--set", f"source.toolkits={data / 'all_toolkits.json'}"]
    for value in sets:
        args += ["--set", value]
    if capsys is not None:
        capsys.readouterr()
    rc = main(args)
    captured = capsys.readouterr() if capsys is not None else None
    return rc, captured.out if captured else "", captured.err if captured else ""


def card_snippet(card: str, heading: str) -> str | None:
    """The Python code block under a card's ``## heading``, or None when that section has none."""
    section = card.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    return found.group(1) if found else None


@pytest.fixture
def case(shared_dir: Path, tmp_path: Path) -> Path:
    return make_case(shared_dir, tmp_path)


def _metadata(folder: Path) -> dict[str, Any]:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md").data.to_dict()


def _load_every_documented_way(folder: Path, config: str, splits: set[str], printed: str, monkeypatch) -> None:
    """Load ``folder`` as the card, the README and the build's closing line say; each gives ``splits``."""
    import datasets

    # the build's closing line
    line = re.search(r"load it: (datasets\.load_dataset\(.*\))", printed)
    assert line, printed
    assert set(eval(line.group(1), {"datasets": datasets})) == splits  # noqa: S307 - the line prefkit printed
    # the README: the folder, and the same folder as plain Parquet
    assert set(datasets.load_dataset(str(folder), config)) == splits
    assert set(datasets.load_dataset("parquet", data_dir=str(folder / "data" / config))) == splits
    # the card's "Load it" snippet, with the placeholder repo id replaced by the local folder
    card = (folder / "README.md").read_text(encoding="utf-8")
    code = card_snippet(card, "Load it")
    assert code is not None and "<user>/<dataset>" in code
    monkeypatch.chdir(folder.parent)
    exec(code.replace("<user>/<dataset>", folder.name), {})  # noqa: S102 - the card's own snippet


def test_an_empty_train_split_is_not_laid_out_and_every_loader_agrees(case: Path, shared_dir: Path, capsys,
                                                                      monkeypatch) -> None:
    rc, out, err = build_case(case, "out", shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    folder = case / "out"
    # no 0-row file: not written, not in prefkit.json, not among the files that go to the Hub
    assert [f for f in hub_files(folder) if f.startswith("data/")] == ["data/safety/test-00000-of-00001.parquet"]
    assert set(read_dataset_manifest(folder)["configs"]["safety"]) == {"test"}
    meta = _metadata(folder)
    assert [(c["config_name"], [f["split"] for f in c["data_files"]]) for c in meta["configs"]] == [("safety", ["test"])]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert 'pairs["test"]' in card and 'pairs["train"]' not in card and 'split="train"' not in card
    assert card_snippet(card, "Train on it with TRL") is None and "No config has train rows" in card
    # the audit warns, in audit.json and on the console
    audit = json.loads((folder / "audit.json").read_text())
    assert audit["violations"] == [] and len(audit["warnings"]) == 1
    assert audit["warnings"][0].startswith("safety: no train pairs (the 1 pair(s) are all test")
    assert "warning: safety: no train pairs" in out
    _load_every_documented_way(folder, "safety", {"test"}, out, monkeypatch)


def test_min_train_pairs_makes_an_empty_train_split_fail_the_build(case: Path, shared_dir: Path, capsys) -> None:
    rc, _, err = build_case(case, "out", "audit.min_train_pairs=1", shared_dir=shared_dir, capsys=capsys)
    assert rc == 1
    assert "safety: min_train_pairs: measured 0 < limit 1" in err and "Traceback" not in err
    # the same case with its scenario in train passes the same limit
    rc, _, err = build_case(case, "out", "audit.min_train_pairs=1", f"split.seed={TRAIN_SEED}",
                            shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err


def test_an_empty_test_split_is_left_out_the_same_way(case: Path, shared_dir: Path, capsys, monkeypatch) -> None:
    rc, out, err = build_case(case, "out", f"split.seed={TRAIN_SEED}", shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    folder = case / "out"
    assert [f for f in hub_files(folder) if f.startswith("data/")] == ["data/safety/train-00000-of-00001.parquet"]
    assert [[f["split"] for f in c["data_files"]] for c in _metadata(folder)["configs"]] == [["train"]]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert 'pairs["train"]' in card and 'load_dataset("<user>/<dataset>", "safety", split="train")' in card
    assert json.loads((folder / "audit.json").read_text())["warnings"] == []
    _load_every_documented_way(folder, "safety", {"train"}, out, monkeypatch)

    # Rebuilt in place with the scenario in test again: the train file is removed, not left stale.
    rc, out, err = build_case(case, "out", shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    assert [f for f in hub_files(folder) if f.startswith("data/")] == ["data/safety/test-00000-of-00001.parquet"]
    _load_every_documented_way(folder, "safety", {"test"}, out, monkeypatch)
