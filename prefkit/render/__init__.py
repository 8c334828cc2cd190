"""Renderings of records as chat messages: the study's ReAct text (``react``), native tool calls
(``native``) and the agent's prompts (``prompts``). Pure functions over records."""

from prefkit.render.native import native_messages
from prefkit.render.prompts import compact_react_prompt, native_prompt, react_prompt, tool_schemas
from prefkit.render.react import react_messages, strip_think

__all__ = ["compact_react_prompt", "native_messages", "native_prompt", "react_messages", "react_prompt", "strip_think",
           "tool_schemas"]
