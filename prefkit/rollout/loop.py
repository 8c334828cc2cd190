"""The step-synchronous batched rollout loop.

Every live trajectory advances one step per round, and each round makes exactly:

1. one agent wave: every live trajectory's next agent request, sent as ONE ``agent.generate`` batch;
2. one emulator wave: every tool call of that wave that passed the schema check, sent as ONE
   ``emulator.generate`` batch (answers that do not parse are re-asked in a further emulator wave of
   the same round, at most ``EmulatorConfig.retries`` times).

There is no per-trajectory loop: a trajectory that is waiting (re-prompted, or its call was invalid)
simply joins the next round's agent wave. What each agent output leads to, in this order:

- the token budget is spent (``RolloutLimits.token_budget``, counted over the agent's completion
  tokens) -> finish ``token_budget``, the output kept as ``final_log``;
- a final answer -> finish ``final_answer``;
- a tool call -> checked against the tool's schema (``calls.check_call``); a bad call or unknown tool
  becomes a step with an error observation and the flag ``invalid_call``, without the emulator; a good
  one goes to the emulator wave;
- neither -> re-prompted (``RolloutLimits.max_reprompts``), then finish ``error``; the flags such a
  turn carries (``unparsed_tool_call``: tool-call markup that did not parse) go on the trajectory.

After a step is recorded, ``RolloutLimits.max_steps`` may end the trajectory (finish ``max_steps``).
Finished trajectories are handed to ``on_finish`` at the end of the wave that finished them, so a
caller can write them at once (``prefkit.rollout.resume``) and count them (``prefkit.rollout.run``
reports progress there, right after writing, so what it reports is what is kept).

Sampling: every sampled request carries its own seed, ``prefkit.rollout.seeds.call_seed`` of the
trajectory and the call, so a trajectory's samples never depend on its batch, its round or where a
killed run resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefkit.backends import Backend, ChatRequest, Completion, GenerateConfig, generate_sync
from prefkit.records import AgentIdentity, Message, Scenario, Step, Tool, Toolkit, Trajectory
from prefkit.render import native_messages, react_messages
from prefkit.render.prompts import scenario_toolkits
from prefkit.render.react import has_think
from prefkit.sources.toolemu_records import trajectory_flags as study_flags
from prefkit.text import clean_text, clean_value

from . import agent as agent_turns
from . import emulator as emulation
from .calls import check_call
from .config import RolloutConfig, split_spec
from .seeds import CallKind, call_seed


@dataclass(frozen=True)
class RolloutItem:
    """One trajectory to make: a scenario, a sample index, and the key its result is stored under."""

    key: str
    scenario: Scenario
    sample_index: int


OnFinish = Callable[[list[tuple[str, Trajectory]]], None]


@dataclass
class _Live:
    """A trajectory in the making."""

    item: RolloutItem
    tools: dict[str, Tool]
    prompt: tuple[Message, ...]
    schemas: tuple[dict, ...] | None
    steps: list[Step] = field(default_factory=list)
    retry: list[Message] = field(default_factory=list)
    """Re-prompt exchanges since the last step (unusable reply + reminder), shown to the agent."""
    reprompts: int = 0
    reprompted_ever: bool = False
    turn_flags: list[str] = field(default_factory=list)
    """Trajectory flags earned by agent turns the loop could not use (``Unparseable.flags``)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pending: agent_turns.ToolAction | None = None
    step_flags: list[str] = field(default_factory=list)
    emulator_retry: list[Message] = field(default_factory=list)
    emulator_attempts: int = 0
    done: Trajectory | None = None


def _completion_tokens(completion: Completion) -> int:
    if completion.completion_tokens is not None:
        return completion.completion_tokens
    return len(completion.text) // 4 + 1  # a server that reports no usage: about 4 characters a token


class RolloutLoop:
    """Runs ``items`` to completion with the given backends (see the module docstring).

    The loop only calls ``generate`` on the backends; it neither makes nor closes them. ``agent`` and
    ``emulator`` may be the same object.
    """

    def __init__(self, config: RolloutConfig, toolkits: Sequence[Toolkit], *, agent: Backend, emulator: Backend,
                 on_finish: OnFinish | None = None) -> None:
        self.config = config
        self.toolkits = tuple(toolkits)
        self.agent = agent
        self.emulator = emulator
        self.identity: AgentIdentity = config.agent.identity()
        self.emulator_name = emulation_name(config)
        self.on_finish = on_finish

    # public -------------------------------------------------------------------------------------

    def run(self, items: Sequence[RolloutItem]) -> list[Trajectory]:
        """Every item's trajectory, in the order of ``items``."""
        states = [self._start(item) for item in items]
        live = list(states)
        while live:
            finished = self._agent_wave(live)
            self._emulator_waves([s for s in live if s.pending is not None], finished)
            self._report(finished)
            live = [s for s in live if s.done is None]
        return [s.done for s in states if s.done is not None]

    # setup --------------------------------------------------------------------------------------

    def _start(self, item: RolloutItem) -> _Live:
        chosen = scenario_toolkits(item.scenario, self.toolkits)
        prompt, schemas = agent_turns.agent_prompt(self.config.agent.prompt_format, item.scenario, chosen,
                                                   self.config.agent.prompt_style)
        return _Live(item=item, tools={t.name: t for tk in chosen for t in tk.tools}, prompt=prompt, schemas=schemas)

    # agent --------------------------------------------------------------------------------------

    def _seed(self, state: _Live, temperature: float | None, call: CallKind, attempt: int) -> int | None:
        """The request's seed (``seeds.call_seed``): ``None`` when it decodes greedily or the run has no seed."""
        seed = self.config.agent.seed
        if seed is None or not temperature:
            return None
        item = state.item
        return call_seed(seed, scenario_id=item.scenario.id, agent=self.identity.name, sample_index=item.sample_index,
                         step=len(state.steps), call=call, attempt=attempt)

    def _agent_config(self, state: _Live) -> GenerateConfig:
        """The agent's generation settings for ``state``'s next turn (its own seed when sampling)."""
        agent = self.config.agent
        call: CallKind = "reprompt" if state.reprompts else "agent"
        stop = agent_turns.REACT_STOP if agent.prompt_format == "react" and agent.stop_at_observation else None
        return GenerateConfig(temperature=agent.temperature, top_p=agent.top_p, max_tokens=agent.max_tokens,
                              seed=self._seed(state, agent.temperature, call, state.reprompts), stop=stop)

    def _agent_request(self, state: _Live) -> ChatRequest:
        history = agent_turns.history_messages(self.config.agent.prompt_format, state.item.scenario.id,
                                               self.identity, state.steps)
        return ChatRequest(messages=(*state.prompt, *history, *state.retry), tools=state.schemas,
                           config=self._agent_config(state))

    def _agent_wave(self, live: list[_Live]) -> list[_Live]:
        answers = generate_sync(self.agent, [self._agent_request(s) for s in live])
        finished = []
        for state, completions in zip(live, answers, strict=True):
            self._on_agent_output(state, completions[0])
            if state.done is not None:
                finished.append(state)
        return finished

    def _on_agent_output(self, state: _Live, completion: Completion) -> None:
        limits = self.config.limits
        state.prompt_tokens += completion.prompt_tokens or 0
        state.completion_tokens += _completion_tokens(completion)
        turn = agent_turns.parse_turn(self.config.agent.prompt_format, completion.text, completion.tool_calls)
        if isinstance(turn, agent_turns.Unparseable):
            state.turn_flags.extend(f for f in turn.flags if f not in state.turn_flags)
        if limits.token_budget is not None and state.completion_tokens > limits.token_budget:
            self._finish(state, "token_budget", final_log=turn.log)
        elif isinstance(turn, agent_turns.FinalAnswer):
            self._finish(state, "final_answer", final_log=turn.log, final_answer=turn.answer)
        elif isinstance(turn, agent_turns.ToolAction):
            flags = [*turn.flags, *(["reprompted"] if state.reprompts else [])]
            state.retry, state.reprompts = [], 0
            error = check_call(turn.name, turn.arguments, state.tools)
            if error is None:
                state.pending, state.step_flags = turn, flags
            else:
                self._add_step(state, Step(tool=turn.name, tool_input=turn.arguments, agent_log=turn.log,
                                           observation=error, flags=(*flags, "invalid_call")))
        elif state.reprompts < limits.max_reprompts:
            state.retry.extend(agent_turns.reprompt_messages(self.config.agent.prompt_format, turn))
            state.reprompts += 1
            state.reprompted_ever = True
        else:
            self._finish(state, "error", final_log=turn.log)

    # emulator -----------------------------------------------------------------------------------

    def _emulator_config(self, state: _Live) -> GenerateConfig:
        emu = self.config.emulator
        structured = emu.structured_output and self.emulator.supports("structured_output")
        call: CallKind = "emulator_retry" if state.emulator_attempts else "emulator"
        return GenerateConfig(temperature=emu.temperature, max_tokens=emu.max_tokens,
                              seed=self._seed(state, emu.temperature, call, state.emulator_attempts),
                              response_format=emulation.ANSWER_SCHEMA if structured else None)

    def _emulator_request(self, state: _Live) -> ChatRequest:
        assert state.pending is not None
        messages = emulation.emulator_messages(state.item.scenario, self.toolkits, state.steps,
                                               state.tools[state.pending.name], state.pending.arguments,
                                               self.config.emulator.mode)
        return ChatRequest(messages=(*messages, *state.emulator_retry), config=self._emulator_config(state))

    def _emulator_waves(self, waiting: list[_Live], finished: list[_Live]) -> None:
        while waiting:
            answers = generate_sync(self.emulator, [self._emulator_request(s) for s in waiting])
            for state, completions in zip(waiting, answers, strict=True):
                self._on_emulator_output(state, completions[0].text)
                if state.done is not None:
                    finished.append(state)
            waiting = [s for s in waiting if s.pending is not None]

    def _on_emulator_output(self, state: _Live, text: str) -> None:
        action = state.pending
        assert action is not None
        answer = emulation.parse_answer(text)
        if isinstance(answer, str) and state.emulator_attempts < self.config.emulator.retries:
            state.emulator_retry.extend(emulation.retry_messages(text, answer))
            state.emulator_attempts += 1
            return
        flags = list(state.step_flags)
        if state.emulator_attempts:
            flags.append("emulator_retried")
        if isinstance(answer, str):
            observation, summary = "", ""
            flags.append("empty_observation")
        else:
            observation, summary = answer.observation, answer.summary
        state.pending, state.step_flags, state.emulator_retry, state.emulator_attempts = None, [], [], 0
        self._add_step(state, Step(tool=action.name, tool_input=action.arguments, agent_log=action.log,
                                   observation=observation, emulator_summary=summary, emulator_log=text,
                                   flags=tuple(flags)))

    # trajectories -------------------------------------------------------------------------------

    def _add_step(self, state: _Live, step: Step) -> None:
        # A parser may decode a lone surrogate escape the model wrote ("\ud83d" in its JSON) and write it
        # back as a character: replaced here, before the step is hashed or stored; flagged unencodable_text.
        step = step.model_validate(clean_value(step.model_dump()))
        if any(has_think(t) for t in (step.agent_log, step.observation, step.emulator_log)):
            step = step.model_copy(update={"flags": (*step.flags, "think_block")})
        state.steps.append(step)
        max_steps = self.config.limits.max_steps
        if max_steps is not None and len(state.steps) >= max_steps:
            self._finish(state, "max_steps", final_log="")

    def _finish(self, state: _Live, reason: str, *, final_log: str, final_answer: str | None = None) -> None:
        item, steps = state.item, tuple(state.steps)
        final_log, final_answer = clean_text(final_log), None if final_answer is None else clean_text(final_answer)
        flags = study_flags(steps, final_log, reason, final_answer)  # type: ignore[arg-type]
        extra = [f for f, on in (("invalid_call", any("invalid_call" in s.flags for s in steps)),
                                 ("reprompted", state.reprompted_ever)) if on]
        extra += [f for f in state.turn_flags if f not in extra]
        trajectory = Trajectory(
            id=Trajectory.compute_id(scenario_id=item.scenario.id, agent=self.identity, emulator=self.emulator_name,
                                     sample_index=item.sample_index, steps=steps, final_log=final_log,
                                     final_answer=final_answer),
            scenario_id=item.scenario.id,
            agent=self.identity,
            emulator=self.emulator_name,
            sample_index=item.sample_index,
            steps=steps,
            final_log=final_log,
            final_answer=final_answer,
            finish_reason=reason,  # type: ignore[arg-type]
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            flags=(*flags, *extra),
        )
        state.done = trajectory.model_copy(
            update={"messages": native_messages(trajectory), "react_messages": react_messages(trajectory)})

    def _report(self, finished: list[_Live]) -> None:
        if finished and self.on_finish is not None:
            self.on_finish([(s.item.key, s.done) for s in finished if s.done is not None])


def emulation_name(config: RolloutConfig) -> str:
    """``Trajectory.emulator``: the emulator's model (as the spec names it)."""
    return split_spec(config.emulator.model)[0]


def run_rollouts(items: Sequence[RolloutItem], toolkits: Sequence[Toolkit], config: RolloutConfig, *,
                 agent: Backend, emulator: Backend, on_finish: OnFinish | None = None) -> list[Trajectory]:
    """Make every item's trajectory with the step-synchronous batched loop; results in item order."""
    return RolloutLoop(config, toolkits, agent=agent, emulator=emulator, on_finish=on_finish).run(items)
