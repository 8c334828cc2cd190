"""Publishing a dataset folder (``prefkit.publish.layout``) to the Hugging Face Hub in one commit.

Rules, in the order ``publish_dataset`` applies them:

1. The folder must be a prefkit dataset folder (``README.md`` and ``prefkit.json``).
2. ``dry_run`` lists the files that would be uploaded and stops: no token, no network.
3. The token comes from the ``token`` argument, else ``HF_TOKEN``, else the login cache
   (``huggingface_hub.get_token``). It goes only into the HTTP Authorization header: it is never printed,
   never written to the card, and scrubbed from every error message (``scrub_token``).
4. The repo is created if absent (``private`` applies then; an existing public repo is made private when
   ``private`` is asked, never the other way round).
5. "A different dataset": the repo's ``prefkit.json`` has another fingerprint, or the repo has no
   ``prefkit.json`` but holds files besides ``README.md`` and ``.gitattributes``. Publishing over it is
   refused unless ``force``. The same fingerprint is the same data (a re-publish, e.g. with a new card).
6. The remote card is merged, not wiped: metadata keys we do not set (``annotations_creators``, a
   ``homepage``...) are kept and tags are unioned; keys we set, the prose, and every key that describes
   data files (``DATA_KEYS``: ``configs``, ``dataset_info``...) are ours.
7. Everything goes up in ONE commit: every file of the folder, plus deletions of remote files under
   ``data/`` and ``plots/`` that this dataset no longer has.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefkit.errors import InputError, PrefkitError
from prefkit.publish.layout import CARD_FILE, MANAGED_DIRS, MANIFEST_FILE, hub_files, read_dataset_manifest

REPO_TYPE = "dataset"
UNMANAGED_OK = frozenset({CARD_FILE, ".gitattributes"})
"""Files a repo may hold without counting as "holding a different dataset"."""
DATA_KEYS = frozenset({"configs", "dataset_info", "dataset_infos", "config_names", "train-eval-index",
                       "size_categories"})
"""Card metadata that describes the data files: only ours is published, a remote value is never kept."""
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9_-]{6,}")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


class PublishError(PrefkitError):
    """Publishing was refused or failed; the message never holds the token. Exit code 2 in the CLI."""


class PublishResult(BaseModel, frozen=True, extra="forbid"):
    """What ``publish_dataset`` did (or, with ``dry_run``, would do)."""

    repo_id: str
    revision: str
    dry_run: bool
    uploaded: tuple[str, ...]
    """Paths in the repo that the commit adds or replaces (all files of the folder)."""
    deleted: tuple[str, ...] = ()
    """Stale remote files under ``data/`` and ``plots/`` that the commit removes."""
    kept_card_keys: tuple[str, ...] = ()
    """Metadata keys of the remote card that were kept (we do not set them)."""
    created: bool | None = None
    """Whether the repo was created by this call (None in a dry run)."""
    private: bool | None = None
    """The repo's visibility after the call (None in a dry run)."""
    replaced_other: bool = False
    """The repo held a different dataset and ``force`` replaced it."""
    commit_oid: str | None = None
    commit_url: str | None = None
    url: str | None = None


def scrub_token(text: str, token: str | None) -> str:
    """``text`` without the token, any ``hf_...`` token-like string or Authorization header value."""
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_LIKE.sub("hf_***", text))


@contextlib.contextmanager
def _hub_call(action: str, token: str | None) -> Iterator[None]:
    """Turn any client or HTTP error into a PublishError whose message cannot leak the token."""
    try:
        yield
    except PrefkitError:
        raise
    except Exception as exc:  # the client raises many types; all become one scrubbed message
        message = scrub_token(f"{type(exc).__name__}: {exc}", token)
        # `from None`: the original exception (whose text may hold the token) is not chained.
        raise PublishError(f"{action} failed: {message}") from None


def resolve_token(token: str | None) -> str:
    """The token to use: the argument, else ``HF_TOKEN``, else the login cache."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()  # HF_TOKEN first, then the token file written by `hf auth login`
    if not found:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` first")
    return found


def merge_card(remote_text: str, local_text: str) -> tuple[str, list[str]]:
    """Our card with the remote card's metadata merged in: (text, remote keys kept).

    Keys we set win (tags are unioned, ours first); the remote's other keys are kept, except ``DATA_KEYS``,
    which describe the remote's old data files; the prose is ours.
    Raises ``PublishError`` if the remote card's metadata cannot be parsed.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    try:
        remote = DatasetCard(remote_text).data.to_dict()
    except Exception as exc:
        raise PublishError(f"the repo's README.md has metadata that cannot be parsed ({exc}); fix it on the "
                           "Hub, or pass --force to replace it") from None
    card = DatasetCard(local_text)
    ours = card.data.to_dict()
    remote = {k: v for k, v in remote.items() if k not in DATA_KEYS}
    merged = {**remote, **ours}
    if isinstance(remote.get("tags"), list):
        merged["tags"] = list(dict.fromkeys([*ours.get("tags", []), *remote["tags"]]))
    card.data = DatasetCardData(**merged)
    return str(card), sorted(set(remote) - set(ours))


def _check_inputs(local_dir: Path, repo_id: str) -> dict[str, Any]:
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise InputError(f"repo id {repo_id!r} must be 'owner/name' (letters, digits, '_', '.', '-')",
                         field="repo_id")
    if not local_dir.is_dir():
        raise InputError("dataset folder not found", path=local_dir)
    manifest = read_dataset_manifest(local_dir)
    if manifest is None or not (local_dir / CARD_FILE).is_file():
        raise InputError(f"not a prefkit dataset folder: {CARD_FILE} and {MANIFEST_FILE} are required "
                         "(write it with prefkit build or write_dataset_dir)", path=local_dir)
    return manifest


def _remote_text(api: Any, repo_id: str, filename: str, revision: str, cache: Path) -> str:
    path = api.hf_hub_download(repo_id, filename, repo_type=REPO_TYPE, revision=revision, cache_dir=cache)
    return Path(path).read_text(encoding="utf-8")


def _ensure_repo(api: Any, repo_id: str, *, private: bool, branch: str) -> tuple[bool, bool, str]:
    """Create the repo (and branch) if absent; returns (existed before, private now, url)."""
    existed = api.repo_exists(repo_id, repo_type=REPO_TYPE)
    # private=None (not False) leaves a new repo to the owner's default visibility.
    url = str(api.create_repo(repo_id, repo_type=REPO_TYPE, private=True if private else None, exist_ok=True))
    is_private = bool(api.repo_info(repo_id, repo_type=REPO_TYPE).private)
    if existed and private and not is_private:  # only ever towards private
        api.update_repo_settings(repo_id, repo_type=REPO_TYPE, private=True)
        is_private = True
    if branch != "main":
        api.create_branch(repo_id, repo_type=REPO_TYPE, branch=branch, exist_ok=True)
    return existed, is_private, url


def _different_dataset(api: Any, repo_id: str, branch: str, remote_files: set[str], fingerprint: str,
                       cache: Path) -> str | None:
    """Why the repo holds a different dataset (rule 5 of the module docstring), or None if it does not."""
    if MANIFEST_FILE in remote_files:
        try:
            remote = json.loads(_remote_text(api, repo_id, MANIFEST_FILE, branch, cache))
        except ValueError:  # unreadable: it cannot prove the repo holds our dataset
            remote = None
        theirs = remote.get("fingerprint") if isinstance(remote, dict) else None
        if theirs == fingerprint:
            return None
        return f"its {MANIFEST_FILE} fingerprint {str(theirs)[:12]} is not ours ({fingerprint[:12]})"
    foreign = sorted(remote_files - UNMANAGED_OK)
    return f"it holds files prefkit did not write (e.g. {', '.join(foreign[:3])})" if foreign else None


def publish_dataset(local_dir: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                    force: bool = False, dry_run: bool = False, token: str | None = None,
                    endpoint: str | None = None) -> PublishResult:
    """Upload the dataset folder ``local_dir`` to the dataset repo ``repo_id`` in one commit.

    Args:
        local_dir: a folder written by ``write_dataset_dir``.
        repo_id: ``owner/name``.
        private: create the repo private (or make an existing public one private).
        revision: the branch to commit to (created from ``main`` if absent); default ``main``.
        force: replace a repo that holds a different dataset (and a card whose metadata cannot be parsed).
        dry_run: only list what would be uploaded; no token and no network needed.
        token: a Hub token; default ``HF_TOKEN``, then the login cache.
        endpoint: the Hub's URL; default ``HF_ENDPOINT`` or huggingface.co.

    Raises:
        InputError: a bad folder or repo id.
        PublishError: no token, a different dataset in the repo (without ``force``), or a Hub error.

    Example: ``publish_dataset(Path("out"), "me/agent-pairs", private=True).commit_url``.
    """
    local_dir = Path(local_dir)
    manifest = _check_inputs(local_dir, repo_id)
    branch = revision or "main"
    files = hub_files(local_dir)
    if dry_run:
        return PublishResult(repo_id=repo_id, revision=branch, dry_run=True, uploaded=tuple(files))

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    token = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token)
    fingerprint = manifest["fingerprint"]
    with _hub_call(f"publishing to {repo_id}", token), tempfile.TemporaryDirectory() as tmp:
        existed, is_private, url = _ensure_repo(api, repo_id, private=private, branch=branch)
        remote_files = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch))
        why = _different_dataset(api, repo_id, branch, remote_files, fingerprint, Path(tmp))
        if why and not force:
            raise PublishError(f"{repo_id} already holds a different dataset: {why}. "
                               "Pass --force to replace it, or publish to another repo id")

        card_bytes, kept = (local_dir / CARD_FILE).read_bytes(), []
        if CARD_FILE in remote_files:
            try:
                text, kept = merge_card(_remote_text(api, repo_id, CARD_FILE, branch, Path(tmp)),
                                        card_bytes.decode("utf-8"))
                card_bytes = text.encode("utf-8")
            except PublishError:
                if not force:
                    raise

        stale = sorted(p for p in remote_files - set(files) if "/" in p and p.split("/", 1)[0] in MANAGED_DIRS)
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=path,
                               path_or_fileobj=card_bytes if path == CARD_FILE else str(local_dir / path))
            for path in files
        ] + [CommitOperationDelete(path_in_repo=p) for p in stale]
        commit = api.create_commit(
            repo_id, operations=operations, repo_type=REPO_TYPE, revision=branch,
            commit_message=f"prefkit: publish dataset {fingerprint[:12]}",
            commit_description=f"{len(files)} files from prefkit {manifest.get('prefkit_version', '?')}; "
                               f"{len(stale)} stale files removed.",
        )
    return PublishResult(
        repo_id=repo_id, revision=branch, dry_run=False, uploaded=tuple(files), deleted=tuple(stale),
        kept_card_keys=tuple(kept), created=not existed, private=is_private, replaced_other=why is not None,
        commit_oid=commit.oid, commit_url=commit.commit_url, url=url,
    )
