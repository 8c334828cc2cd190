"""`prefkit build`: the bundled study recipe end to end, caching, kill-and-re-run safety, bad recipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prefkit.cli import main

REPO = Path(__file__).resolve().parents[1]
PAPER_RECIPE = REPO / "recipes" / "paper-q32.yaml"

ORACLE_COUNTS = {"safety": (932, 503), "helpfulness": (1022, 534), "both": (235, 133)}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root except the build's private work folder, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".prefkit" not in p.relative_to(root).parts
    }


@pytest.fixture(scope="session")
def paper_build(tmp_path_factory, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path):
    out = tmp_path_factory.mktemp("paper-build") / "out"
    rc = main([
        "build", str(PAPER_RECIPE), "--quiet",
        "--set", f"source.path={raw_q32_dir}",
        "--set", f"source.cases={toolemu_cases_path}",
        "--set", f"source.toolkits={toolemu_toolkits_path}",
        "--out", str(out),
    ])
    assert rc == 0
    return out


def test_paper_recipe_builds_the_oracle_datasets(paper_build):
    import datasets

    for config, (total, train) in ORACLE_COUNTS.items():
        ds = datasets.load_dataset(str(paper_build), config)
        assert set(ds) == {"train", "test"}
        assert ds["train"].num_rows == train, config
        assert ds["train"].num_rows + ds["test"].num_rows == total, config
        row = ds["train"][0]
        assert row["prompt"][0]["role"] == "system" and row["chosen"][-1]["role"] == "assistant"
        assert set(ds["train"]["split"]) == {"train"}
    audit = json.loads((paper_build / "audit.json").read_text())
    assert set(audit["datasets"]) == set(ORACLE_COUNTS)
    assert audit["violations"] == []


def test_paper_card_metadata(paper_build):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(paper_build / "README.md")
    meta = card.data.to_dict()
    assert {c["config_name"] for c in meta["configs"]} == set(ORACLE_COUNTS)
    for c in meta["configs"]:
        splits = {f["split"]: f["path"] for f in c["data_files"]}
        assert splits == {s: f"data/{c['config_name']}/{s}-*.parquet" for s in ("train", "test")}
    assert meta["license"] == "mit"
    assert meta["task_categories"]
    assert "dpo" in meta["tags"]
    assert "study_compatible" in card.text or "study-compatible" in card.text


def _small_recipe(tmp_path: Path, raw_q32_dir: Path, cases: Path, toolkits: Path, **extra) -> Path:
    """A fast recipe: two of the study's agents, two datasets."""
    runs = tmp_path / "runs"
    if not runs.exists():
        for agent in ("gpt-5", "meta-llama_Llama-3.2-3B-Instruct"):
            shutil.copytree(raw_q32_dir / agent, runs / agent)
    recipe = {
        "name": "small",
        "source": {"kind": "toolemu", "path": str(runs), "cases": str(cases), "toolkits": str(toolkits)},
        "datasets": [
            {"name": "safety", "strategy": "safety", "study_compatible": True},
            {"name": "both", "strategy": "both", "rendering": "native"},
        ],
        "split": {"rule": "study", "seed": 0},
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _build_json(recipe: Path, out: Path, *extra: str, capsys) -> dict:
    capsys.readouterr()
    rc = main(["build", str(recipe), "--out", str(out), "--json", *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def test_rerun_is_cached_and_a_pairing_change_reruns_only_pairing_onwards(
        tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path, capsys):
    recipe = _small_recipe(tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path)
    out = tmp_path / "out"
    first = _build_json(recipe, out, capsys=capsys)
    assert set(first["stages"].values()) == {"done"}
    before = _tree(out)

    again = _build_json(recipe, out, capsys=capsys)
    assert set(again["stages"].values()) == {"cached"}
    assert _tree(out) == before

    changed = _build_json(recipe, out, "--set", "datasets.safety.min_gap=3", capsys=capsys)
    assert changed["stages"]["source"] == "cached"
    assert changed["stages"]["pair:both"] == "cached"
    assert changed["stages"]["validate:both"] == "cached"
    for stage in ("pair:safety", "validate:safety", "audit", "card"):
        assert changed["stages"][stage] == "done", stage
    assert changed["datasets"]["safety"]["pairs"] < first["datasets"]["safety"]["pairs"]


@pytest.fixture(scope="module")
def reference_small_build(tmp_path_factory, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path):
    tmp = tmp_path_factory.mktemp("small-ref")
    recipe = _small_recipe(tmp, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path)
    out = tmp / "out"
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    return recipe, _tree(out)


@pytest.mark.parametrize("stage", ["source", "pair", "validate", "audit", "card"])
def test_killed_build_resumes_to_identical_output(stage, tmp_path, reference_small_build):
    recipe, expected = reference_small_build
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "prefkit.cli", "build", str(recipe), "--out", str(out), "--quiet"]
    env = {**os.environ, "PREFKIT_FAULT_STAGE": stage, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr  # SIGKILL in the middle of the stage
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert _tree(out) == expected


@pytest.mark.parametrize(
    ("recipe_text", "needle"),
    [
        ("name: x\nsource: {kind: toolemu, path: a, cases: b, toolkits: c}\ndatasets:\n  - {name: s, strategy: safety}\ncolour: red\n",
         ":5 [colour]: unknown key"),
        ("name: x\nsource: {kind: toolemu, path: a, cases: b, toolkits: c}\ndatasets:\n  - name: s\n    strategy: safety\n    min_gap: lots\n",
         ":6 [datasets.0.min_gap]"),
        ("name: x\ndatasets:\n  - {name: s, strategy: safety}\n", "[source]: field required"),
        ("name: x\nsource: {kind: toolemu, path: a, cases: b, toolkits: c}\ndatasets:\n  - {name: s, strategy: safety}\naudit:\n  max_gini: 1.5\n",
         ":6 [audit.max_gini]"),
        ("name: x\nsource: {kind: toolemu, path: a, cases: b, toolkits: c}\ndatasets: [\n", "not valid YAML"),
    ],
    ids=["unknown-key", "wrong-type", "missing-source", "threshold-out-of-range", "bad-yaml"],
)
def test_bad_recipe_is_one_clear_error_with_exit_2(recipe_text, needle, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe_text)
    rc = main(["build", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in " ".join(err.split()), err
    assert str(path) in " ".join(err.split()).replace("\n", "")
    assert not (tmp_path / "out").exists()


def test_missing_source_folder_is_exit_2(tmp_path, capsys, toolemu_cases_path, toolemu_toolkits_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"kind": "toolemu", "path": str(tmp_path / "nowhere"), "cases": str(toolemu_cases_path),
                   "toolkits": str(toolemu_toolkits_path)},
        "datasets": [{"name": "s", "strategy": "safety"}],
    }))
    rc = main(["build", str(path), "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "source.path" in capsys.readouterr().err


def test_audit_threshold_fails_the_build_with_exit_1(tmp_path, raw_q32_dir, toolemu_cases_path,
                                                     toolemu_toolkits_path, capsys):
    recipe = _small_recipe(tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path,
                           audit={"min_pairs": 100000})
    rc = main(["build", str(recipe), "--out", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1
    assert "min_pairs" in err and "100000" in err
    assert (tmp_path / "out" / "audit.json").exists()


TOKEN = "hf_buildTestToken0123456789abcdef"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from fake_hub import FakeHub, point_clients_at

    with FakeHub(token=TOKEN) as fake:
        point_clients_at(fake, monkeypatch, tmp_path / "hf-cache")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield fake
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()


def test_build_publishes_and_the_dataset_loads_back_from_the_hub(
        hub, tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path, capsys):
    import datasets

    recipe = _small_recipe(tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path,
                           publish={"repo_id": "me/agent-prefs", "private": True})
    out = tmp_path / "out"
    summary = _build_json(recipe, out, capsys=capsys)
    assert summary["stages"]["publish"] == "done"
    local = _tree(out)
    remote = hub.files("me/agent-prefs")
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local
    for config in ("safety", "both"):
        ds = datasets.load_dataset("me/agent-prefs", config)
        assert ds["train"].num_rows == datasets.load_dataset(str(out), config)["train"].num_rows
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert all(TOKEN.encode() not in content for content in remote.values())


def test_killed_publish_resumes_to_the_same_remote_dataset(
        hub, tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path):
    recipe = _small_recipe(tmp_path, raw_q32_dir, toolemu_cases_path, toolemu_toolkits_path,
                           publish={"repo_id": "me/killed", "private": False})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "prefkit.cli", "build", str(recipe), "--out", str(out), "--quiet"]
    env = {**os.environ, "PREFKIT_FAULT_STAGE": "publish", "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": TOKEN}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert TOKEN not in killed.stdout + killed.stderr
    assert main(["build", str(recipe), "--out", str(out), "--quiet"]) == 0
    remote = {k: v for k, v in hub.files("me/killed").items() if k != ".gitattributes"}
    assert remote == _tree(out)
