"""Model backends: one small interface (``Backend.generate(requests)``) over three implementations.

Usage::

    from prefkit.backends import ChatRequest, GenerateConfig, create_backend, generate_sync
    from prefkit.records import Message

    backend = create_backend("Qwen/Qwen2.5-7B-Instruct@vllm")          # or PATH@transformers, NAME@openai
    request = ChatRequest(messages=(Message(role="user", content="Hi"),), config=GenerateConfig(max_tokens=64))
    [[completion]] = generate_sync(backend, [request])

This package imports nothing of prefkit but ``prefkit.records``, ``prefkit.errors`` and ``prefkit.text``; torch,
transformers and vllm are imported only when a backend that needs them is made.
"""

from prefkit.backends.base import (
    FEATURES,
    Backend,
    BackendError,
    ChatRequest,
    Completion,
    Feature,
    GenerateConfig,
    TokenLogprob,
    TopLogprob,
    chat_template_text,
    generate_sync,
    message_dicts,
    parse_tool_calls,
)
from prefkit.backends.registry import (
    backend_names,
    check_model_spec,
    create_backend,
    parse_model_spec,
    register_backend,
)
from prefkit.tool_calls import ToolCallExtraction, extract_tool_calls

__all__ = [
    "FEATURES",
    "Backend",
    "BackendError",
    "ChatRequest",
    "Completion",
    "Feature",
    "GenerateConfig",
    "TokenLogprob",
    "ToolCallExtraction",
    "TopLogprob",
    "backend_names",
    "chat_template_text",
    "check_model_spec",
    "create_backend",
    "extract_tool_calls",
    "generate_sync",
    "message_dicts",
    "parse_model_spec",
    "parse_tool_calls",
    "register_backend",
]
