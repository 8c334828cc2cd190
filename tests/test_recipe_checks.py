"""Everything a recipe or a command names is checked before the first expensive stage: model specs (the
one MODEL@backend parser), backend options, local model folders, Hub ids (offline: in the local cache or
one clear error at once), tokenizers and source paths; and a misspelled recipe key is named as a typo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prefkit.backends.registry import check_model_spec, parse_model_spec
from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, " ".join(capsys.readouterr().err.split())  # rich wraps long lines


# Typos ------------------------------------------------------------------------------------------------

TOOLEMU_SOURCE = "source: {kind: toolemu, path: a, cases: b, toolkits: c}\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # a required key misspelled: pydantic alone says only "field required" for `strategy`
        ("name: x\n" + TOOLEMU_SOURCE + "datasets:\n  - name: s\n    stratgy: safety\n",
         ":5 [datasets.0.stratgy]: unknown key 'stratgy' (not a recipe field); did you mean 'strategy'?"),
        # an optional key misspelled (nothing is missing)
        ("name: x\n" + TOOLEMU_SOURCE + "datasets:\n  - name: s\n    strategy: safety\n    min_gapp: 1\n",
         ":6 [datasets.0.min_gapp]: unknown key 'min_gapp' (not a recipe field); did you mean 'min_gap'?"),
        # a top-level section
        ("name: x\n" + TOOLEMU_SOURCE + "datasets:\n  - {name: s, strategy: safety}\nspilt: {seed: 1}\n",
         ":5 [spilt]: unknown key 'spilt' (not a recipe field); did you mean 'split'?"),
        # inside the generate source (pydantic's location holds the union's tag, `generate`, left out here)
        ("source:\n  kind: generate\n  suite: starter\n  agents:\n    - {modle: m@openai}\n"
         "  emulator: {model: m@openai}\ndatasets:\n  - {name: s, strategy: safety}\n",
         ":5 [source.agents.0.modle]: unknown key 'modle' (not a recipe field); did you mean 'model'?"),
    ],
    ids=["required-key", "optional-key", "section", "generate-agent"],
)
def test_misspelled_recipe_key_is_named_as_a_typo_with_its_line(text, needle, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    rc, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert f"{path}{needle}" in err, err
    assert not (tmp_path / "out").exists()


def test_training_recipe_typo_uses_the_same_conversion(tmp_path, capsys):
    path = tmp_path / "train.yaml"
    path.write_text((REPO / "recipes" / "train" / "safe.yaml").read_text().replace("beta: 0.1", "betta: 0.1"))
    rc, err = run_cli(["train", path], capsys)
    assert rc == 2
    assert "[betta]: unknown key 'betta' (not a training recipe field); did you mean 'beta'?" in err, err


# Model specs in a recipe: checked when it is loaded, before any stage -----------------------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("judges.0.judge=foo@bar", "[judges.0.judge]: unknown backend 'bar' in model spec 'foo@bar'"),
        ("judges.0.judge=smollm2", "[judges.0.judge]: model spec 'smollm2' must be MODEL@BACKEND"),
        ("source.emulator.model=nosuchmodel@transformers",
         "[source.emulator.model]: model 'nosuchmodel' is neither a local folder nor in the local Hugging Face "
         "cache, and the Hub is off (HF_HUB_OFFLINE=1)"),
        ("source.agents.1.model=/no/such/folder@transformers",
         "[source.agents.1.model]: model folder not found: /no/such/folder"),
        ("source.agents.0.options.batchsize=4",
         "[source.agents.0.options.batchsize]: unknown transformers backend option 'batchsize'"),
        ("judges.0.backend_options.base_ur=http://x",
         "[judges.0.backend_options.base_ur]: unknown transformers backend option 'base_ur'"),
        ("source.scenarios.0=nope", "[source.scenarios.0]: no scenario 'nope' in suite 'starter'"),
        ("validation.tokenizer=/no/such/tokenizer", "[validation.tokenizer]: tokenizer folder not found"),
    ],
    ids=["unknown-backend", "no-backend", "hub-id-offline", "missing-folder", "agent-option", "judge-option",
         "scenario-id", "tokenizer"],
)
def test_bad_input_in_a_recipe_fails_before_the_first_stage(override, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, err = run_cli(["build", QUICKSTART, "--set", override, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert f"{QUICKSTART} {needle}" in err and "(set by --set)" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no stage ran: not even the build's work folder was made


def test_bad_spec_written_in_the_recipe_file_names_its_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = QUICKSTART.read_text().replace("- {judge: smollm2-135m-instruct@transformers",
                                          "- {judge: nosuch-org/nosuch-model@transformers")
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "nosuch-org" in row)
    rc, err = run_cli(["build", path, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert f"{path}:{line} [judges.0.judge]: model 'nosuch-org/nosuch-model' is neither" in err, err


def test_library_callers_get_the_same_check_from_run_build(tmp_path, monkeypatch):
    """``run_build`` checks a recipe it is handed (not loaded from a file) before its first stage too."""
    from prefkit.build import run_build

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = load_recipe(QUICKSTART, ["judges.0.judge=nosuchmodel@transformers"], check_inputs=False)
    with pytest.raises(InputError, match=r"\[judges.0.judge\]: model 'nosuchmodel' is neither"):
        run_build(recipe, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_quickstart_and_paper_recipes_pass_their_checks(shared_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_recipe(QUICKSTART)
    data = shared_dir / "data"
    load_recipe(REPO / "recipes" / "paper-q32.yaml", [
        f"source.path={data / 'paper' / 'raw_q32'}", f"source.cases={data / 'toolemu' / 'all_cases.json'}",
        f"source.toolkits={data / 'toolemu' / 'all_toolkits.json'}"])


# Model specs on the command line ---------------------------------------------------------------------


def test_rollout_judge_and_eval_specs_fail_at_once(tmp_path, capsys, monkeypatch, q32_run):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    rc, err = run_cli(["rollout", "starter", "--agent", "nosuchmodel@transformers", "--emulator", "m@openai",
                       "--out", out], capsys)
    assert rc == 2 and "[agent]: model 'nosuchmodel' is neither a local folder nor in the local" in err, err
    rc, err = run_cli(["rollout", "starter", "--agent", "m@openai", "--agent-option", "max_concurency=2",
                       "--emulator", "m@openai", "--out", out], capsys)
    assert rc == 2 and "unknown openai backend option 'max_concurency'" in err and "'max_concurrency'" in err, err
    assert not out.exists()
    judgments = (q32_run.path / "judgments.parquet").read_bytes()
    rc, err = run_cli(["judge", q32_run.path, "--judge", "foo@bar"], capsys)
    assert rc == 2 and "[judge]: unknown backend 'bar'" in err, err
    rc, err = run_cli(["judge", q32_run.path, "--judge", "/no/such/judge@transformers"], capsys)
    assert rc == 2 and "model folder not found: /no/such/judge" in err, err
    assert (q32_run.path / "judgments.parquet").read_bytes() == judgments
    rc, err = run_cli(["eval", "m@openai", "--suite", "starter", "--split-seed", "0", "--emulator", "m@openai",
                       "--judge", "q@openia", "--out", out], capsys)
    assert rc == 2 and "unknown backend 'openia'" in err and "did you mean q@openai?" in err, err
    assert not out.exists()


# The one spec parser and the model check ------------------------------------------------------------------


def test_one_spec_parser_names_records_and_checks_backends():
    from prefkit.evaluate import resolve_model
    from prefkit.rollout.config import AgentConfig

    assert parse_model_spec("me@host/model@openai") == ("me@host/model", "openai")
    # records of injected backends are named by the same parser, without asking for a registered backend
    assert AgentConfig(model="org/agent@script").identity().backend == "script"
    assert resolve_model("org/agent-7b@vllm", None) == ("org/agent-7b@vllm", "agent-7b")
    with pytest.raises(InputError, match="unknown backend 'script'"):
        parse_model_spec("org/agent@script")


def test_hub_id_in_the_local_cache_passes_offline(tmp_path):
    """A Hub id that is in the local cache (huggingface_hub's layout) passes offline; one that is not fails;
    both without the network (a subprocess, since huggingface_hub reads HF_HUB_CACHE at import)."""
    snapshot = tmp_path / "hub" / "models--some-org--tiny-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--some-org--tiny-model" / "refs").mkdir()
    (tmp_path / "hub" / "models--some-org--tiny-model" / "refs" / "main").write_text("0123abcd")
    code = (
        "from prefkit.backends.registry import check_model_files\n"
        "from prefkit.errors import InputError\n"
        "check_model_files('some-org/tiny-model')\n"
        "try:\n    check_model_files('some-org/other-model')\n"
        "except InputError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "model 'some-org/other-model' is neither a local folder nor in the local Hugging Face cache" in result.stdout


def test_online_a_hub_id_is_left_to_the_backend(monkeypatch):
    """Online, validation never waits on the network: a Hub id is not looked up (the backend fetches it)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_model_spec("nosuch-org/nosuch-model@transformers") == ("nosuch-org/nosuch-model", "transformers")
    with pytest.raises(InputError, match="model folder not found"):  # a path is a path, online or not
        check_model_spec("./no/such/model@transformers")


def test_a_local_model_folder_and_its_options_pass(tiny_model_dir):
    assert check_model_spec(f"{tiny_model_dir}@transformers", {"batch_size": 4, "device": "cpu"}) == (
        str(tiny_model_dir), "transformers")
    with pytest.raises(InputError, match="is a file"):
        check_model_spec(f"{tiny_model_dir / 'config.json'}@transformers")


def test_yaml_override_and_recipe_file_agree(tmp_path):
    """A spec set in the file and the same spec set with --set fail alike (one check)."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["judges"][0]["judge"] = "foo@bar"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as from_file:
        load_recipe(path)
    with pytest.raises(InputError) as from_set:
        load_recipe(QUICKSTART, ["judges.0.judge=foo@bar"])
    assert from_file.value.message == from_set.value.message.removesuffix(" (set by --set)")
    assert from_file.value.field == from_set.value.field == "judges.0.judge"
