"""The bundled ``starter`` suite (``generators/scenarios/starter``) and the suite forms ``prefkit rollout``
accepts."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from jsonschema import Draft202012Validator

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.render import react_prompt, tool_schemas
from prefkit.resources import data_dir
from prefkit.rollout import bundled_suites, load_scenario_suite
from prefkit.rollout.emulator import emulator_messages
from prefkit.store import RunStore

PLACEHOLDER = re.compile(r"\$[a-z_]+|\$\{")


@pytest.fixture(scope="module")
def starter():
    return load_scenario_suite("starter")


def test_starter_suite_shape(starter):
    assert "starter" in bundled_suites()
    assert starter.name == "starter"
    assert [s.id for s in starter.scenarios] == [f"starter_{i}" for i in range(12)]
    assert [s.index for s in starter.scenarios] == list(range(12))
    assert {s.suite for s in starter.scenarios} == {"starter"}
    assert [t.name for t in starter.toolkits] == ["FileCabinet", "MailBox", "PocketBank", "HomeHub"]
    used = {name for s in starter.scenarios for name in s.toolkits}
    assert used == {t.name for t in starter.toolkits}  # every toolkit is exercised
    names = [tool.name for t in starter.toolkits for tool in t.tools]
    assert len(names) == len(set(names)) == 17


def test_starter_has_risky_and_benign_variants_per_toolkit(starter):
    risky = [s for s in starter.scenarios if s.risky_outcomes]
    benign = [s for s in starter.scenarios if not s.risky_outcomes]
    assert len(risky) == len(benign) == 6
    for s in risky:  # a risky scenario says what is left open and what could go wrong
        assert s.risky_actions and s.underspecified_safety_constraints and s.expected_achievements, s.id
    for s in benign:
        assert not s.risky_actions and not s.underspecified_safety_constraints and s.expected_achievements, s.id
    for toolkit in starter.toolkits:
        assert any(toolkit.name in s.toolkits for s in risky), toolkit.name
        assert any(toolkit.name in s.toolkits for s in benign), toolkit.name


def test_every_starter_prompt_renders(starter):
    for scenario in starter.scenarios:
        system, user = react_prompt(scenario, starter.toolkits)
        assert user.content.endswith(f"User Input: {scenario.instruction}\nThought: ")
        schemas = tool_schemas(scenario, starter.toolkits)
        for schema in schemas:
            Draft202012Validator.check_schema(schema["function"]["parameters"])
            assert schema["function"]["name"] in user.content
        for tool in (t for tk in starter.toolkits if tk.name in scenario.toolkits for t in tk.tools):
            for mode in ("adversarial", "standard"):
                messages = emulator_messages(scenario, starter.toolkits, [], tool, "{}", mode)
                for m in messages:
                    assert not PLACEHOLDER.search(m.content), (scenario.id, tool.name, m.content)


def test_suite_forms(starter, tmp_path, toolemu_cases_path, toolemu_toolkits_path):
    folder = data_dir("generators", "scenarios", "starter")
    assert load_scenario_suite(folder).scenarios == starter.scenarios
    assert load_scenario_suite(folder / "cases.json").scenarios == starter.scenarios
    assert load_scenario_suite(folder).sha256 == starter.sha256

    toolemu = load_scenario_suite(toolemu_cases_path.parent)
    assert toolemu.name == "toolemu" and len(toolemu.scenarios) == 144 and len(toolemu.toolkits) == 38
    assert load_scenario_suite(toolemu_cases_path).scenarios == toolemu.scenarios

    # A run folder from `prefkit import toolemu-cases` is a suite too.
    assert main(["import", "toolemu-cases", str(toolemu_cases_path), str(toolemu_toolkits_path),
                 "--out", str(tmp_path / "imported")]) == 0
    from_run = load_scenario_suite(tmp_path / "imported")
    assert from_run.scenarios == toolemu.scenarios and from_run.toolkits == toolemu.toolkits

    assert starter.select(["starter_3", "starter_1"]).scenarios == (starter.scenarios[1], starter.scenarios[3])
    with pytest.raises(InputError, match="no scenario 'nope'"):
        starter.select(["nope"])


def test_bad_suites_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a scenario suite"):
        load_scenario_suite(tmp_path / "empty")
    shutil.copy(data_dir("generators", "scenarios", "starter") / "cases.json", tmp_path / "cases.json")
    with pytest.raises(InputError, match="toolkits file beside it"):
        load_scenario_suite(tmp_path / "cases.json")
    cases = json.loads((tmp_path / "cases.json").read_text())
    cases[2]["Toolkits"] = ["Nowhere"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cases.json").write_text(json.dumps(cases))
    shutil.copy(data_dir("generators", "scenarios", "starter") / "toolkits.json", tmp_path / "broken")
    with pytest.raises(InputError, match=r"cases\.json \[cases\[2\]\.Toolkits\[0\]\]"):
        load_scenario_suite(tmp_path / "broken")


def test_whole_starter_suite_through_the_real_backend(tiny_model_dir, tmp_path, capsys):
    """Every starter scenario's prompt goes through the transformers backend (random weights: the
    agent writes nonsense and runs out of its tiny token budget at its second call)."""
    spec = f"{tiny_model_dir}@transformers"
    out = tmp_path / "run"
    assert main(["rollout", "starter", "--agent", spec, "--emulator", spec, "--out", str(out), "--max-tokens", "4",
                 "--token-budget", "4", "--agent-option", "batch_size=12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trajectories"] == summary["generated"] == 12
    trajectories = RunStore(out).read("trajectories")
    assert sorted(t.scenario_id for t in trajectories) == sorted(f"starter_{i}" for i in range(12))
    for t in trajectories:
        assert t.finish_reason in ("token_budget", "error", "final_answer")
        assert 0 < t.completion_tokens <= 8 and t.prompt_tokens > 0
        assert t.agent.backend == "transformers" and t.agent.prompt_format == "react"
