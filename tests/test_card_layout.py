"""The dataset card and the local dataset folder, on the study's real pairs (raw_q32 -> prefkit pair).

Checked locally because the Hub's own validation endpoint needs the network: the card parses with
huggingface_hub's DatasetCard, its metadata survives a DatasetCardData round trip, and its ``configs`` are
what ``datasets`` reads; the folder loads with ``datasets.load_dataset(DIR, CONFIG)`` for every config, with
tool-call arguments intact.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from prefkit.errors import InputError
from prefkit.publish.card import (
    BASE_TAGS,
    CardContext,
    CardDataset,
    card_metadata,
    describe_rule,
    render_card,
    size_category,
)
from prefkit.publish.layout import (
    DatasetConfigFiles,
    dataset_fingerprint,
    hub_files,
    plot_path,
    read_dataset_manifest,
    split_counts,
    write_dataset_dir,
)
from prefkit.store import file_sha256

# Config name -> (strategy, rendering): one react and one native dataset, so both row shapes are covered.
DATASETS = {"safety": ("safety", "react"), "both_native": ("both", "native")}


def tiny_png(path: Path) -> Path:
    """A valid 1x1 PNG, written with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def built(q32_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The study's safety pairs (react) and best-of-both pairs (native), audited, as a CardContext."""
    from prefkit.audit import audit_pairs
    from prefkit.audit.plots import write_audit
    from prefkit.pairing import PairConfig, build_pairs, write_pairs

    root = tmp_path_factory.mktemp("card")
    pairs_dirs: dict[str, Path] = {}
    datasets: list[CardDataset] = []
    plots: dict[str, Path] = {}
    for name, (strategy, rendering) in DATASETS.items():
        config = PairConfig(strategy=strategy, rendering=rendering)
        out = root / f"pairs_{name}"
        write_pairs(build_pairs(q32_run, config), q32_run, config, out)
        pairs_dirs[name] = out
        pairing = json.loads((out / "pairing.json").read_text())
        report = audit_pairs(out, run=q32_run)
        write_audit(report, root / f"audit_{name}", plots=False)
        audit_plots: list[str] = []
        if name == "safety":  # one dataset's plot is enough to check the card links it (the audit's own
            # matplotlib plots take seconds to draw and are tested in test_audit.py)
            png = tiny_png(root / "score_gap.png")
            plots[f"{name}-{png.name}"] = png
            audit_plots.append(plot_path(f"{name}-{png.name}"))
        datasets.append(CardDataset(
            name=name, strategy=strategy, rendering=rendering, rule=describe_rule(pairing["config"]),
            counts={"train": pairing["train_pairs"], "test": pairing["test_pairs"]},
            audit=json.loads((root / f"audit_{name}" / "audit.json").read_text()), plots=tuple(audit_plots),
        ))
    ctx = CardContext(
        pretty_name="prefkit test pairs (raw_q32)", license="mit", datasets=tuple(datasets),
        recipe_yaml="name: q32-test\npairs:\n  - strategy: safety\n  - strategy: both\n",
        agents=("gpt-5", "Qwen_Qwen2.5-7B-Instruct"), judges=("Qwen/Qwen3-32B",), repo_id="me/q32-pairs",
        sources=("ToolEmu scenarios (Apache-2.0)",),
    )
    configs = DatasetConfigFiles.from_pairs_dirs(pairs_dirs)
    return {"root": root, "pairs_dirs": pairs_dirs, "ctx": ctx, "configs": configs, "plots": plots,
            "card": render_card(ctx)}


@pytest.fixture(scope="module")
def dataset_dir(built: dict[str, Any]) -> Path:
    out = built["root"] / "dataset"
    write_dataset_dir(out, built["configs"], card_text=built["card"], plots=built["plots"])
    return out


# The card ------------------------------------------------------------------------------------------


def test_card_metadata_is_what_the_hub_and_datasets_read(built: dict[str, Any]) -> None:
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    card = DatasetCard(built["card"])
    data = card.data.to_dict()
    assert data["license"] == "mit"
    assert data["task_categories"] == ["text-generation"]
    assert {"dpo", "preference", "safety", "tool-use"} <= set(data["tags"])
    assert data["pretty_name"] == "prefkit test pairs (raw_q32)"
    assert data["size_categories"] == ["n<1K"]  # 932 safety pairs, the larger config
    assert [c["config_name"] for c in data["configs"]] == ["safety", "both_native"]
    assert data["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/safety/train-*.parquet"},
        {"split": "test", "path": "data/safety/test-*.parquet"},
    ]
    # Round trip through the Hub client's own metadata class keeps every key and value.
    assert DatasetCardData(**data).to_dict() == data
    assert DatasetCard(str(card)).data.to_dict() == data
    # `datasets` reads the configs from the card exactly as it will on the Hub.
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert set(configs) == {"safety", "both_native"}
    assert configs.get_default_config_name() == "safety"


def test_card_prose_says_what_each_dataset_is(built: dict[str, Any]) -> None:
    from huggingface_hub import DatasetCard

    text = DatasetCard(built["card"]).text
    assert "Content warning" in text
    # The study's counts with split seed 0: safety 503 train / 429 test, best-of-both 133 / 102.
    assert "| `safety` | 503 / 429 | safety | react |" in text
    assert "| `both_native` | 133 / 102 | both | native |" in text
    assert describe_rule({"strategy": "safety", "min_gap": 2, "min_chosen": 2}).split(";")[0] in text
    assert "- Qwen/Qwen3-32B" in text and "- gpt-5" in text
    assert "```yaml\nname: q32-test" in text
    assert 'load_dataset("me/q32-pairs", "safety")' in text and "DPOTrainer(" in text
    # The audit's headline numbers, straight from audit.json.
    audit = built["ctx"].datasets[0].audit
    gini = audit["splits"]["train"]["pairs_per_scenario"]["gini"]
    row = next(line for line in text.splitlines() if line.startswith("| pairs per scenario, Gini |"))
    assert row.split("|")[2].strip() == f"{gini:.3f}".rstrip("0").rstrip(".")
    assert "| pairs | 503 | 429 | 932 |" in text
    assert "Scenarios in both train and test: 0." in text
    for plot in built["ctx"].datasets[0].plots:
        assert f"]({plot})" in text


def test_describe_rule_covers_each_strategy() -> None:
    for strategy in ("safety", "helpfulness"):
        text = describe_rule({"strategy": strategy, "min_gap": 1, "min_chosen": 3, "split_seed": 2})
        assert f"higher {strategy} score is chosen" in text and "at least 1" in text and "seed 2" in text
    assert "on safety alone" in describe_rule({"strategy": "both"})
    assert "mean of the two metrics" in describe_rule({"strategy": "average", "first_metric": "safety"})
    extras = describe_rule({"strategy": "both", "safety_floor": 2, "dedup": True, "max_chosen_reuse": 3,
                            "split_rule": "fraction", "test_fraction": 0.2})
    assert "Beyond the study" in extras and "at most 3 pairs" in extras and "0.2 of the scenarios" in extras
    with pytest.raises(InputError, match="strategy"):
        describe_rule({"strategy": "lottery"})


@pytest.mark.parametrize(("rows", "bucket"), [
    (0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (9999, "1K<n<10K"), (10**5, "100K<n<1M"),
    (5 * 10**9, "1B<n<10B"), (10**12, "n>1T"),
])
def test_size_category_buckets(rows: int, bucket: str) -> None:
    assert size_category(rows) == bucket


def test_card_context_rejects_what_the_hub_would() -> None:
    ds = CardDataset(name="a", strategy="safety", rule="r", counts={"train": 1})
    with pytest.raises(ValidationError, match="task categories"):
        CardContext(pretty_name="x", license="mit", datasets=(ds,), task_categories=("dpo-training",))
    with pytest.raises(ValidationError, match="license"):
        CardContext(pretty_name="x", license="MIT License", datasets=(ds,))
    with pytest.raises(ValidationError, match="unique"):
        CardContext(pretty_name="x", license="mit", datasets=(ds, ds))
    meta = card_metadata(CardContext(pretty_name="x", license="mit", datasets=(ds,), extra_tags=("dpo", "agentic")))
    assert meta["tags"] == [*BASE_TAGS, "agentic"]  # no duplicate tag


# The folder ---------------------------------------------------------------------------------------


def test_folder_holds_exactly_what_goes_to_the_hub(dataset_dir: Path, built: dict[str, Any]) -> None:
    expected = {"README.md", "prefkit.json", *built["ctx"].datasets[0].plots}
    for name in DATASETS:
        expected |= {f"data/{name}/train-00000-of-00001.parquet", f"data/{name}/test-00000-of-00001.parquet"}
    assert set(hub_files(dataset_dir)) == expected
    for name, folder in built["pairs_dirs"].items():  # byte-for-byte copies
        assert file_sha256(dataset_dir / f"data/{name}/train-00000-of-00001.parquet") == file_sha256(folder / "train.parquet")
    manifest = read_dataset_manifest(dataset_dir)
    assert manifest is not None
    assert manifest["fingerprint"] == dataset_fingerprint(built["configs"])
    assert manifest["configs"]["safety"]["train"]["rows"] == 503
    assert manifest["configs"]["both_native"]["test"]["files"][0]["path"] == "data/both_native/test-00000-of-00001.parquet"
    assert split_counts(built["configs"]) == {"safety": {"train": 503, "test": 429},
                                              "both_native": {"train": 133, "test": 102}}
    assert (dataset_dir / "README.md").read_text() == built["card"]


def test_every_config_loads_with_datasets_and_keeps_tool_calls(dataset_dir: Path, built: dict[str, Any],
                                                              tmp_path: Path) -> None:
    from datasets import load_dataset

    from prefkit.pairing.rows import load_pair_rows

    for name, (strategy, rendering) in DATASETS.items():
        loaded = load_dataset(str(dataset_dir), name, cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == {"train", "test"}
        for split in ("train", "test"):
            source = load_pair_rows(built["pairs_dirs"][name] / f"{split}.parquet")
            assert loaded[split].num_rows == source.num_rows
            assert set(loaded[split]["pair_type"]) == {strategy}
            assert loaded[split]["chosen"] == source["chosen"]
            assert loaded[split]["prompt"][:5] == source["prompt"][:5]
        if rendering == "native":
            assert "tools" in loaded["train"].column_names
            calls = [m["tool_calls"] for row in loaded["train"]["chosen"] for m in row if m["tool_calls"]]
            assert calls, "native rows carry tool calls"
            # Arguments are each call's own dict: an Arrow struct would give every call the union of all
            # calls' keys, so distinct key sets prove the Json feature came through the copy.
            arguments = [c["function"]["arguments"] for call in calls for c in call]
            assert len({frozenset(a) for a in arguments if isinstance(a, dict)}) > 10


def test_empty_splits_and_configs_are_left_out_of_the_loadable_configs(built: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from datasets import load_dataset

    safety = built["configs"].root["safety"]
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(safety["test"]).slice(0, 0), empty)  # same schema and features, no rows
    configs = DatasetConfigFiles({"safety": {"train": safety["train"], "test": empty},
                                  "nothing": {"train": empty, "test": empty}})
    counts = split_counts(configs)
    assert counts["safety"]["test"] == 0 and counts["nothing"] == {"train": 0, "test": 0}
    base = built["ctx"].datasets[0]
    ctx = built["ctx"].model_copy(update={"datasets": (
        base.model_copy(update={"counts": counts["safety"]}),
        base.model_copy(update={"name": "nothing", "counts": counts["nothing"]}),
    )})
    assert card_metadata(ctx)["configs"] == [{"config_name": "safety", "default": True, "data_files": [
        {"split": "train", "path": "data/safety/train-*.parquet"}]}]
    text = render_card(ctx)
    assert "Empty splits are left out of the config" in text and "not among the configs" in text
    out = tmp_path / "dataset"
    write_dataset_dir(out, configs, card_text=text)
    loaded = load_dataset(str(out), "safety", cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train"} and loaded["train"].num_rows == counts["safety"]["train"] > 0
    with pytest.raises(ValueError, match="nothing"):
        load_dataset(str(out), "nothing", cache_dir=str(tmp_path / "cache"))


def test_rewriting_the_folder_removes_stale_files(built: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    write_dataset_dir(out, built["configs"], card_text=built["card"], plots=built["plots"])
    only_safety = DatasetConfigFiles({"safety": built["configs"].root["safety"]})
    write_dataset_dir(out, only_safety, card_text="---\nlicense: mit\n---\n")
    assert hub_files(out) == ["README.md", "data/safety/test-00000-of-00001.parquet",
                              "data/safety/train-00000-of-00001.parquet", "prefkit.json"]
    assert not (out / "data" / "both_native").exists() and not (out / "plots").exists()
    assert read_dataset_manifest(out)["fingerprint"] == dataset_fingerprint(only_safety)


def test_bad_inputs_name_what_is_wrong(built: dict[str, Any], tmp_path: Path) -> None:
    safety = built["configs"].root["safety"]
    with pytest.raises(InputError, match="no parquet file for split 'test'") as err:
        write_dataset_dir(tmp_path / "a", {"safety": {"train": safety["train"], "test": tmp_path / "nope.parquet"}},
                          card_text="x")
    assert "nope.parquet" in str(err.value)
    with pytest.raises(InputError, match="config name"):
        write_dataset_dir(tmp_path / "b", {"bad name": dict(safety)}, card_text="x")
    with pytest.raises(InputError, match="PNG"):
        write_dataset_dir(tmp_path / "c", {"safety": dict(safety)}, card_text="x", plots=[safety["train"]])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (foreign / "README.md").write_text("my own card")
    with pytest.raises(InputError, match="refusing to overwrite a README.md"):
        write_dataset_dir(foreign, {"safety": dict(safety)}, card_text="x")
    assert (foreign / "README.md").read_text() == "my own card" and len(list(foreign.iterdir())) == 2
