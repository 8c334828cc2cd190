"""Importers of data made elsewhere. ``toolemu``: ToolEmu's scenario suite and judged run files."""

from prefkit.sources.toolemu import (
    ToolEmuImport,
    import_toolemu_cases,
    import_toolemu_runs,
    load_cases,
    load_toolkits,
    write_toolemu_import,
)

__all__ = [
    "ToolEmuImport",
    "import_toolemu_cases",
    "import_toolemu_runs",
    "load_cases",
    "load_toolkits",
    "write_toolemu_import",
]
