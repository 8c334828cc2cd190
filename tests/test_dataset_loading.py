"""A rebuilt dataset never loads stale rows, whatever ``datasets``' cache holds.

``datasets`` (5.x) caches a local folder under ``<folder name>/<config>/<version>/<hash>``, the hash taken over
the card's ``configs`` entries and never over the files (huggingface/datasets #2956): two builds in folders of
the same name, or a rebuild with other pairing options, got one cache entry, and the second load returned the
first build's rows. The card now carries each config's data fingerprint in its ``description``. Here two
different datasets are built in ``a/out`` and ``b/out`` (same folder name, same config, same splits: only the
rows differ) and loaded through one cache in every way prefkit prints or documents.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_case_empty_split import TRAIN_SEED, build_case, card_snippet, make_case

from prefkit.publish.layout import config_fingerprint, read_dataset_manifest


def _rows_on_disk(folder: Path, split: str) -> list[str]:
    import pyarrow.parquet as pq

    return [str(r) for r in pq.read_table(folder / "data" / "safety" / f"{split}-00000-of-00001.parquet")
            .column("rendering").to_pylist()]


def _loads(folder: Path, printed: str, cache: Path, monkeypatch) -> dict[str, list[str]]:
    """The ``rendering`` column of the train split, as each documented way of loading ``folder`` returns it."""
    import datasets

    from prefkit.train.data import load_split

    got = {}
    line = re.search(r"load it: (datasets\.load_dataset\(.*\))", printed)
    assert line, printed
    closing = eval(line.group(1), {"datasets": datasets})  # noqa: S307 - the line prefkit build printed
    got["closing line"] = closing["train"]["rendering"]
    got["README: folder"] = datasets.load_dataset(str(folder), "safety", cache_dir=str(cache))["train"]["rendering"]
    got["README: parquet"] = datasets.load_dataset(
        "parquet", data_dir=str(folder / "data" / "safety"), cache_dir=str(cache))["train"]["rendering"]
    code = card_snippet((folder / "README.md").read_text(encoding="utf-8"), "Train on it with TRL")
    assert code is not None
    load_line = next(line for line in code.splitlines() if "load_dataset(" in line)
    monkeypatch.chdir(folder.parent)
    scope: dict = {"load_dataset": datasets.load_dataset}
    exec(load_line.replace("<user>/<dataset>", folder.name), scope)  # noqa: S102 - the card's own line
    got["card: train"] = scope["train"]["rendering"]
    got["prefkit train"] = load_split(str(folder), "safety", "train")["rendering"]
    return got


def test_two_builds_in_folders_of_one_name_each_load_their_own_rows(shared_dir: Path, tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:
    import datasets

    # The default cache is this session's (conftest) and shared by both builds, like a user's ~/.cache.
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    a = make_case(shared_dir, tmp_path / "a")
    b = make_case(shared_dir, tmp_path / "b")
    rc, printed_a, err = build_case(a, "out", f"split.seed={TRAIN_SEED}", shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    rc, printed_b, err = build_case(b, "out", f"split.seed={TRAIN_SEED}", "datasets.safety.rendering=native",
                                    shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    folder_a, folder_b = a / "out", b / "out"
    assert _rows_on_disk(folder_a, "train") == ["react"] and _rows_on_disk(folder_b, "train") == ["native"]
    fingerprints = {f: read_dataset_manifest(f)["fingerprint"] for f in (folder_a, folder_b)}
    assert fingerprints[folder_a] != fingerprints[folder_b]
    # the card carries the config's fingerprint where `datasets` hashes it
    from huggingface_hub import DatasetCard

    for folder in (folder_a, folder_b):
        (config,) = DatasetCard.load(folder / "README.md").data.to_dict()["configs"]
        fingerprint = config_fingerprint("safety", {"train": folder / "data/safety/train-00000-of-00001.parquet"})
        assert config["description"] == f"safety pairs; data fingerprint {fingerprint[:16]}"

    for way, rows in _loads(folder_a, printed_a, cache, monkeypatch).items():
        assert list(rows) == ["react"], way
    for way, rows in _loads(folder_b, printed_b, cache, monkeypatch).items():
        assert list(rows) == ["native"], way
    # a rebuild of a/out with other pairing options, loaded again through the same cache
    rc, printed_a, err = build_case(a, "out", f"split.seed={TRAIN_SEED}", "datasets.safety.rendering=native",
                                    shared_dir=shared_dir, capsys=capsys)
    assert rc == 0, err
    for way, rows in _loads(folder_a, printed_a, cache, monkeypatch).items():
        assert list(rows) == ["native"], way
