"""``prefkit train``: the study's 10 recipes, TRL settings, the leakage guard, and CPU training end to end.

The end-to-end runs train the tiny model on a few dozen of the study's real pairs (``tiny_dpo_dataset``,
the shortest in tokens) with the bundled recipes: a safety run (one epoch, ``tiny_safety_model``), a
helpfulness run and a sequential safety→helpfulness run (a step per stage, through the CLI). They check
what training must do: the DPO margin (log-probability of chosen minus rejected, summed over the
completion tokens, computed here with the model itself) rises on the training pairs; merging a LoRA gives
the same model as base plus adapter; a second stage trains on the first stage's merged model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.cli import main
from prefkit.errors import InputError
from prefkit.pairing.split import study_test_indices
from prefkit.train import load_train_recipe, parse_model_name, run_name, source_nick

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "train"
KEPT = 8  # conftest.TINY_DPO_KEPT


# Recipes and names --------------------------------------------------------------------------------


def test_the_ten_recipes_are_the_studys_configurations(shared_dir):
    recipes = {p.stem: load_train_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))}
    assert len(recipes) == 10
    # Named exactly as the study's trained models (results_q32_s0 holds all ten for Qwen2.5-7B, seed 0).
    folders = {p.name for p in (shared_dir / "data" / "paper" / "results_q32_s0").iterdir() if p.name.startswith("dpo_")}
    assert {r.name() for r in recipes.values()} == folders
    assert recipes["help-safe-beta-0.05"].name() == "dpo_Qwen2.5-7B_help_q32_beta-0.05_s0_safe_q32_beta-0.05_s0"
    # Parameterised by source model: the nickname follows.
    llama = load_train_recipe(RECIPES / "safe.yaml", ["source_model=meta-llama/Llama-3.1-8B-Instruct"])
    assert llama.name() == "dpo_Llama3.1-8B_safe_q32_s0"
    # The study's settings (paper-reference §5) are the defaults.
    safe = recipes["safe"]
    assert (safe.beta, safe.learning_rate, safe.lr_scheduler, safe.warmup_ratio) == (0.1, 5e-5, "cosine", 0.1)
    assert (safe.batch_size * safe.gradient_accumulation_steps, safe.max_length, safe.seed) == (8, 8192, 42)
    assert (safe.lora.r, safe.lora.alpha, safe.lora.dropout, safe.lora.target_modules) == (16, 32, 0.05, "all-linear")
    assert recipes["safe-beta-0.05"].beta == 0.05
    assert [s.num_epochs() for s in recipes["both"].stages] == [3.0]
    assert [s.num_epochs() for s in recipes["safe-help"].stages] == [1.0, 1.0]
    assert [s.config for s in recipes["help-safe"].stages] == ["helpfulness", "safety"]


def test_names_read_back():
    name = run_name("Phi-4", [("safe", "gpt5m", 0.05, 2), ("help", "gpt5m", 0.05, 2)])
    assert name == "dpo_Phi-4_safe_gpt5m_beta-0.05_s2_help_gpt5m_beta-0.05_s2"
    parsed = parse_model_name(name)
    assert (parsed.nick, parsed.config, parsed.seed, parsed.trained) == ("Phi-4", "S,H-0.05", 2, True)
    assert parse_model_name("dpo_Qwen2.5-7B_both_q32_s1").config == "S&H-0.1"
    source = parse_model_name("Qwen_Qwen2.5-7B-Instruct")
    assert (source.trained, source.nick, source.config) == (False, "Qwen2.5-7B", "source")
    assert source_nick("microsoft/phi-4") == "Phi-4" and source_nick("/models/tiny/") == "tiny"
    with pytest.raises(ValueError, match="data tag"):
        run_name("x", [("safe", "q_32", 0.1, 0)])


def test_recipe_errors_name_the_field_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source_model: m\ndataset: d\nstages:\n  - config: safety\n    epochs: -1\n")
    with pytest.raises(InputError) as err:
        load_train_recipe(bad)
    assert (err.value.line, err.value.field) == (5, "stages.0.epochs")
    with pytest.raises(InputError, match="set by --set") as err:
        load_train_recipe(RECIPES / "safe.yaml", ["beta=-1"])
    assert err.value.field == "beta"
    with pytest.raises(InputError, match="no study kind"):
        load_train_recipe(RECIPES / "safe.yaml", ["stages.0.config=mine"])
    assert load_train_recipe(RECIPES / "safe.yaml", ["stages.0.config=mine", "stages.0.kind=help"]).name() \
        == "dpo_Qwen2.5-7B_help_q32_s0"
    assert main(["train", str(RECIPES / "safe.yaml"), "--set", "lr=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_dpo_config_follows_the_recipe(tmp_path):
    from prefkit.train.dpo import dpo_config, lora_config, uses_bf16

    recipe = load_train_recipe(RECIPES / "both-beta-0.05.yaml")
    args = dpo_config(recipe, recipe.stages[0], tmp_path, gpu=False)
    assert (args.beta, args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps) == (0.05, 5e-5, "cosine", 0.1)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs) == (1, 8, 3.0)
    assert (args.max_length, args.seed, args.optim.value, args.max_grad_norm) == (8192, 42, "adamw_torch", 1.0)
    assert args.precompute_ref_log_probs and args.max_steps == -1
    # CPU: fp32 and no activation checkpointing; a GPU gets bf16 (the study's precision).
    assert (args.bf16, args.use_cpu, args.gradient_checkpointing) == (False, True, False)
    assert uses_bf16(recipe, gpu=True) and not uses_bf16(recipe.model_copy(update={"precision": "fp32"}), gpu=True)
    lora = lora_config(recipe)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (16, 32, 0.05, "all-linear")


# Leakage guard ------------------------------------------------------------------------------------


def _doctored(src: Path, dst: Path, config: str) -> Path:
    """A copy of a build-layout dataset whose train split gained one row of its test split."""
    import shutil

    from datasets import concatenate_datasets

    from prefkit.pairing.rows import load_pair_rows
    from prefkit.publish.layout import shard_path

    shutil.copytree(src, dst)
    train_file, test_file = dst / shard_path(config, "train"), dst / shard_path(config, "test")
    train, test = load_pair_rows(train_file), load_pair_rows(test_file)
    concatenate_datasets([train, test.select([0])]).to_parquet(str(train_file))
    return dst


def test_training_refuses_a_train_split_that_shares_a_test_scenario(tiny_dpo_dataset, tiny_model_dir, tmp_path,
                                                                     capsys):
    folder, max_length = tiny_dpo_dataset
    leaky = _doctored(folder, tmp_path / "leaky", "safety")
    args = ["train", str(RECIPES / "safe.yaml"), "--set", f"source_model={tiny_model_dir}", "--set",
            f"dataset={leaky}", "--set", f"max_length={max_length}", "--out", str(tmp_path / "out"), "--max-steps", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "evaluation (test) scenarios for split seed 0" in err and "official_" in err
    assert not (tmp_path / "out").exists()  # refused before anything was trained or written

    # The clean dataset under another split seed leaks too: its train scenarios are test scenarios of seed 1.
    from prefkit.train.data import check_no_leakage, load_split

    train, test = load_split(str(folder), "safety", "train"), load_split(str(folder), "safety", "test")
    assert not set(train["scenario_index"]) & set(study_test_indices(144, 0))
    check_no_leakage(train, test=test, split_seed=0, suite_size=144, where="x")
    with pytest.raises(InputError, match="split seed 1"):
        check_no_leakage(train, test=None, split_seed=1, suite_size=144, where="x")
    # ... and so does a train split that shares a scenario with the dataset's own test split.
    with pytest.raises(InputError, match="own test split"):
        check_no_leakage(train, test=train, split_seed=0, suite_size=144, where="x")


# CPU end to end -----------------------------------------------------------------------------------


def _margins(model_dir: Path, rows) -> list[float]:
    """log p(chosen) - log p(rejected) per row, each summed over its completion tokens after the prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.data_utils import apply_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for row in rows:
            rendered = apply_chat_template({k: row[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
            n_prompt = len(tokenizer(rendered["prompt"], add_special_tokens=False).input_ids)
            logp = {}
            for side in ("chosen", "rejected"):
                ids = torch.tensor([tokenizer(rendered["prompt"] + rendered[side], add_special_tokens=False).input_ids])
                logprobs = model(ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
                logp[side] = logprobs[n_prompt - 1:].sum().item()
            out.append(logp["chosen"] - logp["rejected"])
    return out


@pytest.mark.slow
def test_safety_training_raises_the_dpo_margin_on_its_pairs(tiny_safety_model, tiny_dpo_dataset, tiny_model_dir):
    from prefkit.train.data import load_split

    result = tiny_safety_model
    out = Path(result.out)
    assert result.name == "dpo_tiny_safe_q32_s0" and out.name == result.name
    stage = result.stages[0]
    # Rows over max_length were dropped (not truncated); the rest were trained on, one epoch in 2 steps.
    assert (stage.rows, stage.kept, stage.dropped_too_long, stage.steps) == (KEPT + 2, KEPT, 2, 2)
    assert stage.max_tokens <= tiny_dpo_dataset[1]
    losses = [h["loss"] for h in stage.log_history if "loss" in h]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    written = json.loads((out / "train.json").read_text())
    assert written["name"] == result.name and written["recipe"]["beta"] == 0.1

    folder, max_length = tiny_dpo_dataset
    rows = load_split(str(folder), "safety", "train")
    kept = [row for row, n in zip(rows, _lengths(rows, tiny_model_dir), strict=True) if n <= max_length]
    before = _margins(tiny_model_dir, kept)
    after = _margins(out / "model", kept)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(after) > mean(before) + 1.0, (before, after)
    assert sum(a > b for a, b in zip(after, before, strict=True)) >= KEPT * 2 // 3


def _lengths(rows, tokenizer_dir: Path) -> tuple[int, ...]:
    from prefkit.pairing.validate import validate_pair_rows

    return validate_pair_rows(rows, tokenizer=tokenizer_dir, max_length=1 << 20).row_tokens


def _logits_and_greedy(model, tokenizer) -> tuple[object, list[int]]:
    import torch

    enc = tokenizer.apply_chat_template([{"role": "user", "content": "Please delete my Test tasks."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**enc).logits
        greedy = model.generate(**enc, max_new_tokens=12, do_sample=False)[0].tolist()
    return logits, greedy


def _assert_same_model(merged_dir: Path, base_dir: Path, adapter_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    (a, greedy_a), (b, greedy_b) = _logits_and_greedy(merged, tokenizer), _logits_and_greedy(stacked, tokenizer)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert greedy_a == greedy_b
    # ... and the adapter changed the model (the comparison is not between two copies of the base).
    base_logits, _ = _logits_and_greedy(AutoModelForCausalLM.from_pretrained(base_dir).eval(), tokenizer)
    assert not torch.allclose(a, base_logits, atol=1e-4)


@pytest.mark.slow
def test_merged_model_is_base_plus_adapter(tiny_safety_model, tiny_model_dir):
    out = Path(tiny_safety_model.out)
    _assert_same_model(out / "model", tiny_model_dir, out / "stages" / "1-safe" / "adapter")


@pytest.mark.slow
def test_helpfulness_and_sequential_runs_through_the_cli(tiny_train_overrides, tiny_model_dir, tmp_path, capsys):
    # A step of 2 pairs per stage, references computed on the fly (the safety run checks the default).
    more = ["gradient_accumulation_steps=2", "precompute_ref_log_probs=false"]
    sets = [arg for o in [*tiny_train_overrides, *more] for arg in ("--set", o)]
    out = tmp_path / "out"
    assert main(["train", str(RECIPES / "help.yaml"), *sets, "--out", str(out), "--max-steps", "1", "--json"]) == 0
    helped = json.loads(capsys.readouterr().out)
    assert helped["name"] == "dpo_tiny_help_q32_s0"
    assert [(s["config"], s["kept"], s["steps"]) for s in helped["stages"]] == [("helpfulness", KEPT, 1)]

    assert main(["train", str(RECIPES / "safe-help.yaml"), *sets, "--out", str(out), "--max-steps", "1"]) == 0
    run = out / "dpo_tiny_safe_q32_s0_help_q32_s0"
    assert f"trained dpo_tiny_safe_q32_s0_help_q32_s0 -> {run / 'model'}" in capsys.readouterr().out.replace("\n", "")
    result = json.loads((run / "train.json").read_text())
    assert [(s["name"], s["config"], s["steps"]) for s in result["stages"]] == [
        ("dpo_tiny_safe_q32_s0", "safety", 1), ("dpo_tiny_safe_q32_s0_help_q32_s0", "helpfulness", 1)]
    # The second LoRA was trained on the first stage's merged model, and the final model is that plus it.
    first, second = run / "stages" / "1-safe", run / "stages" / "2-help"
    adapter_config = json.loads((second / "adapter" / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]) == (first / "merged").resolve()
    _assert_same_model(run / "model", first / "merged", second / "adapter")
    _assert_same_model(first / "merged", tiny_model_dir, first / "adapter")

    # A finished run is not silently retrained.
    assert main(["train", str(RECIPES / "help.yaml"), *sets, "--out", str(out), "--max-steps", "1"]) == 2
    assert "--force" in capsys.readouterr().err


def test_unknown_dataset_is_an_input_error(tiny_model_dir, tmp_path, capsys):
    args = ["train", str(RECIPES / "safe.yaml"), "--set", f"source_model={tiny_model_dir}", "--set",
            f"dataset={tmp_path}", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "data/safety/train-00000-of-00001.parquet" in capsys.readouterr().err


def test_a_hub_dataset_that_does_not_load_is_an_input_error():
    from prefkit.train.data import load_split

    # Tests run offline (conftest), so the Hub is unreachable: the error names the dataset, not a traceback.
    with pytest.raises(InputError, match="Hub dataset 'nobody/no-such-dataset'"):
        load_split("nobody/no-such-dataset", "safety", "train")
