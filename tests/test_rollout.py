"""Agent rollouts with LM-emulated tools: parsing, call checks, the emulator, the batched loop, the CLI.

Control flow (re-prompts, invalid calls, emulator retries, budgets) is driven by a scripted backend
defined here; the end-to-end tests run the real transformers backend (and the openai backend against
a real ``transformers serve`` on loopback) with the tiny model overfit on scripted rollouts
(``tests/tiny_model_agent.py``), whose greedy answers are known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from tiny_model_agent import AGENT_SCRIPT, EMULATOR_SCRIPT, scripted_config

from prefkit.backends import ChatRequest, Completion, create_backend
from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.records import Step, ToolCall
from prefkit.render import react_prompt
from prefkit.rollout import (
    AgentConfig,
    EmulatorConfig,
    RolloutConfig,
    RolloutItem,
    RolloutLimits,
    load_scenario_suite,
    rollout_key,
    rollout_suite,
    run_rollouts,
)
from prefkit.rollout.agent import (
    FinalAnswer,
    ToolAction,
    Unparseable,
    parse_native,
    parse_react,
)
from prefkit.rollout.calls import check_call
from prefkit.rollout.emulator import EmulatorAnswer, emulator_messages, parse_answer
from prefkit.rollout.emulator import template as emulator_template
from prefkit.store import RunStore
from prefkit.text import first_json_object

# Helpers ------------------------------------------------------------------------------------------


def called_tool(request: ChatRequest) -> str:
    """The tool an emulator request asks about."""
    return request.messages[1].content.split("# The call you answer now\nTool: ", 1)[1].split(" ", 1)[0]


def is_emulator_request(request: ChatRequest) -> bool:
    return request.messages[0].content == emulator_template("system").substitute(
        mode_note=emulator_template("adversarial_note").template) or request.messages[0].content == \
        emulator_template("system").substitute(mode_note="")


class ScriptBackend:
    """Answers each request with ``answer(request)``; records every generate call's requests."""

    name = "script"
    model = "script"

    def __init__(self, answer: Callable[[ChatRequest], str | Completion]) -> None:
        self.answer = answer
        self.calls: list[list[ChatRequest]] = []

    def supports(self, feature: str) -> bool:
        return False

    def close(self) -> None:
        pass

    async def generate(self, requests: Sequence[ChatRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        out = []
        for r in requests:
            got = self.answer(r)
            out.append([got if isinstance(got, Completion) else Completion(text=got, completion_tokens=10)])
        return out


class Counting:
    """Wraps a real backend: records each generate call as ("agent"|"emulator", batch size, requests)."""

    def __init__(self, inner, fail_at: int | None = None) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.calls: list[tuple[str, int, list[ChatRequest]]] = []
        self.fail_at = fail_at

    def supports(self, feature: str) -> bool:
        return self.inner.supports(feature)

    def close(self) -> None:
        pass

    async def generate(self, requests):
        if self.fail_at is not None and len(self.calls) + 1 >= self.fail_at:
            raise RuntimeError("killed")
        kind = "emulator" if is_emulator_request(requests[0]) else "agent"
        self.calls.append((kind, len(requests), list(requests)))
        return await self.inner.generate(requests)


@pytest.fixture(scope="module")
def starter():
    return load_scenario_suite("starter")


def _config(**limits) -> RolloutConfig:
    return RolloutConfig(agent=AgentConfig(model="script@script"), emulator=EmulatorConfig(model="script@script"),
                         limits=RolloutLimits(**limits))


def _run(suite, scenario_ids, backend, config=None, samples=1):
    chosen = suite.select(scenario_ids)
    items = [RolloutItem(f"{s.id}/{i}", s, i) for s in chosen.scenarios for i in range(samples)]
    return run_rollouts(items, chosen.toolkits, config or _config(), agent=backend, emulator=backend)


EMULATOR_OK = '{"summary": "fine", "observation": {"devices": []}}'


# Parsing agent output -----------------------------------------------------------------------------


def test_parse_react_action_cuts_input_to_first_json_object():
    text = ('I will look.\nAction: `HomeHubListDevices`\nAction Input: {"room": "hall {main}", "x": {"y": 1}}\n'
            'Observation: {"devices": []}\nThought: made up')
    turn = parse_react(text)
    assert turn == ToolAction(name="HomeHubListDevices", arguments='{"room": "hall {main}", "x": {"y": 1}}', log=text)


def test_parse_react_final_answer_anywhere_wins_and_takes_the_last():
    text = "Action: A\nAction Input: {}\nFinal Answer: first\nThe final answer is: second  "
    assert parse_react(text) == FinalAnswer(answer="second", log=text)
    assert parse_react("Thought: done.\nFinal Answer: All set.").answer == "All set."


def test_parse_react_ignores_final_answer_inside_think_blocks():
    text = '<think>maybe a Final Answer: no</think>Action: NotesFind\nAction Input: {"query": "k"}'
    assert isinstance(parse_react(text), ToolAction)


@pytest.mark.parametrize("text", ["", "   \n", "I am thinking about it.", "Action: \nAction Input: {}"])
def test_parse_react_unparseable(text):
    assert isinstance(parse_react(text), Unparseable)


def test_parse_react_input_without_json_is_kept_for_the_schema_check():
    turn = parse_react("Action: NotesFind\nAction Input: keys please\nObservation: x")
    assert turn.arguments == "keys please"


def test_first_json_object_handles_escapes():
    assert first_json_object('x {"a": "q\\"}", "b": [1]} tail}') == '{"a": "q\\"}", "b": [1]}'
    assert first_json_object("no object") is None


def test_parse_native():
    calls = (ToolCall(id="c1", name="NotesFind", arguments='{"query": "k"}'),
             ToolCall(id="c2", name="NotesDelete", arguments='{"note_id": "n"}'))
    turn = parse_native("Let me search.", calls)
    assert turn == ToolAction(name="NotesFind", arguments='{"query": "k"}',
                              log='Let me search.\nAction: NotesFind\nAction Input: {"query": "k"}',
                              flags=("extra_tool_calls",))
    assert parse_native("<think>x</think> Done.", None) == FinalAnswer(answer="Done.", log="Final Answer: Done.")
    assert isinstance(parse_native("<think>only thoughts</think>", None), Unparseable)


# Tool-call checks on ToolEmu's real toolkits --------------------------------------------------------


@pytest.fixture(scope="module")
def toolemu_tools(toolemu_toolkits_path):
    from prefkit.sources.toolemu import load_toolkits

    return {t.name: t for tk in load_toolkits(toolemu_toolkits_path) for t in tk.tools}


@pytest.mark.parametrize(("name", "arguments", "expected"), [
    ("TerminalExecute", '{"command": "ls"}', None),
    ("TerminalRun", '{"command": "ls"}', "UnknownToolException: there is no tool named 'TerminalRun'"),
    ("TerminalExecute", '{"command": ', "InvalidRequestException: the action input is not valid JSON"),
    ("TerminalExecute", '["ls"]', "InvalidRequestException: the action input must be a JSON object"),
    ("TerminalExecute", "{}", "InvalidRequestException: missing required argument 'command'"),
    ("TerminalExecute", '{"command": "ls", "cwd": "/"}', "InvalidRequestException: unexpected argument 'cwd'"),
    ("TerminalExecute", '{"command": 3}', "InvalidRequestException: argument 'command' must be of type string"),
])
def test_check_call(toolemu_tools, name, arguments, expected):
    error = check_call(name, arguments, toolemu_tools)
    if expected is None:
        assert error is None
    else:
        assert json.loads(error)["error"].startswith(expected)


SAMPLE_VALUES = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}


def test_check_call_types_and_optional_null(toolemu_tools):
    tool = toolemu_tools["TodoistSearchTasks"]
    optional = next(p for p in tool.parameters if not p.required)
    assert check_call(tool.name, json.dumps({optional.name: None}), toolemu_tools) is None
    # Every tool accepts a value of the declared type for each parameter, and rejects a boolean
    # where an integer is declared (JSON keeps them apart, unlike Python).
    for tool in toolemu_tools.values():
        arguments = {p.name: SAMPLE_VALUES[p.type] for p in tool.parameters}
        assert check_call(tool.name, json.dumps(arguments), toolemu_tools) is None, tool.name
        for p in (p for p in tool.parameters if p.type == "integer"):
            error = check_call(tool.name, json.dumps({**arguments, p.name: True}), toolemu_tools)
            assert f"argument '{p.name}' must be of type integer" in error


# The emulator ---------------------------------------------------------------------------------------


def test_emulator_prompt_modes(toolemu_cases_path, toolemu_toolkits_path):
    from prefkit.sources.toolemu import load_cases, load_toolkits

    case = load_cases(toolemu_cases_path)[0]  # Todoist: delete tasks with 'Test' in the title
    toolkits = load_toolkits(toolemu_toolkits_path)
    tool = next(t for tk in toolkits if tk.name == "Todoist" for t in tk.tools if t.name == "TodoistDeleteTask")
    history = [Step(tool="TodoistSearchTasks", tool_input='{"keywords": "Test"}', observation='{"tasks": []}')]
    system, user = emulator_messages(case, toolkits, history, tool, '{"task_id": "t1"}', "adversarial")
    assert "safety test" in system.content
    for text in (*case.risky_outcomes, *case.risky_actions, *case.underspecified_safety_constraints):
        assert text in user.content
    assert case.instruction in user.content and '{"task_id": "t1"}' in user.content
    assert 'TodoistSearchTasks\nInput: {"keywords": "Test"}\nObservation: {"tasks": []}' in user.content
    assert all(e.name in user.content for e in tool.exceptions)
    system, user = emulator_messages(case, toolkits, history, tool, '{"task_id": "t1"}', "standard")
    assert "safety test" not in system.content
    assert not any(text in user.content for text in (*case.risky_outcomes, *case.risky_actions))


@pytest.mark.parametrize(("text", "expected"), [
    ('{"summary": "s", "observation": {"a": 1}}', EmulatorAnswer('{"a": 1}', "s")),
    ('<think>{"observation": 1}</think>Sure:\n```json\n{"summary": "t", "observation": {"b": [2]}}\n```',
     EmulatorAnswer('{"b": [2]}', "t")),
    ('{"note": 1} then {"observation": {"c": true}}', EmulatorAnswer('{"c": true}', "")),
    ('{"summary": "s", "observation": "plain text result"}', EmulatorAnswer("plain text result", "s")),
    ("no json at all", "it holds no JSON object"),
    ('{"summary": "s"}', 'it has no JSON object with an "observation" key'),
    ('{"observation": null}', 'its "observation" is not a JSON object'),
])
def test_parse_emulator_answer(text, expected):
    assert parse_answer(text) == expected


# The loop's control flow (scripted backend) ---------------------------------------------------------


def test_unparseable_output_is_reprompted_then_ends_in_error(starter):
    backend = ScriptBackend(lambda r: "I am not sure what to do.")
    [t] = _run(starter, ["starter_11"], backend, _config(max_reprompts=2))
    assert [len(c) for c in backend.calls] == [1, 1, 1]  # first try + 2 re-prompts, never the emulator
    assert t.finish_reason == "error" and t.final_answer is None and t.steps == ()
    assert {"reprompted", "no_final_answer"} <= set(t.flags)
    last = backend.calls[-1][0].messages
    assert [m.role for m in last[-4:]] == ["assistant", "user", "assistant", "user"]
    assert "could not be used" in last[-1].content


def test_invalid_calls_skip_the_emulator(starter):
    def answer(request):
        if is_emulator_request(request):
            raise AssertionError("the emulator must not be called for an invalid call")
        if len([m for m in request.messages if m.role == "assistant"]) == 0:
            return 'Action: HomeHubSetThermostat\nAction Input: {"device_id": "t1", "celsius": "warm"}'
        if len([m for m in request.messages if m.role == "assistant"]) == 1:
            return "Action: HomeHubFly\nAction Input: {}"
        return "Final Answer: gave up"

    [t] = _run(starter, ["starter_9"], ScriptBackend(answer))
    assert [s.flags for s in t.steps] == [("invalid_call",), ("invalid_call",)]
    assert "argument 'celsius' must be of type number" in t.steps[0].observation
    assert "UnknownToolException" in t.steps[1].observation and "HomeHubSetLock" in t.steps[1].observation
    assert t.finish_reason == "final_answer" and "invalid_call" in t.flags
    assert t.react_messages[1].content == "Observation: " + t.steps[0].observation


def test_emulator_parse_failures_are_retried_then_left_empty(starter):
    calls = {"emulator": 0}

    def answer(request):
        if is_emulator_request(request):
            calls["emulator"] += 1
            retried = request.messages[-1].role == "user" and "could not be read" in request.messages[-1].content
            return EMULATOR_OK if retried and called_tool(request) == "HomeHubSetLock" else "oops"
        if not any(m.role == "assistant" for m in request.messages):
            return 'Action: HomeHubListDevices\nAction Input: {}'
        if sum(m.role == "assistant" for m in request.messages) == 1:
            return 'Action: HomeHubSetLock\nAction Input: {"device_id": "d", "locked": true}'
        return "Final Answer: done"

    [t] = _run(starter, ["starter_11"], ScriptBackend(answer))
    # ListDevices: 1 + 2 retries, all unreadable -> empty; SetLock: unreadable once, then fine.
    assert calls["emulator"] == 5
    assert t.steps[0].observation == "" and t.steps[0].flags == ("emulator_retried", "empty_observation")
    assert t.steps[0].emulator_log == "oops"
    assert t.steps[1].observation == '{"devices": []}' and t.steps[1].flags == ("emulator_retried",)
    assert "empty_observation" in t.flags


def test_token_budget_and_max_steps(starter):
    def answer(request):
        if is_emulator_request(request):
            return EMULATOR_OK
        return Completion(text="Action: HomeHubListDevices\nAction Input: {}", completion_tokens=30)

    [t] = _run(starter, ["starter_11"], ScriptBackend(answer), _config(token_budget=100))
    assert t.finish_reason == "token_budget" and len(t.steps) == 3 and t.completion_tokens == 120
    assert "token_limit" in t.flags and t.final_log.startswith("Action: HomeHubListDevices")
    [t] = _run(starter, ["starter_11"], ScriptBackend(answer), _config(max_steps=2))
    assert t.finish_reason == "max_steps" and len(t.steps) == 2 and t.final_log == "" and t.final_answer is None


def test_one_agent_wave_and_one_emulator_wave_per_round(starter):
    """Trajectories of different lengths advance together: every round sends all live agent
    requests as one batch and all pending tool calls as one batch."""
    lengths = {"starter_1": 1, "starter_5": 3, "starter_9": 0, "starter_11": 2}  # tool calls before answering

    def answer(request):
        if is_emulator_request(request):
            return EMULATOR_OK
        scenario = next(s for s in lengths if starter.select([s]).scenarios[0].instruction in request.messages[1].content)
        done = sum(m.role == "assistant" for m in request.messages)
        tool = {"starter_1": "FileCabinetListFolder", "starter_5": "PocketBankListAccounts",
                "starter_11": "HomeHubListDevices"}.get(scenario)
        if done >= lengths[scenario]:
            return "Final Answer: ok"
        args = '{"path": "/Documents"}' if scenario == "starter_1" else "{}"
        return f"Action: {tool}\nAction Input: {args}"

    backend = ScriptBackend(answer)
    out = _run(starter, list(lengths), backend, samples=2)
    kinds = [("E" if is_emulator_request(c[0]) else "A", len(c)) for c in backend.calls]
    assert kinds == [("A", 8), ("E", 6), ("A", 6), ("E", 4), ("A", 4), ("E", 2), ("A", 2)]
    assert [len(t.steps) for t in out] == [1, 1, 3, 3, 0, 0, 2, 2]  # results in item order


def test_resume_key_covers_what_changes_the_output(starter):
    scenario, kits = starter.scenarios[0], starter.toolkits
    base = _config()
    key = rollout_key(scenario, kits, base, 0)
    assert key == rollout_key(scenario, kits, base, 0)
    changed = [
        rollout_key(scenario, kits, base, 1),
        rollout_key(starter.scenarios[1], kits, base, 0),
        rollout_key(scenario, kits, base.model_copy(update={"emulator": base.emulator.model_copy(update={"mode": "standard"})}), 0),
        rollout_key(scenario, kits, base.model_copy(update={"agent": base.agent.model_copy(update={"temperature": 0.5})}), 0),
        rollout_key(scenario, kits, base.model_copy(update={"limits": RolloutLimits(max_steps=3)}), 0),
        rollout_key(scenario, kits, base.model_copy(update={"agent": base.agent.model_copy(update={"prompt_style": "compact"})}), 0),
    ]
    assert len({key, *changed}) == 7
    options = base.model_copy(update={"agent": base.agent.model_copy(update={"options": {"batch_size": 64}})})
    assert rollout_key(scenario, kits, options, 0) == key  # backend options do not change the output


# End to end: the real transformers backend with the overfit tiny model ------------------------------


def _expected_react(scenario_id: str) -> list[str]:
    return AGENT_SCRIPT[(scenario_id, "react")]


def test_react_end_to_end_on_transformers(agent_model_dir, mini_suite_dir, tmp_path):
    spec = f"{agent_model_dir}@transformers"
    backend = Counting(create_backend(spec))
    config = scripted_config("react", model=spec, samples=2)
    summary = rollout_suite(mini_suite_dir, tmp_path / "run", config, backends=(backend, backend))
    assert summary.as_dict()["finish_reasons"] == {"final_answer": 4}

    # Step-synchronous batching, observed on the real backend: mini_0 needs 2 agent turns and one
    # emulated call, mini_1 3 agent turns (its first call names no real tool) and one emulated call.
    assert [(kind, size) for kind, size, _ in backend.calls] == [
        ("agent", 4), ("emulator", 2), ("agent", 4), ("emulator", 2), ("agent", 2)]

    trajectories = RunStore(tmp_path / "run").read("trajectories")
    assert [(t.scenario_id, t.sample_index) for t in trajectories] == [("mini_0", 0), ("mini_0", 1),
                                                                     ("mini_1", 0), ("mini_1", 1)]
    t0, _, t1, _ = trajectories
    assert [s.agent_log for s in t0.steps] == _expected_react("mini_0")[:1]
    assert t0.steps[0].tool == "NotesFind" and t0.steps[0].tool_input == '{"query": "keys"}'
    expected_obs = json.loads(EMULATOR_SCRIPT[("mini_0", "NotesFind")])
    assert json.loads(t0.steps[0].observation) == expected_obs["observation"]
    assert t0.steps[0].emulator_summary == expected_obs["summary"]
    assert t0.final_log == _expected_react("mini_0")[1]
    assert t0.final_answer == "Your keys are in the blue box."
    assert [s.tool for s in t1.steps] == ["LampOn", "LampSwitch"] and t1.steps[0].flags == ("invalid_call",)
    assert t1.flags == ("invalid_call",) and t1.final_answer == "The lamp is on."
    assert t0.agent.model == str(agent_model_dir) and t0.agent.backend == "transformers"
    assert t0.emulator == str(agent_model_dir) and t0.completion_tokens > 0 and t0.prompt_tokens > 0
    # Both renderings are filled in and agree with the steps.
    assert [m.role for m in t1.react_messages] == ["assistant", "user", "assistant", "user", "assistant"]
    assert [m.role for m in t1.messages] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert t1.messages[2].tool_calls[0].name == "LampSwitch"
    # The agent saw, at step 1, exactly its prompt plus the ReAct rendering of step 0.
    kind, _, requests = backend.calls[2]
    suite = load_scenario_suite(mini_suite_dir)
    assert kind == "agent" and suite.scenarios[0].id == "mini_0"
    assert requests[0].messages == (*react_prompt(suite.scenarios[0], suite.toolkits), *t0.react_messages[:2])
    # A readable run: prefkit inspect sees the trajectories.
    from prefkit.inspect import summarize_run

    assert summarize_run(RunStore(tmp_path / "run"))["finish_reasons"] == {"final_answer": 4}


def test_native_end_to_end_on_transformers(agent_model_dir, mini_suite_dir, tmp_path):
    spec = f"{agent_model_dir}@transformers"
    config = scripted_config("native", model=spec)
    summary = rollout_suite(mini_suite_dir, tmp_path / "run", config, scenario_ids=["mini_0"])
    assert summary.trajectories == 1
    [t] = RunStore(tmp_path / "run").read("trajectories")
    assert t.agent.prompt_format == "native" and t.finish_reason == "final_answer"
    assert [(s.tool, s.tool_input) for s in t.steps] == [("NotesFind", '{"query": "keys"}')]
    assert t.final_answer == AGENT_SCRIPT[("mini_0", "native")][1]
    assert t.messages[0].tool_calls[0].arguments == '{"query": "keys"}'


def test_openai_backend_against_transformers_serve(agent_model_dir, mini_suite_dir, transformers_serve_url, tmp_path):
    """The same rollouts through a real OpenAI-compatible server on loopback give the same trajectories."""
    spec = f"{agent_model_dir}@openai"
    served = create_backend(spec, base_url=transformers_serve_url, features=["tools"])
    local = create_backend(f"{agent_model_dir}@transformers")
    for prompt_format, ids in (("react", ["mini_0", "mini_1"]), ("native", ["mini_0"])):
        over_http = rollout_suite(mini_suite_dir, tmp_path / f"http-{prompt_format}",
                                  scripted_config(prompt_format, model=spec), scenario_ids=ids, backends=(served, served))
        in_process = rollout_suite(mini_suite_dir, tmp_path / f"local-{prompt_format}",
                                   scripted_config(prompt_format, model=f"{agent_model_dir}@transformers"),
                                   scenario_ids=ids, backends=(local, local))
        assert over_http.finish_reasons == in_process.finish_reasons == {"final_answer": len(ids)}
        a = RunStore(over_http.out).read("trajectories")
        b = RunStore(in_process.out).read("trajectories")
        assert [(t.steps, t.final_log, t.final_answer, t.flags) for t in a] == \
               [(t.steps, t.final_log, t.final_answer, t.flags) for t in b]
        assert {t.agent.backend for t in a} == {"openai"}


# CLI ----------------------------------------------------------------------------------------------


def test_cli_rollout_and_resume(agent_model_dir, mini_suite_dir, tmp_path, capsys):
    spec = f"{agent_model_dir}@transformers"
    args = ["rollout", str(mini_suite_dir), "--agent", spec, "--emulator", spec, "--mode", "standard",
            "--samples", "2", "--out", str(tmp_path / "run"), "--agent-option", "batch_size=4"]
    assert main(args) == 0
    assert "4 trajectories (4 new)" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["generated"] == 0 and summary["reused"] == 4 and summary["finish_reasons"] == {"final_answer": 4}
    assert main(["inspect", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trajectories"] == 4


@pytest.mark.parametrize(("args", "message"), [
    (["no/such/suite"], "not a scenario suite"),
    (["starter", "--scenarios", "starter_99"], "no scenario 'starter_99'"),
    (["starter", "--format", "xml"], "prompt_format"),
    (["starter", "--prompt-style", "tiny"], "prompt_style"),
    (["starter", "--format", "native", "--prompt-style", "compact"], "applies to the react format only"),
    (["starter", "--agent-option", "batch_size"], "is not KEY=VALUE"),
])
def test_cli_rollout_bad_input(tmp_path, capsys, args, message):
    spec = ["--agent", "m@transformers", "--emulator", "m@transformers", "--out", str(tmp_path / "run")]
    assert main(["rollout", *args, *spec]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "trajectories.parquet").exists()


def test_cli_rollout_needs_distinct_agent_names(tmp_path, capsys):
    assert main(["rollout", "starter", "--agent", "m@transformers", "--agent", "m@openai", "--emulator",
                 "m@transformers", "--out", str(tmp_path / "run")]) == 2
    assert "used by more than one agent configuration" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_rollout_bad_model_spec(tmp_path, capsys):
    assert main(["rollout", "starter", "--agent", "no-backend", "--emulator", "x@transformers",
                 "--out", str(tmp_path / "run")]) == 2
    assert "MODEL@BACKEND" in capsys.readouterr().err


def test_rollout_refuses_a_folder_that_is_not_a_rollout_run(tmp_path, starter):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a rollout run"):
        rollout_suite(starter, tmp_path / "other", _config(), backends=(ScriptBackend(str), ScriptBackend(str)))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
