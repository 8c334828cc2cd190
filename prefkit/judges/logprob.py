"""Logprob judging: the judge answers with one score digit, and the probabilities it gives the digits
0-3 make the judgment.

The distribution is read at the first generated position where any of the digits appears (as the
token itself or among the top alternatives; a leading space or markdown token is skipped that way).
Tokens that decode to the same digit (``2`` and `` 2``) are pooled, and the digits' probabilities are
renormalised to sum to 1. Every distinct token counts once: tokens are told apart by identity, never by
decoded text (``_position_candidates``), so no probability mass is lost when two tokens look alike.
The stored score is the expected score rounded half up, so even a small judge that never writes a clean
answer gives a usable, calibrated score; the distribution is stored with it.

On a backend that ``supports("prefill")`` the judge's answer is begun for it (``PREFILL``, continued with
``ChatRequest.continue_final_message``), so the very first generated token is the score: without it a small
judge tends to open with prose, and the digits then get only the little probability they hold among the
first token's alternatives. The judgment's ``rubric_version`` says which way it was asked (``/logprob`` or
``/logprob+prefill``).

Status: ``ok`` when the judge's own token was a digit, ``repaired`` when the digit came only from the
alternatives (the reason gives the probability mass the digits held), ``failed`` when no digit appears.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from prefkit.backends.base import Completion, TokenLogprob, TopLogprob
from prefkit.judges.parse import ParsedAnswer

DIGITS = ("0", "1", "2", "3")

PREFILL = "Score: "
"""The start of the judge's answer on prefill backends. It ends with the space, because most tokenizers
(Llama 3, Qwen, SmolLM2) write a digit as its own token after a separate space token."""


def _is_generated(position: TokenLogprob, alternative: TopLogprob) -> bool:
    """Whether an alternative is the generated token's own entry: same text AND same log probability
    (backends report both from the same number, so they match exactly; the tolerance only absorbs a
    float round trip through text)."""
    return alternative.token == position.token and math.isclose(alternative.logprob, position.logprob,
                                                                 rel_tol=1e-9, abs_tol=1e-9)


def _position_candidates(position: TokenLogprob) -> list[tuple[str, float]]:
    """Every distinct token of one position, once, as ``(text, logprob)``.

    Tokens are told apart by identity, never by their decoded text: two different tokens may decode
    to the same text (SentencePiece's word-initial ``"▁2"`` and the plain ``"2"`` both show as ``"2"``
    on some servers), and both carry probability. The top list holds distinct tokens, so when it
    contains the generated token it is used alone; otherwise (the token was sampled from outside the
    top ``k``, or no alternatives were asked for) the generated token is added to it.
    """
    top = [(t.token, t.logprob) for t in position.top]
    if any(_is_generated(position, t) for t in position.top):
        return top
    return [(position.token, position.logprob), *top]


def _digit_mass(position: TokenLogprob) -> tuple[list[float], bool]:
    """Probability per digit at one position (from the token and its alternatives), and whether the
    generated token itself is a digit."""
    mass = [0.0] * len(DIGITS)
    for token, logprob in _position_candidates(position):
        digit = token.strip()
        if digit in DIGITS:
            mass[DIGITS.index(digit)] += math.exp(logprob)
    return mass, position.token.strip() in DIGITS


def score_distribution(logprobs: Sequence[TokenLogprob] | None) -> tuple[tuple[float, ...] | None, bool, float]:
    """(distribution over 0-3 or ``None``, whether the judge wrote a digit, the digits' raw mass)."""
    for position in logprobs or ():
        mass, chosen = _digit_mass(position)
        total = sum(mass)
        if total > 0:
            return tuple(m / total for m in mass), chosen, total
    return None, False, 0.0


def expected_score(distribution: Sequence[float]) -> float:
    return sum(score * p for score, p in enumerate(distribution))


def score_from_distribution(distribution: Sequence[float]) -> int:
    """The expected score rounded half up (2.5 -> 3): the one rule that turns a distribution into a score."""
    return min(3, int(math.floor(expected_score(distribution) + 0.5)))


def parse_logprob_answer(completion: Completion) -> tuple[ParsedAnswer, tuple[float, ...] | None]:
    """The parsed answer and the score distribution of a logprob-judging completion."""
    distribution, chosen, mass = score_distribution(completion.logprobs)
    if distribution is None:
        reason = ("the backend returned no log probabilities" if not completion.logprobs
                  else "no score digit among the judge's token and its alternatives")
        return ParsedAnswer(score=None, parse_status="failed", reason=reason), None
    score = score_from_distribution(distribution)
    status = "ok" if chosen else "repaired"
    reason = None if chosen else (f"the judge did not write a digit; the digits held {mass:.3g} of the "
                                  "probability at that position")
    answer = ParsedAnswer(score=score, label=None, rationale=None, parse_status=status, reason=reason)
    return answer, distribution
