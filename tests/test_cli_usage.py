"""The first hour with the CLI: usage errors are one line and exit 2 (never a traceback), `--version` and
`-h` work, every command's help is complete and readable, and every `prefkit` command the README shows
parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import prefkit
from prefkit.cli import app, main

REPO = Path(__file__).resolve().parents[1]
PREFKIT = Path(sys.executable).parent / "prefkit"
"""The installed console script, next to this interpreter."""


def run_prefkit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120", "PYTHONWARNINGS": "always"}
    return subprocess.run([str(PREFKIT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


README_EVAL_WITHOUT_EMULATOR = ["eval", "path/to/model", "--suite", "starter", "--split-seed", "0", "--out",
                                "runs/eval-safe"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect"], "Missing argument 'RUN'"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["pair", "run", "--strategy", "safety", "--out", "o", "--min-gap", "abc"], "'--min-gap'"),
        (["inspect", "run", "--json", "true"], "unexpected extra argument"),
        (README_EVAL_WITHOUT_EMULATOR, "Missing option '--emulator'"),
        (["import", "toolemu", "runs", "--cases", "c.json"], "Missing option '--toolkits'"),
        (["build", "r.yaml", "--no-such-flag"], "No such option: --no-such-flag"),
    ],
    ids=["missing-argument", "unknown-command", "bad-number", "flag-given-a-value", "readme-eval-line",
         "subcommand-missing-option", "unknown-option"],
)
def test_usage_error_is_one_line_and_exit_2(args, needle, tmp_path):
    result = run_prefkit(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Warning" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert len(lines) <= 2 and all(re.fullmatch(r"Try 'prefkit( [\w-]+)* -h' for help\.", x) for x in lines[1:])
    assert not list(tmp_path.iterdir())  # nothing written


def test_version_help_and_bare_prefkit(tmp_path):
    version = run_prefkit(["--version"], tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"prefkit {prefkit.__version__}\n", "")
    assert prefkit.__version__ == "0.1.0"
    for flag in ("-h", "--help"):
        helped = run_prefkit([flag], tmp_path)
        assert helped.returncode == 0 and "Usage: prefkit [OPTIONS] COMMAND" in helped.stdout
        assert "--version" in helped.stdout and "Traceback" not in helped.stderr
    sub = run_prefkit(["judge-agreement", "-h"], tmp_path)
    assert sub.returncode == 0 and "Usage: prefkit judge-agreement [OPTIONS] RUN" in sub.stdout
    bare = run_prefkit([], tmp_path)  # no command: the help, as a usage error
    assert bare.returncode == 2 and "Usage: prefkit [OPTIONS] COMMAND" in bare.stdout + bare.stderr
    assert "Traceback" not in bare.stdout + bare.stderr


def _commands(group: typer.core.TyperGroup, ctx: typer.Context, path: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from _commands(command, ctx, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(_commands(typer.main.get_command(app), typer.Context(typer.main.get_command(app))))


def test_every_option_has_help_and_flags_take_no_value():
    for path, command in COMMANDS:
        assert command.help, path
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"prefkit {' '.join(path)} {param.opts[0]} has no help"
                if param.type_descriptor.annotation is bool:
                    assert param.is_flag, f"prefkit {' '.join(path)} {param.opts[0]} should be a plain flag"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_shows_arguments_by_name_and_flags_without_a_type(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*path, "-h"]) == 0
    out = capsys.readouterr().out
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in out
    # the summary names only options that exist (e.g. `pair` once said it writes PAIRS, an option it lacks)
    command = dict(COMMANDS)[path]
    arguments = {p.name.upper() for p in command.params if p.param_type_name == "argument"}
    options = {p.name.upper() for p in command.params if p.param_type_name == "option"}
    for word in re.findall(r"\b[A-Z][A-Z_]{2,}\b", command.help.split("\n\n")[0]):
        assert word in arguments | options | {"TRL", "JSON", "OUT", "DPO", "LM", "HF_TOKEN"}, (path, word)
        if word == "OUT":
            assert "OUT" in options, (path, "names OUT without an --out option")


def _readme_commands() -> list[list[str]]:
    """Every `prefkit ...` line of the README's bash blocks (continuations joined, comments dropped)."""
    import shlex

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["prefkit"]:
                commands.append(words[1:])
    return commands


def _parse_only(args: list[str]) -> dict:
    """Parse ``prefkit ARGS`` exactly as the CLI does, down to the command, without running it; raises
    click's usage errors."""
    command = typer.main.get_command(app)
    ctx = command.make_context("prefkit", list(args))
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx.params


def test_every_readme_command_parses():
    commands = _readme_commands()
    assert len(commands) >= 15
    names = set()
    for args in commands:
        params = _parse_only(args)
        names.add(args[0])
        if args[0] == "eval":  # the README's eval gives the emulator and the judge it needs
            assert params["emulator"] and params["judge"]
    assert {"build", "import", "inspect", "judge", "judge-agreement", "pair", "validate", "audit", "publish",
            "train", "eval", "frontier"} <= names
