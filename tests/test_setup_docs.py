"""The README's two set-up commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_setup_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    readme_commands = [cmd for block in blocks for cmd in _commands(block)]
    ci = _commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    ci_commands = [c for c in ci if not c.startswith(("set ", "cd ", "#!"))]
    assert readme_commands == ci_commands
    assert len(readme_commands) == 2
    assert "torch==2.13.0" in readme_commands[0] and "pytest" in readme_commands[1]


def test_torch_is_not_pinned_in_the_package_metadata():
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(meta["dependencies"])
    assert "torch" not in core
    assert not any("torch==" in dep for deps in meta["optional-dependencies"].values() for dep in deps)
