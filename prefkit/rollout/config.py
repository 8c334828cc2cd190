"""The settings of a rollout: who plays the agent, who plays the tools, and the limits of a run.

One frozen model per part (``AgentConfig``, ``EmulatorConfig``, ``RolloutLimits``) gathered in
``RolloutConfig``; the loop takes the whole config and reads from it. Defaults are the study's
(paper-reference §3.1-3.2): greedy decoding, an 8,000-token agent budget, 2,048 tokens per agent
call, 5 re-prompts for unparseable agent output, no step cap, the adversarial emulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefkit.errors import InputError
from prefkit.records import AgentIdentity, PromptFormat, SamplingParams

EmulatorMode = Literal["adversarial", "standard"]
PromptStyle = Literal["full", "compact"]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def split_spec(spec: str) -> tuple[str, str]:
    """``"MODEL@backend"`` -> ``(model, backend)`` for naming records (``prefkit.backends.registry``'s one
    spec parser; whether the backend exists is checked when backends are made)."""
    from prefkit.backends.registry import split_model_spec

    return split_model_spec(spec)


class AgentConfig(_Config):
    """The agent: a model spec, how its prompt is written, and how it samples."""

    model: str
    """``MODEL@backend``, e.g. ``Qwen/Qwen2.5-7B-Instruct@vllm`` or ``/path/to/tiny@transformers``."""
    name: str | None = None
    """Display name of the agent configuration in the records (default: the model part of the spec)."""
    prompt_format: PromptFormat = "react"
    """``react``: Thought/Action/Action Input text (any chat model, the study's way); ``native``: the
    chat template's tools and the backend's tool-call parsing."""
    prompt_style: PromptStyle = "full"
    """ReAct only. ``full``: the study-style prompt (every tool's arguments and returns, the rules).
    ``compact``: a short prompt with one worked example, for small models (under ~1B parameters) that lose
    the format in the full one. Either way the trajectories are stored alike, and the pairer's training
    rows show them after the study-style prompt."""
    temperature: float | None = 0.0
    top_p: float | None = None
    seed: int | None = None
    """Sampling seed (with ``temperature`` > 0; it also seeds a sampling emulator). Each sampled call gets
    its own seed derived from this one and its place in its trajectory (``prefkit.rollout.seeds``), so
    a run killed and resumed, or rolled out in other batches, makes the same trajectories as an
    uninterrupted one (greedy decoding, the default, is reproducible either way)."""
    max_tokens: int = Field(default=2048, gt=0)
    """Most tokens one agent call may produce (the study: the HF pipeline's 2,048)."""
    stop_at_observation: bool = True
    """ReAct only: stop generating at a line starting ``Observation:``, so the agent cannot write the
    tool's answer itself (langchain's ReAct agent does the same)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Options of the backend (``create_backend(model, **options)``, e.g. ``batch_size``, ``base_url``);
    they do not change what is generated, so resume keys leave them out."""

    @model_validator(mode="after")
    def _compact_is_react(self) -> AgentConfig:
        if self.prompt_style != "full" and self.prompt_format != "react":
            raise ValueError(f"prompt_style {self.prompt_style!r} applies to the react format only")
        return self

    def identity(self) -> AgentIdentity:
        model, backend = split_spec(self.model)
        return AgentIdentity(
            name=self.name or model,
            model=model,
            backend=backend,
            sampling=SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                                    seed=self.seed),
            prompt_format=self.prompt_format,
        )


class EmulatorConfig(_Config):
    """The language model that plays the tools."""

    model: str
    """``MODEL@backend``; may be the same spec as the agent's (the model is then loaded once)."""
    mode: EmulatorMode = "adversarial"
    """``adversarial`` shows the emulator the scenario's underspecifications, risky outcomes and risky
    actions and asks it to stress-test the agent (the study's emulator); ``standard`` shows neither."""
    temperature: float | None = 0.0
    max_tokens: int = Field(default=1024, gt=0)
    retries: int = Field(default=2, ge=0)
    """Extra attempts after an answer that is not the expected JSON; then the observation is empty
    and the step is flagged ``empty_observation`` (as the study's emulator did on a parse failure)."""
    structured_output: bool = True
    """Ask for the JSON answer through the backend's structured output when it supports it."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Options of the backend, as for the agent (left out of resume keys)."""


class RolloutLimits(_Config):
    """When a rollout stops without a final answer."""

    max_steps: int | None = Field(default=None, gt=0)
    """Most tool calls per trajectory (the study: no cap; finish reason ``max_steps``)."""
    token_budget: int | None = Field(default=8000, gt=0)
    """Most agent output tokens over the whole trajectory (the study: 8,000; finish reason ``token_budget``)."""
    max_reprompts: int = Field(default=5, ge=0)
    """Re-prompts after agent output with neither a tool call nor a final answer (the study: 5); one
    more unparseable output ends the trajectory with finish reason ``error``."""

    @model_validator(mode="after")
    def _bounded(self) -> RolloutLimits:
        if self.max_steps is None and self.token_budget is None:
            raise ValueError("set max_steps or token_budget (or both): without either a rollout may never end")
        return self


class RolloutConfig(_Config):
    """Everything that decides what a rollout produces (and so its resume keys)."""

    agent: AgentConfig
    emulator: EmulatorConfig
    samples: int = Field(default=1, gt=0)
    """Trajectories per scenario (``Trajectory.sample_index`` 0..samples-1)."""
    limits: RolloutLimits = RolloutLimits()


def make_rollout_configs(*, agents: Sequence[str], **options: Any) -> list[RolloutConfig]:
    """One ``make_rollout_config(agent=spec, **options)`` per agent spec (``prefkit rollout`` with
    several ``--agent``)."""
    if not agents:
        raise InputError("give at least one agent (--agent MODEL@backend)", field="agent")
    return [make_rollout_config(agent=spec, **options) for spec in agents]


def make_rollout_config(*, agent: str, emulator: str, samples: int = 1, prompt_format: str = "react",
                        prompt_style: str = "full", mode: str = "adversarial", agent_name: str | None = None,
                        temperature: float | None = 0.0, seed: int | None = None, max_tokens: int = 2048,
                        max_steps: int | None = None, token_budget: int | None = 8000, max_reprompts: int = 5,
                        agent_options: Sequence[str] = (), emulator_options: Sequence[str] = ()) -> RolloutConfig:
    """A ``RolloutConfig`` from flat options (the CLI's); the emulator decodes greedily.

    Raises:
        InputError: a value the config rejects (the field is named) or a malformed backend option.
    """
    from prefkit.backends.registry import parse_backend_options

    try:
        return RolloutConfig(
            agent=AgentConfig(model=agent, name=agent_name, prompt_format=prompt_format,  # type: ignore[arg-type]
                              prompt_style=prompt_style, temperature=temperature,  # type: ignore[arg-type]
                              seed=seed, max_tokens=max_tokens,
                              options=parse_backend_options(agent_options, field="agent-option")),
            emulator=EmulatorConfig(model=emulator, mode=mode,  # type: ignore[arg-type]
                                    options=parse_backend_options(emulator_options, field="emulator-option")),
            samples=samples,
            limits=RolloutLimits(max_steps=max_steps, token_budget=token_budget, max_reprompts=max_reprompts),
        )
    except ValidationError as exc:
        from prefkit.errors import validation_input_error

        raise validation_input_error(exc, what="rollout") from None


class GenerateSource(_Config):
    """A build recipe's ``source`` section that generates the trajectories (``kind: generate``):
    every agent is rolled out on the suite with the one emulator, into the build's run folder.

    Example (YAML)::

        source:
          kind: generate
          suite: starter
          agents: [{model: Qwen/Qwen2.5-7B-Instruct@vllm}, {model: gpt-5-mini@openai, prompt_format: native}]
          emulator: {model: Qwen/Qwen3-8B@vllm}
          samples: 2
    """

    kind: Literal["generate"] = "generate"
    suite: str
    """A bundled suite name or a suite folder (see ``prefkit.rollout.suite``)."""
    scenarios: tuple[str, ...] | None = None
    """Only these scenario ids (default: all)."""
    agents: tuple[AgentConfig, ...] = Field(min_length=1)
    emulator: EmulatorConfig
    samples: int = Field(default=1, gt=0)
    limits: RolloutLimits = RolloutLimits()

    def rollout_configs(self) -> list[RolloutConfig]:
        return [RolloutConfig(agent=a, emulator=self.emulator, samples=self.samples, limits=self.limits)
                for a in self.agents]
