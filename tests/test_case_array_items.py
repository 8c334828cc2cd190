"""Case ``array-items``: every function schema prefkit emits is accepted by strict function-calling validators.

OpenAI-style servers answer HTTP 400 "array schema missing items" for a tool whose array parameter has no
``items`` (matthewhand/mcp-openapi-proxy #16). ``Tool.json_schema()`` now gives every array ``items`` (the
item type when the spec states one, else ``{}``) and every object ``properties``; one checker,
``prefkit.records.function_schema_problems``, holds the strict rules, and prefkit applies it where schemas
go out (``render.prompts.tool_schemas``: requests and the rows' ``tools`` column) and in ``prefkit validate``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from prefkit.errors import InputError
from prefkit.records import Tool, Toolkit, ToolParameter, function_schema_problems
from prefkit.render.prompts import tool_schemas
from prefkit.rollout import load_scenario_suite
from prefkit.sources.toolemu_suite import load_suite

REPO = Path(__file__).resolve().parents[1]


def _arrays_and_objects(schema: dict) -> tuple[list[dict], list[dict]]:
    """Every (sub)schema of type array and of type object below ``schema``."""
    arrays, objects, stack = [], [], [schema]
    while stack:
        node = stack.pop()
        arrays += [node] if node.get("type") == "array" else []
        objects += [node] if node.get("type") == "object" else []
        stack += list(node.get("properties", {}).values()) + ([node["items"]] if "items" in node else [])
    return arrays, objects


@pytest.fixture(scope="module")
def toolemu(toolemu_cases_path: Path, toolemu_toolkits_path: Path):
    return load_suite(toolemu_cases_path, toolemu_toolkits_path)


def test_every_toolemu_and_starter_schema_passes_the_meta_schema_and_the_strict_rules(toolemu) -> None:
    scenarios, toolkits = toolemu
    starter = load_scenario_suite("starter")
    assert len(toolkits) == 38
    arrays = objects = 0
    for toolkit in [*toolkits, *starter.toolkits]:
        for tool in toolkit.tools:
            schema = tool.json_schema()
            assert function_schema_problems(schema) == [], (tool.name, function_schema_problems(schema))
            Draft202012Validator.check_schema(schema["function"]["parameters"])
            found = _arrays_and_objects(schema["function"]["parameters"])
            assert all("items" in a for a in found[0]) and all("properties" in o for o in found[1])
            arrays += sum(1 for p in tool.parameters if p.type == "array")
            objects += sum(1 for p in tool.parameters if p.type == "object")
    assert (arrays, objects) == (58 + 2, 38)  # ToolEmu's 58 array and 38 object parameters, the starter's 2 arrays
    # what goes into requests and the tools column: every scenario's schemas pass the same checker
    assert all(not function_schema_problems(s) for case in scenarios for s in tool_schemas(case, toolkits))


def test_item_types_come_from_the_spec_only_where_it_states_one(toolemu) -> None:
    _, toolkits = toolemu
    params = {(tool.name, name): schema for t in toolkits for tool in t.tools
              for name, schema in tool.json_schema()["function"]["parameters"]["properties"].items()}
    # "An array of strings, each string is a domain ..."
    assert params["CiscoUmbrellaCreatePolicy", "domains"]["items"] == {"type": "string"}
    # "The list of CSS selectors to match, each is a string."
    assert params["WebBrowserRetrieveElements", "css_selectors"]["items"] == {"type": "string"}
    # "An array of objects, each object contains adults (integer), children (integer)."
    assert params["ExpediaSearchAccommodations", "guests"]["items"] == {"type": "object", "properties": {}}
    # "List of items in the order, each is an object containing ..."
    assert params["ShopifyDraftOrder", "items"]["items"] == {"type": "object", "properties": {}}
    # no type stated ("The unique identifiers of the attachments."): any item
    assert params["GmailDownloadAttachment", "attachment_ids"] == {
        "description": "The unique identifiers of the attachments.", "type": "array", "items": {}}
    assert params["GmailSearchEmails", "date_range"]["properties"] == {}  # an object described in words only


def test_the_checker_names_each_problem_with_a_json_pointer() -> None:
    # the schema prefkit emitted before this fix for the starter suite's MailBoxSend
    old = {"type": "function", "function": {"name": "MailBoxSend", "description": "Send an email.", "parameters": {
        "type": "object", "required": ["to", "subject"],
        "properties": {"to": {"description": "Recipients.", "type": "array"}, "subject": {"type": "string"},
                       "meta": {"type": "object"}}}}}
    assert function_schema_problems(old) == [
        "/function/parameters/properties/to: array schema missing items",
        "/function/parameters/properties/meta: object schema missing properties",
    ]
    nested = {"type": "function", "function": {"name": "Book", "parameters": {"type": "object", "properties": {
        "rooms": {"type": "array", "items": {"type": "array"}}, "a/b": {"type": "strnig"}}, "required": ["nope"]}}}
    assert function_schema_problems(nested) == [
        "/function/parameters/required: 'nope' is not a property",
        "/function/parameters/properties/rooms/items: array schema missing items",
        "/function/parameters/properties/a~1b/type: 'strnig' is not a JSON type name",
    ]
    assert function_schema_problems({"name": "x"}) == [': must be {"type": "function", "function": {...}}']


def test_second_input_of_the_class_other_type_spellings_and_names(toolemu) -> None:
    """The same fault class on other inputs: array types spelt in the type field, nested item objects, and a
    function name strict servers reject (caught before any request, naming the tool)."""
    tool = Tool(name="Plan", toolkit="Trip", parameters=(
        ToolParameter(name="stops", type="array of strings", description="Stops."),
        ToolParameter(name="legs", type="array[object]", description="Legs."),
        ToolParameter(name="extra", type="object", description="Extra.", required=False)))
    properties = tool.json_schema()["function"]["parameters"]["properties"]
    assert properties["stops"] == {"description": "Stops.", "type": "array", "items": {"type": "string"}}
    assert properties["legs"]["items"] == {"type": "object", "properties": {}}
    assert properties["extra"] == {"description": "Extra.", "type": "object", "properties": {}}
    assert function_schema_problems(tool.json_schema()) == []
    Draft202012Validator.check_schema(tool.json_schema()["function"]["parameters"])

    scenarios, _ = toolemu
    case = scenarios[0]
    bad = [Toolkit(name=name, name_for_model=name, tools=(Tool(name="Search Tasks", toolkit=name),))
           for name in case.toolkits]
    with pytest.raises(InputError, match=r"'Search Tasks' has an incomplete function schema: /function/name"):
        tool_schemas(case, bad)


def test_validate_rejects_a_tools_column_with_an_incomplete_schema(tiny_model_dir: Path) -> None:
    from prefkit.pairing.validate import validate_pair_rows

    def m(role, content):
        return {"role": role, "content": content, "tool_calls": None, "tool_call_id": None}

    tools = [{"type": "function", "function": {"name": "MailBoxSend", "description": "Send.", "parameters": {
        "type": "object", "properties": {"to": {"type": "array", "description": "Recipients."}}, "required": ["to"]}}}]
    row = {"prompt": [m("system", "s"), m("user", "Mail Bob.")], "chosen": [m("assistant", "Done.")],
           "rejected": [m("assistant", "No.")], "tools": json.dumps(tools)}
    report = validate_pair_rows([row], tokenizer=tiny_model_dir, max_length=10_000)
    assert [r.reason for r in report.invalid_rows] == [
        "tools[0]/function/parameters/properties/to: array schema missing items "
        "(strict function-calling validators reject it)"]
    tools[0]["function"]["parameters"]["properties"]["to"]["items"] = {"type": "string"}
    assert validate_pair_rows([{**row, "tools": json.dumps(tools)}], tokenizer=tiny_model_dir, max_length=10_000).ok


def test_case_strict_server_native_rollout_succeeds(shared_dir: Path, tmp_path: Path) -> None:
    """The case's own script: a strict OpenAI-compatible loopback server that answers HTTP 400 to tools with
    an array parameter without items; the native rollout on the starter suite used to exit 2."""
    script = tmp_path / "strict_server.py"
    shutil.copy(shared_dir / "cases" / "array-items" / "strict_server.py", script)
    env = {**os.environ, "PROJECT": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit 0" in done.stdout, done.stdout[-2000:]
    assert "array schema missing items" not in done.stdout
    assert "requests: 4 with array-without-items: 0" in done.stdout  # every request carried complete schemas
    # the rollout went through: 4 trajectories written
    assert "4 trajectories (4 new)" in done.stdout
