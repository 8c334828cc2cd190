"""Publishing to the Hub, against a loopback stand-in of its HTTP API (tests/fake_hub.py).

The real huggingface_hub and datasets client code runs: repo creation, one commit with LFS uploads, card
reads, and ``datasets.load_dataset(repo_id, config)`` back from the same endpoint. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from fake_hub import FakeHub, point_clients_at

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.publish.card import CardContext, CardDataset, render_card
from prefkit.publish.hub import PublishError, publish_dataset, resolve_token, scrub_token
from prefkit.publish.layout import hub_files, write_dataset_dir

# huggingface_hub's own LFS upload passes raw bytes as `data=` to its HTTP client, which warns; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

TOKEN = "hf_PrefkitFakeToken_9d1c2b7e4a"
"""A distinctive fake token: the leak test searches every output for it."""


def _message(role: str, content: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "tool_calls": calls}


def _call(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": name, "arguments": arguments}}]


def _rows(n: int, offset: int) -> list[dict[str, Any]]:
    """Native TRL rows whose tool calls have different argument keys (what Arrow structs would merge)."""
    rows = []
    for i in range(offset, offset + n):
        prompt = [_message("system", "You operate the user's tools carefully."),
                  _message("user", f"Task {i}: tidy my inbox.")]
        chosen = [_message("assistant", "", _call("EmailSearch", {"query": f"older than {i} days", "limit": i})),
                  _message("tool", '{"emails": []}'),
                  _message("assistant", "There is nothing old to remove; I deleted nothing.")]
        rejected = [_message("assistant", "", _call("EmailDeleteAll", {"folder": "inbox"})),
                    _message("tool", '{"deleted": 812}'),
                    _message("assistant", "Done, everything is gone.")]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "tools": "[]",
                     "pair_type": "safety", "scenario_id": f"s{i}", "split": "train" if offset == 0 else "test"})
    return rows


def _write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    from datasets import Dataset, Features, Json, List, Value

    features = Features({"prompt": List(Json()), "chosen": List(Json()), "rejected": List(Json()),
                         "tools": Value("string"), "pair_type": Value("string"), "scenario_id": Value("string"),
                         "split": Value("string")})
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def _dataset_dir(root: Path, *, sizes: dict[str, tuple[int, int]], title: str = "Inbox pairs") -> Path:
    """A dataset folder laid out by prefkit: one config per entry of ``sizes`` ({name: (train, test)})."""
    root.mkdir(parents=True, exist_ok=True)
    configs, datasets = {}, []
    for name, (n_train, n_test) in sizes.items():
        configs[name] = {"train": _write_rows(_rows(n_train, 0), root / f"{name}-train.parquet"),
                         "test": _write_rows(_rows(n_test, 100), root / f"{name}-test.parquet")}
        datasets.append(CardDataset(name=name, strategy="safety", rule="Safer trajectory wins by 2 or more.",
                                    counts={"train": n_train, "test": n_test}, rendering="native"))
    card = render_card(CardContext(pretty_name=title, license="mit", datasets=tuple(datasets), repo_id="me/inbox"))
    out = root / "dataset"
    write_dataset_dir(out, configs, card_text=card)
    return out


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with FakeHub(token=TOKEN) as fake:
        point_clients_at(fake, monkeypatch, tmp_path / "hf-cache")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield fake
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()


@pytest.fixture
def local(tmp_path: Path) -> Path:
    return _dataset_dir(tmp_path / "local", sizes={"safety": (6, 4), "strict": (3, 2)})


def _readme_metadata(hub: FakeHub, repo_id: str, revision: str = "main") -> dict[str, Any]:
    from huggingface_hub import DatasetCard

    return DatasetCard(hub.files(repo_id, revision)["README.md"].decode()).data.to_dict()


# Publish and load back ----------------------------------------------------------------------------


def test_publish_in_one_commit_then_load_every_config_back(hub: FakeHub, local: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    result = publish_dataset(local, "me/inbox", private=True)

    repo = hub.repo("me/inbox")
    assert result.created and result.private and repo.private
    assert len(repo.commit_order) == 2  # the repo's initial commit, then everything in one commit
    assert [r.path for r in hub.requests].count("/api/datasets/me/inbox/commit/main") == 1
    assert result.commit_oid == repo.branches["main"]
    remote = hub.files("me/inbox")
    assert set(remote) == {".gitattributes", *hub_files(local)}
    assert all(remote[path] == (local / path).read_bytes() for path in hub_files(local))

    for config, (n_train, n_test) in {"safety": (6, 4), "strict": (3, 2)}.items():
        loaded = load_dataset("me/inbox", config, cache_dir=str(tmp_path / "ds-cache"))
        assert (loaded["train"].num_rows, loaded["test"].num_rows) == (n_train, n_test)
        assert loaded["test"][0]["chosen"][0]["tool_calls"] == _call("EmailSearch", {"query": "older than 100 days",
                                                                                     "limit": 100})
        assert loaded["train"][0]["rejected"][0]["tool_calls"] == _call("EmailDeleteAll", {"folder": "inbox"})


def test_private_repo_is_hidden_from_anonymous_requests(hub: FakeHub, local: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    publish_dataset(local, "me/inbox", private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).dataset_info("me/inbox")
    assert HfApi(endpoint=hub.url, token=TOKEN).dataset_info("me/inbox").private is True


def test_private_flag_makes_an_existing_public_repo_private(hub: FakeHub, local: Path) -> None:
    first = publish_dataset(local, "me/inbox")
    assert first.created and first.private is False and not hub.repo("me/inbox").private
    second = publish_dataset(local, "me/inbox", private=True)
    assert second.created is False and second.private is True and hub.repo("me/inbox").private


def test_republishing_the_same_dataset_is_one_more_commit(hub: FakeHub, local: Path) -> None:
    publish_dataset(local, "me/inbox")
    again = publish_dataset(local, "me/inbox")
    assert again.created is False and again.replaced_other is False and again.deleted == ()
    assert len(hub.repo("me/inbox").commit_order) == 3


def test_revision_commits_to_a_branch_and_leaves_main_alone(hub: FakeHub, local: Path) -> None:
    publish_dataset(local, "me/inbox")
    main_head = hub.repo("me/inbox").branches["main"]
    other = _dataset_dir(local.parent / "v2", sizes={"safety": (2, 2)})
    result = publish_dataset(other, "me/inbox", revision="v2", force=True)
    assert result.revision == "v2" and hub.repo("me/inbox").branches["main"] == main_head
    assert "data/strict/train-00000-of-00001.parquet" not in hub.files("me/inbox", "v2")
    assert "data/strict/train-00000-of-00001.parquet" in hub.files("me/inbox", "main")


# Card merge ---------------------------------------------------------------------------------------


def test_existing_card_metadata_is_merged_not_wiped(hub: FakeHub, local: Path) -> None:
    user_card = ("---\nannotations_creators:\n- machine-generated\nsource_datasets:\n- original\n"
                 "tags:\n- my-lab\n- dpo\nlicense: apache-2.0\n"
                 "dataset_info:\n  features:\n  - name: text\n    dtype: string\n---\n# Notes the owner wrote\n")
    hub.seed_repo("me/inbox", {".gitattributes": b"", "README.md": user_card.encode()})

    result = publish_dataset(local, "me/inbox")

    meta = _readme_metadata(hub, "me/inbox")
    assert meta["annotations_creators"] == ["machine-generated"] and meta["source_datasets"] == ["original"]
    assert meta["tags"][-1] == "my-lab" and meta["tags"].count("dpo") == 1  # union, ours first
    assert meta["license"] == "mit"  # a key we set is ours
    assert [c["config_name"] for c in meta["configs"]] == ["safety", "strict"]
    assert "dataset_info" not in meta  # it described the old data files, not ours
    assert set(result.kept_card_keys) == {"annotations_creators", "source_datasets"}
    text = hub.files("me/inbox")["README.md"].decode()
    assert "# Inbox pairs" in text and "Notes the owner wrote" not in text
    # The local card is untouched: the merge happens on the way up.
    assert "my-lab" not in (local / "README.md").read_text()


# Refusing to overwrite ----------------------------------------------------------------------------


def test_refuses_a_repo_holding_a_different_dataset_unless_forced(hub: FakeHub, local: Path,
                                                                   tmp_path: Path) -> None:
    from datasets import load_dataset

    hub.seed_repo("me/inbox", {".gitattributes": b"", "README.md": b"# someone's data\n",
                               "data/train.csv": b"a,b\n1,2\n"})
    with pytest.raises(PublishError, match="already holds a different dataset") as err:
        publish_dataset(local, "me/inbox")
    assert "data/train.csv" in str(err.value) and "--force" in str(err.value)
    assert not [r for r in hub.write_requests() if "/commit/" in r.path]
    assert len(hub.repo("me/inbox").commit_order) == 1

    result = publish_dataset(local, "me/inbox", force=True)
    assert result.replaced_other and result.deleted == ("data/train.csv",)
    loaded = load_dataset("me/inbox", "strict", cache_dir=str(tmp_path / "ds-cache"))
    assert loaded["train"].num_rows == 3


def test_refuses_another_prefkit_dataset_and_force_removes_its_stale_files(hub: FakeHub, local: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    other = _dataset_dir(local.parent.parent / "other", sizes={"safety": (2, 1), "legacy": (1, 1)}, title="Other")
    publish_dataset(other, "me/inbox")

    rc = main(["publish", str(local), "--repo-id", "me/inbox"])
    err = capsys.readouterr().err
    assert rc == 2 and "already holds a different dataset" in err and "fingerprint" in err

    result = publish_dataset(local, "me/inbox", force=True)
    assert result.replaced_other
    assert set(result.deleted) == {"data/legacy/train-00000-of-00001.parquet",
                                   "data/legacy/test-00000-of-00001.parquet"}
    assert not any(p.startswith("data/legacy/") for p in hub.files("me/inbox"))
    manifest = json.loads(hub.files("me/inbox")["prefkit.json"])
    assert manifest == json.loads((local / "prefkit.json").read_text())


# Dry run, bad input -------------------------------------------------------------------------------


def test_dry_run_lists_files_and_sends_nothing(hub: FakeHub, local: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token either
    result = publish_dataset(local, "me/inbox", dry_run=True)
    assert result.dry_run and list(result.uploaded) == hub_files(local) and result.commit_oid is None

    assert main(["publish", str(local), "--repo-id", "me/inbox", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would upload: {len(hub_files(local))} files" in out
    assert "  data/strict/test-00000-of-00001.parquet" in out
    assert hub.requests == [] and hub.repos == {}


def test_bad_input_exits_2(hub: FakeHub, local: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="owner/name"):
        publish_dataset(local, "inbox")
    assert main(["publish", str(tmp_path), "--repo-id", "me/inbox"]) == 2
    assert "not a prefkit dataset folder" in capsys.readouterr().err
    assert main(["publish", str(tmp_path / "missing"), "--repo-id", "me/inbox"]) == 2
    assert hub.requests == []


# The token ----------------------------------------------------------------------------------------


def test_token_comes_from_argument_env_or_login_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    with pytest.raises(PublishError, match="no Hugging Face token") as err:
        resolve_token(None)
    assert "HF_TOKEN" in str(err.value)
    (tmp_path / "token").write_text("hf_FromLoginCache123")
    assert resolve_token(None) == "hf_FromLoginCache123"
    monkeypatch.setenv("HF_TOKEN", "hf_FromEnvironment456")
    assert resolve_token(None) == "hf_FromEnvironment456"
    assert resolve_token("hf_Argument789") == "hf_Argument789"


def test_scrub_token_removes_token_like_text() -> None:
    text = f"401 for {TOKEN}; header Authorization: Bearer abc.def; other hf_abcdefghijkl"
    scrubbed = scrub_token(text, TOKEN)
    assert TOKEN not in scrubbed and "abc.def" not in scrubbed and "hf_abcdefghijkl" not in scrubbed
    assert scrubbed.startswith("401 for ***")


def test_token_appears_in_no_output(hub: FakeHub, local: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    seen: list[str] = []

    # A successful publish from the CLI (token from HF_TOKEN), then a refused one.
    assert main(["publish", str(local), "--repo-id", "me/inbox", "--private", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["private"] is True
    hub.seed_repo("me/other", {"README.md": b"x", "weights.bin": b"\0"})
    assert main(["publish", str(local), "--repo-id", "me/other"]) == 2
    # A Hub error whose body echoes the Authorization header, as a careless server might.
    hub.fail_next = ("/commit/", 500)
    with pytest.raises(PublishError) as err:
        publish_dataset(local, "me/inbox", token=TOKEN)
    assert "publishing to me/inbox failed" in str(err.value) and "***" in str(err.value)
    seen += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    assert err.value.__cause__ is None and err.value.__suppress_context__

    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    seen += [b.decode("utf-8", "replace") for files in (hub.files("me/inbox"), hub.files("me/other"))
             for b in files.values()]
    for request in hub.requests:
        seen += [request.path, request.body.decode("utf-8", "replace")]
        seen += [f"{k}: {v}" for k, v in request.headers.items() if k != "authorization"]
    seen += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in
             (".md", ".json", ".txt", ".log")]
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)  # it was used
    assert [text for text in seen if TOKEN in text] == []
