"""Where prefkit's data folders are: prompt templates and bundled suites (``generators/``) and dataset-card
templates (``cards/``).

They live at the repository root (the project's layout), next to the ``prefkit`` package, so prefkit runs
from a source checkout or an editable install (``pip install -e .``, as the README says). A package that
ships them inside itself as ``prefkit/_data/<name>`` is found too. This is the one place that knows where.
"""

from __future__ import annotations

import functools
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(*parts: str) -> Path:
    """The folder ``generators/...`` or ``cards/...``, e.g. ``data_dir("generators", "agent")``.

    Raises:
        FileNotFoundError: neither the checkout nor the installed package holds it.
    """
    for root in (_PACKAGE.parent, _PACKAGE / "_data"):
        candidate = root.joinpath(*parts)
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"prefkit's data folder {'/'.join(parts)} is missing: reinstall prefkit (pip install -e . from a checkout)"
    )


def data_file(*parts: str) -> Path:
    """A file inside a data folder, e.g. ``data_file("generators", "agent", "react_system.txt")``."""
    path = data_dir(*parts[:-1]) / parts[-1]
    if not path.is_file():
        raise FileNotFoundError(f"prefkit's data file {'/'.join(parts)} is missing (looked in {path.parent})")
    return path


@functools.cache
def template_text(*parts: str) -> str:
    """The text of a template file (e.g. ``template_text("generators", "agent", "react_user.txt")``) without
    its final newline: the one reader of the prompt templates of the agent, the emulator and the judges."""
    return data_file(*parts).read_text(encoding="utf-8").removesuffix("\n")
