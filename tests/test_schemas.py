"""The JSON Schemas in ``schemas/`` are exactly what the code exports, and they are valid and useful."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from prefkit.cli import main
from prefkit.schemas import record_schemas, render_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"


def test_committed_schemas_match_the_code():
    expected = {name: render_schema(schema) for name, schema in record_schemas().items()}
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in sorted(SCHEMAS.glob("*.schema.json"))}
    assert sorted(on_disk) == sorted(expected), "run `prefkit schemas export` and commit schemas/"
    stale = [name for name in expected if on_disk[name] != expected[name]]
    assert not stale, f"schemas/ is stale for {stale}: run `prefkit schemas export` and commit schemas/"


@pytest.mark.parametrize("name", sorted(record_schemas()))
def test_every_exported_schema_is_a_valid_json_schema(name: str):
    schema = record_schemas()[name]
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    assert schema["type"] == "object" and schema["properties"]


def test_cli_export_writes_the_same_files(tmp_path: Path, capsys):
    assert main(["schemas", "export", "--out", str(tmp_path)]) == 0
    assert "schemas" in capsys.readouterr().out
    written = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    assert written == {name: render_schema(schema) for name, schema in record_schemas().items()}


def test_real_records_validate_against_their_schemas(q32_run):
    """Records written by the importer conform to the exported schemas; a broken one does not."""
    schemas = record_schemas()
    checks = {
        "Scenario.schema.json": q32_run.read("scenarios")[:20],
        "Toolkit.schema.json": q32_run.read("toolkits")[:5],
        "Trajectory.schema.json": q32_run.read("trajectories")[::97],
        "Judgment.schema.json": q32_run.read("judgments")[::193],
    }
    for name, records in checks.items():
        validator = jsonschema.Draft202012Validator(schemas[name])
        assert records
        for record in records:
            validator.validate(json.loads(record.model_dump_json()))
    judgment = json.loads(checks["Judgment.schema.json"][0].model_dump_json())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schemas["Judgment.schema.json"]).validate({**judgment, "score": 7})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schemas["Judgment.schema.json"]).validate({**judgment, "extra": 1})
