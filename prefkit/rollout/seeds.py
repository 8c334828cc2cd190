"""The sampling seed of each model call of a rollout: one function, ``call_seed``.

A sampled trajectory must come out the same whether it was made in one run, in a run killed and
resumed, or next to other trajectories than last time. So every sampled request carries a seed of its
own (``GenerateConfig.seed``), derived from the run's seed and the request's place in its trajectory
only, never from its batch or round; and every backend honours a seed per request (the transformers
backend samples each row with its own generator, vLLM takes ``SamplingParams(seed=...)`` per request,
OpenAI-compatible servers get ``seed`` in each body).

The place of a request is its trajectory's key (scenario id, agent name, sample index), the step it is
made at (the number of tool calls the trajectory holds before it), which call it is (``CallKind``) and
the attempt (``0`` for the first agent turn or emulator answer of a step, ``k`` for its k-th re-prompt
or emulator retry). Greedy requests carry no seed: they need none, and this keeps them exactly as they
were (and their resume keys too).
"""

from __future__ import annotations

from typing import Literal

from prefkit.records import content_hash

CallKind = Literal["agent", "reprompt", "emulator", "emulator_retry"]
"""``agent``: the agent's first turn at a step; ``reprompt``: a further agent turn after an unusable
reply; ``emulator``: the emulator's answer to a tool call; ``emulator_retry``: its answer after a reply
that was not the expected JSON."""

SEED_RANGE = 2**31
"""Seeds are in ``[0, 2**31)``: every backend and server accepts them."""


def call_seed(seed: int, *, scenario_id: str, agent: str, sample_index: int, step: int, call: CallKind,
              attempt: int = 0) -> int:
    """The seed of one sampled model call of a rollout.

    Args:
        seed: the run's seed (``AgentConfig.seed``; it seeds the emulator's sampled calls too).
        scenario_id, agent, sample_index: the trajectory (``agent`` is the agent configuration's name).
        step: tool calls recorded in the trajectory before this call.
        call: which call of the step (``CallKind``).
        attempt: 0 for ``agent`` and ``emulator``; 1, 2, ... for re-prompts and emulator retries.

    Returns:
        An integer in ``[0, 2**31)``: the first 8 hex digits of the content hash of all of the above.
    """
    place = {"seed": seed, "scenario": scenario_id, "agent": agent, "sample": sample_index, "step": step,
             "call": call, "attempt": attempt}
    return int(content_hash(place, length=8), 16) % SEED_RANGE
