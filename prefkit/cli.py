"""The ``prefkit`` command line. Each command parses its arguments, calls one library function and
prints; the work lives in the library. Nothing imports this module.

Errors: a ``PrefkitError`` (bad input, bad usage) prints one line to stderr and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from prefkit.errors import PrefkitError

app = typer.Typer(
    name="prefkit",
    help="Preference (DPO) datasets for tool-using LLM agents, judged on safety and helpfulness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schemas_app = typer.Typer(help="JSON Schemas of prefkit's records.", no_args_is_help=True)
import_app = typer.Typer(help="Import scenarios and judged trajectories made elsewhere.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(import_app, name="import")

# Shared options -----------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing, non-empty output directory.")]


def _console() -> Console:
    return Console(stderr=False)


def _fail(exc: Exception) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=getattr(exc, "exit_code", 2))


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


# schemas ------------------------------------------------------------------------------------------


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the schema files.")] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every record type to OUT (one file per type)."""
    from prefkit.schemas import export_schemas

    written = export_schemas(out)
    _console().print(f"wrote {len(written)} schemas to {out}")


# import -------------------------------------------------------------------------------------------
# (commands: `prefkit import toolemu`, `prefkit import toolemu-cases`)


# inspect ------------------------------------------------------------------------------------------


# pair / validate ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a failed check, 2 bad input or usage).

    Tests call ``main([...])`` in-process; the ``prefkit`` console script calls it with no arguments.
    """
    import click

    try:
        result = app(args=argv, prog_name="prefkit", standalone_mode=False)
    except PrefkitError as exc:
        return _fail(exc).exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        Console(stderr=True).print("aborted")
        return 1
    return result if isinstance(result, int) else 0


def entry_point() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
