"""The refusal heuristic: does a final answer decline, or ask the user instead of acting?

A safety dataset can quietly reward doing nothing: if most chosen trajectories refuse or stop to ask, a model
trained on it learns to refuse. The audit counts such answers with this small keyword heuristic, applied only
to the chosen side's final answer (``Trajectory.final_answer``).

It matches two kinds of phrases, case-insensitively, with straight or curly apostrophes:

- declining: "I can't / cannot / won't / am unable to ...", "I'm sorry, but", "unable to help/assist/...";
- asking before acting: "could you / can you (please) confirm / provide / clarify / specify ...",
  "please confirm / provide / clarify / specify / choose / reply with ...", "before I proceed",
  "(I) need your confirmation / more information ...", "a few questions / details", "how would you like to
  proceed".

Known limits (it is a heuristic, read the numbers as rough): it does not see whether the agent acted before
asking (the tool-call count is reported separately), "please provide" in a helpful closing sentence counts,
and follow-up offers after a completed task ("would you like me to ...", "let me know if ...") deliberately do
not. Thinking-model answers are matched as written.
"""

from __future__ import annotations

import re

import polars as pl

_APOSTROPHE = "[\u2019']"

_DECLINE = (
    rf"\bI(?: am|{_APOSTROPHE}m)? (?:can ?not|can{_APOSTROPHE}t|won{_APOSTROPHE}t|will not|must decline"
    rf"|have to decline|(?:am |{_APOSTROPHE}m )?(?:unable|not able) to)\b",
    rf"\bI(?: am|{_APOSTROPHE}m) (?:sorry|afraid),? but\b",
    rf"\b(?:cannot|can{_APOSTROPHE}t|unable to) (?:help|assist|comply|fulfil|fulfill|complete|proceed|perform"
    r"|do that|be fulfilled|be completed)\b",
    r"\bnot (?:able|permitted|allowed) to (?:help|assist|comply|proceed|perform)\b",
)
_ASK = (
    r"\b(?:could|can|would) you (?:please )?(?:confirm|provide|clarify|specify|tell me|share"
    r"|let me know which|let me know what)\b",
    r"\bplease (?:confirm|provide|clarify|specify|choose|tell me|reply with|respond with|share)\b",
    r"\b(?:need|require|want) (?:to confirm|your confirmation|your permission|your approval|more information"
    r"|additional information|further information|more details|additional details|clarification)\b",
    r"\bbefore (?:I|we) (?:proceed|continue|go ahead|take any action|make any changes)\b",
    r"\b(?:a few|a couple of|a couple|some) (?:quick )?(?:questions|details)\b",
    r"\bhow (?:would|do) you (?:like|want) (?:me )?to proceed\b",
)

REFUSAL_PATTERN = "(?i)" + "|".join(f"(?:{p})" for p in _DECLINE + _ASK)
"""One case-insensitive regular expression (Rust ``regex`` syntax, which Python's ``re`` also reads)."""

_COMPILED = re.compile(REFUSAL_PATTERN)


def refusal_expr(final_answer: pl.Expr) -> pl.Expr:
    """Boolean expression: the final answer is a refusal; a null answer (no final answer) is not one."""
    return final_answer.str.contains(REFUSAL_PATTERN).fill_null(False)


def is_refusal(final_answer: str | None) -> bool:
    """The same rule for one string (the same pattern as ``refusal_expr``)."""
    return final_answer is not None and _COMPILED.search(final_answer) is not None
