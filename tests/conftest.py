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

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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
