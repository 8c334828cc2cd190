"""Backends by name: ``MODEL@backend`` specs and the factories that build them.

A factory checks that its optional dependencies are installed (with an install hint when not) and
imports its backend module only then, so ``prefkit.backends`` imports with none of them present.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
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


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"Qwen/Qwen2.5-7B-Instruct@vllm"`` -> ``("Qwen/Qwen2.5-7B-Instruct", "vllm")``.

    The backend is what follows the last ``@``. Raises ``InputError`` for a spec without a backend, an
    empty model, or a backend that is not registered.
    """
    model, sep, backend = spec.strip().rpartition("@")
    if not sep or not model or not backend:
        raise InputError(f"model spec {spec!r} must be MODEL@BACKEND, e.g. {SPEC_FORMS}", field="model")
    if backend not in _FACTORIES:
        raise InputError(f"unknown backend {backend!r} in model spec {spec!r}; known backends: "
                         f"{', '.join(backend_names())}", field="model")
    return model, backend


def create_backend(spec: str, **options: Any) -> Backend:
    """Build the backend a ``MODEL@backend`` spec names; ``options`` go to that backend's constructor.

    Example: ``create_backend("gpt-5-mini@openai", max_concurrency=16)``.
    """
    model, backend = parse_model_spec(spec)
    return _FACTORIES[backend](model, **options)


def _require(module: str, backend: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise InputError(f"the {backend} backend needs the '{module}' package, which is not installed; "
                         f'install it with: pip install "prefkit[{extra}]"', field="model")


@register_backend("transformers")
def _transformers(model: str, **options: Any) -> Backend:
    _require("torch", "transformers", "train")
    _require("transformers", "transformers", "train")
    from prefkit.backends.local_models import resolve_local_model
    from prefkit.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(resolve_local_model(model), **options)
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
