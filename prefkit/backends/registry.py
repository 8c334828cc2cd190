"""Backends by name: ``MODEL@backend`` specs and the factories that build them.

A factory checks that its optional dependencies are installed (with an install hint when not) and
imports its backend module only then, so ``prefkit.backends`` imports with none of them present.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefkit.backends.base import Backend
from prefkit.errors import InputError

BackendFactory = Callable[..., Backend]
"""``factory(model, **options) -> Backend``."""

_FACTORIES: dict[str, BackendFactory] = {}

SPEC_FORMS = "MODEL@transformers (a local folder or cached Hub id), MODEL@openai (a served model name), MODEL@vllm"


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: register ``factory`` under ``name`` (the part after ``@`` in a spec)."""

    def register(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory

    return register


def backend_names() -> tuple[str, ...]:
    """The registered backend names, sorted."""
    return tuple(sorted(_FACTORIES))


def split_model_spec(spec: str, *, field: str = "model") -> tuple[str, str]:
    """``"Qwen/Qwen2.5-7B-Instruct@vllm"`` -> ``("Qwen/Qwen2.5-7B-Instruct", "vllm")`` without asking whether
    the backend is registered (for naming records made with injected backends); ``parse_model_spec`` checks.

    Raises:
        InputError: a spec without ``@``, or with an empty model or backend (naming ``field``).
    """
    model, sep, backend = str(spec).strip().rpartition("@")
    if not sep or not model or not backend:
        raise InputError(f"model spec {spec!r} must be MODEL@BACKEND, e.g. {SPEC_FORMS}", field=field)
    return model, backend


def parse_model_spec(spec: str, *, field: str = "model") -> tuple[str, str]:
    """``"Qwen/Qwen2.5-7B-Instruct@vllm"`` -> ``("Qwen/Qwen2.5-7B-Instruct", "vllm")``: the one parser of
    ``MODEL@backend`` specs (rollout agents and emulators, judges, ``prefkit eval``).

    The backend is what follows the last ``@`` (a model name may hold ``@`` itself). Raises ``InputError``
    (naming ``field``) for a spec without a backend, an empty model, or a backend that is not registered.
    """
    model, backend = split_model_spec(spec, field=field)
    if backend not in _FACTORIES:
        near = difflib.get_close_matches(backend, backend_names(), n=1)
        hint = f"; did you mean {model}@{near[0]}?" if near else ""
        raise InputError(f"unknown backend {backend!r} in model spec {spec!r} (known backends: "
                         f"{', '.join(backend_names())}){hint}", field=field)
    return model, backend


def check_model_spec(spec: str, options: Mapping[str, Any] | None = None, *, field: str = "model",
                     options_field: str | None = None) -> tuple[str, str]:
    """Everything about a model spec that can be checked before any model is loaded, without the network:
    the spec's form and backend (``parse_model_spec``), the backend's packages, its options' names, and
    the model's files for backends that load weights here (``transformers``, ``vllm``): a local folder
    must exist; a Hub id must be in the local cache when the Hub is off (``HF_HUB_OFFLINE=1``), looked
    up with ``huggingface_hub.try_to_load_from_cache`` (online it is left to the backend, so validation
    never waits on the network). Returns ``(model, backend)``.

    Raises:
        InputError: naming ``field`` (the spec) or ``options_field`` (an unknown option).
    """
    model, backend = parse_model_spec(spec, field=field)
    entry = _CHECKS.get(backend)
    if entry is None:
        return model, backend
    packages, constructor, loads_weights = entry
    for module, extra in packages:
        _require(module, backend, extra, field=field)
    if options:
        _check_options(constructor(), options, backend=backend, field=options_field or f"{field} options")
    if loads_weights:
        check_model_files(model, field=field)
    return model, backend


def check_model_files(model: str, *, field: str = "model", what: str = "model") -> None:
    """``model`` (a packaged alias, a local folder or a Hub id) can be loaded on this machine without
    waiting on the network (see ``check_model_spec``; ``what="tokenizer"`` for a tokenizer).

    Raises:
        InputError: a missing packaged model, a missing folder, or (offline) a Hub id not in the local cache.
    """
    from prefkit.backends.local_models import PACKAGED_MODELS, packaged_model_problem

    if model.lower() in PACKAGED_MODELS:
        problem = packaged_model_problem(model)
        if problem:
            raise InputError(problem, field=field)
        return
    folder = Path(model).expanduser()
    if folder.is_dir():
        return
    if folder.exists():
        raise InputError(f"{what} {model!r} is a file; give the {what}'s folder", field=field)
    if not _HUB_ID.fullmatch(model):  # a path, not a Hub id: nothing else could load it
        raise InputError(f"{what} folder not found: {model}", field=field)
    if not hub_offline():
        return  # the backend fetches it (or fails naming it); validation never waits on the network
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json" if what == "model" else "tokenizer_config.json")
    except Exception:  # an id the Hub would reject is not in the cache either
        cached = None
    if not isinstance(cached, str):
        raise InputError(f"{what} {model!r} is neither a local folder nor in the local Hugging Face cache, and "
                         "the Hub is off (HF_HUB_OFFLINE=1): give a folder, or download it first with "
                         f"`hf download {model}` where the network is reachable", field=field)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
"""What can only be a Hub repo id (``name`` or ``org/name``), not a path: no leading ``/``, ``.`` or ``~``."""


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set true), read
    from the environment now (huggingface_hub reads it once, at import)."""
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _check_options(constructor: Callable[..., Any], options: Mapping[str, Any], *, backend: str, field: str) -> None:
    params = inspect.signature(constructor).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # e.g. vllm: every vllm.LLM keyword is an option
    known = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise InputError(f"unknown {backend} backend option {key!r} (known: {', '.join(known)}){hint}",
                             field=f"{field}.{key}" if field.endswith("options") else field)


def create_backend(spec: str, **options: Any) -> Backend:
    """Build the backend a ``MODEL@backend`` spec names; ``options`` go to that backend's constructor.

    Example: ``create_backend("gpt-5-mini@openai", max_concurrency=16)``.
    """
    model, backend = parse_model_spec(spec)
    return _FACTORIES[backend](model, **options)


def _require(module: str, backend: str, extra: str, *, field: str = "model") -> None:
    if importlib.util.find_spec(module) is None:
        raise InputError(f"the {backend} backend needs the '{module}' package, which is not installed; "
                         f'install it with: pip install "prefkit[{extra}]"', field=field)


def _transformers_class() -> Callable[..., Any]:
    from prefkit.backends.transformers_backend import TransformersBackend

    return TransformersBackend


def _openai_class() -> Callable[..., Any]:
    from prefkit.backends.openai_backend import OpenAIBackend

    return OpenAIBackend


def _vllm_class() -> Callable[..., Any]:
    from prefkit.backends.vllm_backend import VLLMBackend

    return VLLMBackend


_CHECKS: dict[str, tuple[tuple[tuple[str, str], ...], Callable[[], Callable[..., Any]], bool]] = {
    "transformers": ((("torch", "train"), ("transformers", "train")), _transformers_class, True),
    "openai": ((), _openai_class, False),
    "vllm": ((("vllm", "vllm"),), _vllm_class, True),
}
"""What ``check_model_spec`` checks per built-in backend: (module, extra) it needs, its class (whose
keyword-only constructor arguments are its options), whether it loads the model's weights here."""


@register_backend("transformers")
def _transformers(model: str, **options: Any) -> Backend:
    _require("torch", "transformers", "train")
    _require("transformers", "transformers", "train")
    from prefkit.backends.local_models import resolve_local_model
    from prefkit.backends.transformers_backend import TransformersBackend

    try:
        backend = TransformersBackend(resolve_local_model(model), **options)
    except OSError as exc:  # transformers' "not a folder, not on the Hub" (after its own retries online)
        raise InputError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}", field="model") from exc
    backend.model = model  # the alias, not the cache folder, is the model's identity in records
    return backend


@register_backend("openai")
def _openai(model: str, **options: Any) -> Backend:
    from prefkit.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(model, **options)


@register_backend("vllm")
def _vllm(model: str, **options: Any) -> Backend:
    _require("vllm", "vllm", "vllm")
    from prefkit.backends.vllm_backend import VLLMBackend

    return VLLMBackend(model, **options)


def parse_backend_options(options: Sequence[str], *, field: str) -> dict[str, Any]:
    """``["batch_size=16", "base_url=http://..."]`` -> ``{"batch_size": 16, "base_url": "http://..."}``:
    command-line backend options; values are read as JSON when they parse (numbers, booleans, objects),
    else kept as text.

    Raises:
        InputError: an option that is not ``KEY=VALUE`` (naming ``field``).
    """
    import json

    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise InputError(f"backend option {option!r} is not KEY=VALUE", field=field)
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed
