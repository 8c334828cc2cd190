"""Records and the run store: JSON and Parquet round trips, atomic writes, all-or-nothing runs, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pydantic
import pytest

import prefkit
from prefkit import records as rec
from prefkit.records import (
    SCHEMA_VERSION,
    AgentIdentity,
    JudgeIdentity,
    Judgment,
    Message,
    PreferencePair,
    Record,
    SamplingParams,
    Scenario,
    SourceRef,
    Step,
    Tool,
    ToolCall,
    ToolException,
    Toolkit,
    ToolParameter,
    ToolReturn,
    Trajectory,
)
from prefkit.store import (
    MANIFEST,
    TABLES,
    RunStore,
    StoreError,
    frame_to_records,
    new_run,
    polars_schema,
    records_to_frame,
    tree_sha256,
    write_json_atomic,
    write_parquet_atomic,
)

# Sample records: every field set to a non-default value, unicode and awkward text included --------

TOOL = Tool(
    name="TodoistSearchTasks",
    toolkit="Todoist",
    summary="Search tasks — by keyword, «quoted» and \"escaped\"",
    parameters=(
        ToolParameter(name="keywords", type="string", description="Words to match.", required=True),
        ToolParameter(name="max_results", type="integer", description="Cap.", required=False),
    ),
    returns=(ToolReturn(name="tasks", type="array", description="Matching tasks."),),
    exceptions=(ToolException(name="InvalidRequestException", description="Bad keywords."),),
)
AGENT = AgentIdentity(
    name="Qwen_Qwen3-8B",
    model="Qwen/Qwen3-8B",
    backend="transformers",
    quantization="int4",
    sampling=SamplingParams(temperature=0.0, top_p=0.9, max_tokens=2048, seed=7),
    prompt_format="native",
)
STEP = Step(
    tool="TodoistSearchTasks",
    tool_input='{"keywords": "Test"}\n',
    agent_log="Thought: find them.\nAction: TodoistSearchTasks\nAction Input: {\"keywords\": \"Test\"}",
    observation="",
    emulator_summary="summary",
    emulator_log="<think>\nx\n</think>",
    flags=("empty_observation",),
)
CALL = ToolCall(id="call_0", name="TodoistSearchTasks", arguments='{"keywords": "Test"}')
JUDGE = JudgeIdentity(model="Qwen/Qwen3-32B", backend="imported", rubric_version="toolemu-safe")


def _trajectory() -> Trajectory:
    fields = dict(
        scenario_id="official_0", agent=AGENT, emulator="Qwen/Qwen3-8B", sample_index=2, steps=(STEP,),
        final_log="Final Answer: done ✓", final_answer="done ✓",
    )
    return Trajectory(
        id=Trajectory.compute_id(**fields),
        **fields,
        finish_reason="final_answer",
        messages=(
            Message(role="assistant", content="Thought: find them.", tool_calls=(CALL,)),
            Message(role="tool", content="", tool_call_id="call_0"),
            Message(role="assistant", content="done ✓"),
        ),
        react_messages=(Message(role="assistant", content="x"), Message(role="user", content="Observation: ")),
        prompt_tokens=1234,
        completion_tokens=56,
        flags=("empty_observation", "think_block"),
        source=SourceRef(file="gpt-5/run_r0-15.jsonl", line=3),
    )


def _judgment(**overrides) -> Judgment:
    fields = dict(
        id=Judgment.compute_id(trajectory_id="t1", metric="safety", judge=JUDGE, replicate=1),
        trajectory_id="t1", metric="safety", score=2, label="**Possible Mild Risk (2)**", rationale="why",
        raw_output='{"eval_scores": {"ToolCallRisk": 2}}', judge=JUDGE, replicate=1, parse_status="repaired",
        attempts=2, distribution=(0.1, 0.2, 0.6, 0.1), judge_tokens=999, source=SourceRef(file="a.jsonl", line=0),
    )
    return Judgment(**{**fields, **overrides})


SAMPLES: dict[type[Record], Record | tuple[Record, ...]] = {
    Scenario: Scenario(
        id="official_0", suite="toolemu", index=0, instruction="Delete tasks with 'Test'.\nNow.",
        toolkits=("Todoist", "Gmail"), underspecified_task_information=("which ones",),
        underspecified_safety_constraints=("keep important",), expected_achievements=("a", "b"),
        risky_outcomes=("Data loss",), risky_actions=("delete all",),
    ),
    ToolParameter: TOOL.parameters[1],
    ToolReturn: TOOL.returns[0],
    ToolException: TOOL.exceptions[0],
    Tool: TOOL,
    Toolkit: Toolkit(
        name="Todoist", name_for_model="Todoist", name_for_human="Todoist app", description_for_model="tasks",
        description_for_human="Tasks.", category="productivity", tools=(TOOL,),
    ),
    ToolCall: CALL,
    # tool_calls and tool_call_id never share a message: two samples cover the fields between them
    Message: (Message(role="assistant", content="", tool_calls=(CALL,)),
              Message(role="tool", content="{\"ok\": true}", tool_call_id="call_0")),
    SamplingParams: AGENT.sampling,
    AgentIdentity: AGENT,
    SourceRef: SourceRef(file="x/y.jsonl", line=12),
    Step: (STEP, STEP.model_copy(update={"observation": '{"tasks": [{"id": "t1", "title": "Test ✓"}]}', "flags": ()})),
    Trajectory: _trajectory(),
    JudgeIdentity: JUDGE,
    Judgment: _judgment(),
    PreferencePair: PreferencePair(
        id="p1", strategy="both", scenario_id="official_0", scenario_index=0, split="test", chosen_id="t1",
        rejected_id="t2", chosen_agent="gpt-5", rejected_agent="gpt-5-nano", chosen_safety=3.0,
        rejected_safety=0.0, chosen_helpfulness=2.5, rejected_helpfulness=0.0, chosen_score=2.5,
        rejected_score=0.0, margin=2.5, chosen_source=SourceRef(file="a", line=1),
        rejected_source=SourceRef(file="b", line=2),
    ),
}

# Minimal records: optional fields left at their defaults (None / empty tuples).
MINIMAL: dict[str, list[Record]] = {
    "scenarios": [Scenario(id="s", suite="x", instruction="", toolkits=())],
    "toolkits": [Toolkit(name="T", name_for_model="T")],
    "trajectories": [Trajectory(id="t", scenario_id="s", agent=AgentIdentity(name="a", model="m"),
                                finish_reason="token_budget")],
    "judgments": [_judgment(score=None, parse_status="failed", label=None, rationale=None, distribution=None,
                            judge_tokens=None, source=None)],
    "pairs": [PreferencePair(id="p", strategy="safety", scenario_id="s", chosen_id="a", rejected_id="b",
                             chosen_agent="x", rejected_agent="y", chosen_score=3, rejected_score=1, margin=2)],
}


def _record_types() -> set[type[Record]]:
    return {v for v in vars(rec).values() if isinstance(v, type) and issubclass(v, Record) and v is not Record}


def _samples(model: type[Record]) -> tuple[Record, ...]:
    value = SAMPLES[model]
    return value if isinstance(value, tuple) else (value,)


def _sample(model: type[Record]) -> Record:
    return _samples(model)[0]


def test_every_record_type_has_samples_that_set_every_field():
    assert _record_types() == set(SAMPLES), "add a sample for each new record type"
    for model in SAMPLES:
        samples = _samples(model)
        assert all(type(s) is model for s in samples)
        at_default = [name for name, f in model.model_fields.items() if not f.is_required() and all(
            getattr(s, name) == f.get_default(call_default_factory=True) for s in samples)]
        assert not at_default, f"{model.__name__} samples leave {at_default} at the default"


@pytest.mark.parametrize("model", list(SAMPLES), ids=lambda m: m.__name__)
def test_json_round_trip_of_every_record_type(model: type[Record]):
    for sample in _samples(model):
        text = sample.model_dump_json()
        back = model.model_validate_json(text)
        assert back == sample
        assert back.model_dump_json() == text
        # Through Python's json too (what other tools do with our files)
        assert model.model_validate(json.loads(text)) == sample


def test_records_are_frozen_and_reject_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        _sample(Scenario).id = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        Scenario.model_validate({**_sample(Scenario).model_dump(), "User Instruction": "x"})
    assert hash(_sample(Trajectory)) == hash(Trajectory.model_validate_json(_sample(Trajectory).model_dump_json()))


def test_record_validators_reject_inconsistent_values():
    with pytest.raises(pydantic.ValidationError, match="only allowed on assistant"):
        Message(role="user", content="x", tool_calls=(CALL,))
    with pytest.raises(pydantic.ValidationError, match="only allowed on tool"):
        Message(role="assistant", content="x", tool_call_id="call_0")
    with pytest.raises(pydantic.ValidationError, match="must not carry a score"):
        _judgment(parse_status="failed")
    with pytest.raises(pydantic.ValidationError, match="needs a score"):
        _judgment(score=None)
    with pytest.raises(pydantic.ValidationError):
        _judgment(score=4)


def test_ids_are_content_hashes():
    t = _sample(Trajectory)
    assert isinstance(t, Trajectory)
    fields = dict(scenario_id=t.scenario_id, agent=t.agent, emulator=t.emulator, sample_index=t.sample_index,
                  steps=t.steps, final_log=t.final_log, final_answer=t.final_answer)
    assert Trajectory.compute_id(**fields) == t.id
    assert Trajectory.compute_id(**{**fields, "final_answer": "other"}) != t.id
    assert rec.content_hash({"b": 1, "a": [1, 2]}) == rec.content_hash({"a": [1, 2], "b": 1})
    assert len(rec.content_hash("x")) == 16


# Parquet through the run store -------------------------------------------------------------------


def _store_samples() -> dict[str, list[Record]]:
    full = {"scenarios": Scenario, "toolkits": Toolkit, "trajectories": Trajectory, "judgments": Judgment,
            "pairs": PreferencePair}
    return {name: [*_samples(model), *MINIMAL[name]] for name, model in full.items()}


def test_every_table_round_trips_through_parquet(tmp_path: Path):
    store = RunStore(tmp_path / "run")
    assert set(TABLES) == set(_store_samples())
    for name, records in _store_samples().items():
        assert store.write(name, records) == len(records)
        assert store.read(name) == records, name
        assert dict(store.frame(name).schema) == polars_schema(TABLES[name])


def test_parquet_bytes_are_a_function_of_the_records(tmp_path: Path):
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    for name, records in _store_samples().items():
        a.write(name, records)
        b.write(name, records)
        assert a.table_path(name).read_bytes() == b.table_path(name).read_bytes()


def test_real_trajectories_round_trip(q32_run, tmp_path: Path):
    trajectories = q32_run.read("trajectories")
    assert len(trajectories) == 1152
    for t in trajectories[::37]:  # a spread of real records through JSON
        assert Trajectory.model_validate_json(t.model_dump_json()) == t
    copy = RunStore(tmp_path / "copy")
    copy.write("trajectories", trajectories)
    assert copy.read("trajectories") == trajectories
    assert copy.table_path("trajectories").read_bytes() == q32_run.table_path("trajectories").read_bytes()


def test_empty_and_absent_tables_have_the_schema(tmp_path: Path):
    store = RunStore(tmp_path / "run")
    assert not store.has("pairs")
    assert dict(store.scan("pairs").collect_schema()) == polars_schema(PreferencePair)
    store.write("pairs", [])
    assert store.has("pairs") and store.read("pairs") == []
    assert dict(pl.read_parquet(store.table_path("pairs")).schema) == polars_schema(PreferencePair)


def test_store_rejects_unknown_tables_wrong_schemas_and_bad_rows(tmp_path: Path):
    store = RunStore(tmp_path / "run")
    with pytest.raises(StoreError, match="unknown table 'pair'"):
        store.table_path("pair")
    with pytest.raises(StoreError, match="does not have the PreferencePair schema"):
        store.write_frame("pairs", pl.DataFrame({"id": ["x"]}))
    frame = records_to_frame(MINIMAL["pairs"] * 2, PreferencePair).with_columns(
        margin=pl.Series([2.0, None], dtype=pl.Float64))
    with pytest.raises(StoreError, match="row 1 is not a valid PreferencePair"):
        frame_to_records(frame, PreferencePair)


# Atomic files ------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failed_parquet_write_keeps_the_old_file_and_leaves_no_partial_file(tmp_path: Path, monkeypatch):
    store = RunStore(tmp_path)
    store.write("pairs", MINIMAL["pairs"])
    before = store.table_path("pairs").read_bytes()

    def half_write(self, file, **kwargs):  # a write that dies half way, after writing some bytes
        Path(file).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_write)
    with pytest.raises(OSError, match="disk full"):
        store.write("pairs", _store_samples()["pairs"])
    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(pl.DataFrame({"a": [1]}), tmp_path / "new.parquet")
    monkeypatch.undo()
    assert store.table_path("pairs").read_bytes() == before
    assert not (tmp_path / "new.parquet").exists()
    assert _leftovers(tmp_path) == []
    assert store.read("pairs") == MINIMAL["pairs"]


def test_failed_json_write_keeps_the_old_file(tmp_path: Path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": {1, 2}})  # a set is not JSON
    assert json.loads(path.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


# Runs: all or nothing, and the manifest ----------------------------------------------------------


def test_new_run_leaves_nothing_behind_on_error(tmp_path: Path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        with new_run(target, created_by="test") as store:
            store.write("scenarios", MINIMAL["scenarios"])
            assert store.path != target and store.path.exists()
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_new_run_refuses_a_non_empty_target_and_keeps_it_on_a_failed_overwrite(tmp_path: Path):
    target = tmp_path / "run"
    with new_run(target, created_by="first") as store:
        store.write("scenarios", MINIMAL["scenarios"])
    assert store.path == target and RunStore(target).read("scenarios") == MINIMAL["scenarios"]
    with pytest.raises(StoreError, match="already exists and is not empty"):
        with new_run(target, created_by="second"):
            pass
    with pytest.raises(RuntimeError):
        with new_run(target, created_by="second", overwrite=True) as store:
            store.write("pairs", MINIMAL["pairs"])
            raise RuntimeError("half way")
    assert RunStore(target).manifest()["created_by"] == "first"
    assert not RunStore(target).has("pairs")
    with new_run(target, created_by="third", overwrite=True) as store:
        store.write("pairs", MINIMAL["pairs"])
    assert RunStore(target).manifest()["created_by"] == "third"
    assert not RunStore(target).has("scenarios") and RunStore(target).has("pairs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_manifest_records_versions_inputs_and_counts(tmp_path: Path):
    with new_run(tmp_path / "run", created_by="prefkit test", inputs={"runs": "b" * 64, "cases": "a" * 64}) as store:
        for name, records in _store_samples().items():
            store.write(name, records)
        store.update_manifest(stages={"pair": "k1"})
        store.update_manifest(stages={"judge": "k2"}, note="kept")
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest == RunStore(tmp_path / "run").manifest()
    assert manifest["prefkit_version"] == prefkit.__version__
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["created_by"] == "prefkit test"
    assert list(manifest["inputs"]) == ["cases", "runs"]
    assert manifest["counts"] == {name: len(r) for name, r in _store_samples().items()}
    assert manifest["counts"] == RunStore(tmp_path / "run").counts()
    assert manifest["stages"] == {"pair": "k1", "judge": "k2"}
    assert manifest["note"] == "kept"


def test_manifest_errors_name_the_problem(tmp_path: Path):
    store = RunStore(tmp_path)
    with pytest.raises(StoreError, match="not a prefkit run"):
        store.manifest()
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        store.manifest()
    (tmp_path / MANIFEST).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(StoreError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        store.manifest()


def test_tree_hash_depends_on_paths_and_contents_not_listing_order(tmp_path: Path):
    (tmp_path / "a").mkdir()
    files = [tmp_path / "a" / "x.jsonl", tmp_path / "b.jsonl"]
    files[0].write_text("1")
    files[1].write_text("2")
    h = tree_sha256(tmp_path, files)
    assert h == tree_sha256(tmp_path, files[::-1])
    files[1].write_text("3")
    assert tree_sha256(tmp_path, files) != h
    files[1].write_text("2")
    files[1].rename(tmp_path / "c.jsonl")
    assert tree_sha256(tmp_path, [files[0], tmp_path / "c.jsonl"]) != h
