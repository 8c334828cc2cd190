"""Run batches of chat requests through prefkit's in-process ``vllm`` backend; runs inside .venv-vllm.

tests/test_vllm_cpu.py cannot import vllm (it lives in its own venv, scripts/setup_vllm_cpu.sh), so it
writes the requests as JSON, runs this script once (one engine start, ~30 s, for all of them) and
asserts on the completions it writes back.

Usage::

    python tests/vllm_scripts/run_vllm_backend.py JOB_JSON OUT_JSON

JOB_JSON: ``{"model": DIR, "options": {...create_backend options...}, "batches": [[ChatRequest, ...], ...]}``;
each batch is one ``generate`` call, in order, on the same backend. OUT_JSON: ``{"name", "model",
"supports": {feature: bool}, "batches": [[[Completion, ...] per request] per batch]}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import sys
from pathlib import Path


def main(job_path: str, out_path: str) -> None:
    from prefkit.backends import FEATURES, ChatRequest, create_backend, generate_sync

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    batches = [[ChatRequest.model_validate(r) for r in batch] for batch in job["batches"]]
    backend = create_backend(f"{job['model']}@vllm", **job.get("options", {}))
    try:
        results = [generate_sync(backend, batch) for batch in batches]
        out = {
            "name": backend.name,
            "model": backend.model,
            "supports": {feature: backend.supports(feature) for feature in FEATURES},
            "batches": [[[c.model_dump(mode="json") for c in choices] for choices in result] for result in results],
        }
    finally:
        backend.close()
    Path(out_path).write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":  # vLLM starts worker processes: the guard keeps them from re-running this
    main(*sys.argv[1:3])
