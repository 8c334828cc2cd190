"""Session fixtures shared by the whole suite: the reference data, one import of it, the tiny model.

The reference data lives outside the repository, in ``<repo>/../shared`` (CI always has it). A test
that needs it skips with a clear reason only when that folder is absent; it is never copied in.
Expensive things (the raw_q32 import, the tiny model, pair folders) are built once per session, in
pytest's temporary directory, and only when a test asks for them.
"""

from __future__ import annotations

import os

# Tests never reach the Hugging Face Hub; set before anything imports transformers or datasets.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import atexit
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Each session gets its own `datasets` cache (removed at exit; nothing here imports datasets before this),
# so no test reads rows that another session or a user's earlier build left under the same folder name
# (huggingface/datasets #2956).
_DATASETS_CACHE = tempfile.mkdtemp(prefix="prefkit-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # so tests and benchmarks can `import tiny_model`
    sys.path.insert(0, str(TESTS))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"reference data missing: {what} not found at {path} (CI provides ../shared)")
    return path


# Reference data -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared``: the reference data and docs (skips the test if absent)."""
    return _need((REPO.parent / "shared").resolve(), "the shared folder")


@pytest.fixture(scope="session")
def raw_q32_dir(shared_dir: Path) -> Path:
    """The study's judged trajectories: 8 agent folders x 144 ToolEmu cases, judge Qwen3-32B."""
    return _need(shared_dir / "data" / "paper" / "raw_q32", "paper/raw_q32")


@pytest.fixture(scope="session")
def toolemu_cases_path(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "toolemu" / "all_cases.json", "toolemu/all_cases.json")


@pytest.fixture(scope="session")
def toolemu_toolkits_path(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "toolemu" / "all_toolkits.json", "toolemu/all_toolkits.json")


@pytest.fixture(scope="session")
def oracle_dir(shared_dir: Path) -> Path:
    """The pairs the study's own script produced from raw_q32 (keys only) and their counts."""
    return _need(shared_dir / "data" / "paper" / "oracle", "paper/oracle")


# Runs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def q32_run(tmp_path_factory: pytest.TempPathFactory, raw_q32_dir: Path, toolemu_cases_path: Path,
            toolemu_toolkits_path: Path):
    """A ``RunStore`` of raw_q32 imported once per session (treat it as read-only)."""
    from prefkit.sources.toolemu import import_toolemu_runs, write_toolemu_import

    result = import_toolemu_runs(raw_q32_dir, cases_path=toolemu_cases_path, toolkits_path=toolemu_toolkits_path)
    return write_toolemu_import(result, tmp_path_factory.mktemp("q32") / "run")


@pytest.fixture(scope="session")
def q32_pairs(tmp_path_factory: pytest.TempPathFactory, q32_run) -> Callable[..., Path]:
    """Factory of pair folders made from ``q32_run`` by the pairer, each built once per session.

    ``q32_pairs(strategy="safety", rendering="react", **options)`` returns a PAIRS folder holding
    ``pairs.parquet``, ``train.parquet``, ``test.parquet`` and ``pairing.json``; treat it as read-only.
    """
    made: dict[tuple, Path] = {}

    def make(strategy: str = "safety", rendering: str = "react", **options: object) -> Path:
        key = (strategy, rendering, tuple(sorted(options.items())))
        if key not in made:
            from prefkit.pairing import PairConfig, build_pairs, write_pairs

            config = PairConfig(strategy=strategy, rendering=rendering, **options)
            out = tmp_path_factory.mktemp(f"pairs-{strategy}-{rendering}") / "pairs"
            write_pairs(build_pairs(q32_run, config), q32_run, config, out)
            made[key] = out
        return made[key]

    return make


# Models -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny offline Qwen2-style model + tokenizer with TRL's qwen2_5 chat template (built once)."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def overfit_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model overfit so that greedy decoding is exact (see ``tiny_model.OVERFIT_CONVERSATIONS``).

    Built lazily (about 10 s) only for the tests that ask for it.
    """
    from tiny_model import build_overfit_tiny_model

    return build_overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("tiny-model-overfit") / "model")


# Model servers (prefkit.backends) -----------------------------------------------------------------


@pytest.fixture
def fake_openai():
    """A started ``fake_openai.FakeOpenAI`` loopback server (n, logprobs, scripted failures); its
    ``base_url`` goes to the openai backend: ``create_backend("fake@openai", base_url=server.base_url)``."""
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def transformers_serve_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base URL (``http://127.0.0.1:PORT/v1``) of a real ``transformers serve`` on loopback (CPU).

    Started once per session (about 7-15 s) and stopped at the end. It loads models on demand: the
    ``model`` of a request is a model folder, e.g. ``str(tiny_model_dir)`` or ``str(overfit_tiny_model_dir)``
    (``create_backend(f"{folder}@openai", base_url=url)``). It ignores ``n`` and returns no logprobs.
    """
    import socket
    import subprocess
    import time
    import urllib.request

    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        raise RuntimeError(f"`transformers serve` not found at {exe}: install the serve extra (pip install -e '.[serve]')")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("transformers-serve") / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve not ready after 120 s:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# Rollouts (prefkit.rollout) -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mini_suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-scenario suite the overfit agent model knows (``tiny_model_agent.write_mini_suite``)."""
    from tiny_model_agent import write_mini_suite

    return write_mini_suite(tmp_path_factory.mktemp("mini-suite"))


@pytest.fixture(scope="session")
def agent_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model overfit to play the agent and the emulator of ``tiny_model_agent``'s scripted
    rollouts (built once, about 20 s): greedy decoding reproduces the script exactly."""
    from tiny_model_agent import build_agent_model

    return build_agent_model(tmp_path_factory.mktemp("agent-model") / "model")


# Training (prefkit.train) -------------------------------------------------------------------------

TINY_DPO_KEPT = 8
"""Rows of each config that the tiny DPO dataset keeps; two longer rows per config are dropped for length."""


@pytest.fixture(scope="session")
def tiny_dpo_dataset(tmp_path_factory: pytest.TempPathFactory, q32_pairs, tiny_model_dir: Path):
    """A few dozen real pairs in ``prefkit build``'s layout (``data/<config>/<split>-00000-of-00001.parquet``)
    for CPU training: per config (safety, helpfulness) the train rows that are shortest in the tiny
    tokenizer's tokens (the study's rows are 2k-33k of them), and a few test rows.

    Returns ``(folder, max_length)``: with that ``max_length`` each config keeps ``TINY_DPO_KEPT`` train rows
    and drops the two longest for length.
    """
    from prefkit.pairing.rows import load_pair_rows
    from prefkit.pairing.validate import TRL_KEYS, validate_pair_rows
    from prefkit.publish.layout import shard_path

    def chars(row: dict) -> int:  # a cheap stand-in for tokens, to choose what to tokenize
        return sum(len(m["content"]) for key in TRL_KEYS for m in row[key])

    folder = tmp_path_factory.mktemp("tiny-dpo") / "dataset"
    candidates, counts = {}, {}
    for config in ("safety", "helpfulness"):
        rows = load_pair_rows(q32_pairs(strategy=config) / "train.parquet")
        shortest = sorted(range(len(rows)), key=lambda i: chars(rows[i]))[: TINY_DPO_KEPT * 3]
        candidates[config] = rows.select(sorted(shortest))
        counts[config] = validate_pair_rows(candidates[config], tokenizer=tiny_model_dir, max_length=1 << 20).row_tokens
    # One max_length for both configs: each keeps its KEPT shortest rows and drops the next two.
    max_length = max(sorted(c)[TINY_DPO_KEPT - 1] for c in counts.values())
    for config, rows in candidates.items():
        order = sorted(range(len(rows)), key=counts[config].__getitem__)
        kept = [i for i in order if counts[config][i] <= max_length][:TINY_DPO_KEPT]
        dropped = [i for i in order if counts[config][i] > max_length][:2]
        assert len(kept) == TINY_DPO_KEPT and len(dropped) == 2, (config, sorted(counts[config]), max_length)
        splits = {"train": rows.select(sorted(kept + dropped))}
        test = load_pair_rows(q32_pairs(strategy=config) / "test.parquet")
        splits["test"] = test.select(sorted(range(len(test)), key=lambda i: chars(test[i]))[:4])
        for split, data in splits.items():
            target = folder / shard_path(config, split)
            target.parent.mkdir(parents=True, exist_ok=True)
            data.to_parquet(str(target))
    return folder, max_length


@pytest.fixture(scope="session")
def tiny_train_overrides(tiny_model_dir: Path, tiny_dpo_dataset) -> list[str]:
    """``--set`` overrides that run a bundled study recipe on the tiny model and ``tiny_dpo_dataset`` on CPU.

    The learning rate is raised (the study's 5e-5 barely moves a random 100k-parameter model in a few
    steps), warmup is off (in a run of 2 steps, a warmup step has learning rate 0) and the accumulation
    is lowered to 4, so 2 steps are one epoch over the 8 kept pairs.
    """
    folder, max_length = tiny_dpo_dataset
    return [f"source_model={tiny_model_dir}", "source_nick=tiny", f"dataset={folder}", f"max_length={max_length}",
            "learning_rate=2e-3", "warmup_ratio=0", "gradient_accumulation_steps=4", "logging_steps=1"]


@pytest.fixture(scope="session")
def tiny_safety_model(tmp_path_factory: pytest.TempPathFactory, tiny_train_overrides: list[str]):
    """``recipes/train/safe.yaml`` trained on the tiny model and ``tiny_dpo_dataset`` for one epoch (2 steps):
    the ``TrainResult`` (its folder holds ``stages/1-safe/adapter``, ``model/`` and ``train.json``)."""
    from prefkit.train import load_train_recipe, train

    recipe = load_train_recipe(REPO / "recipes" / "train" / "safe.yaml", tiny_train_overrides)
    return train(recipe, out=tmp_path_factory.mktemp("tiny-train"), max_steps=2)
