"""Helpers shared by the command-line modules (cli, cli_cohort, cli_sandbox), which must not import
each other: `python -m service.cli` runs cli.py as __main__, and a module importing service.cli then would
load it a second time."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from service.config import Settings
from service.errors import InputError, LabinterpError
from service.knowledge import Knowledge, load_knowledge


class UsageFailure(LabinterpError):
    pass


def _fail(message: str) -> None:
    click.echo(f"labinterp: error: {message}", err=True)
    sys.exit(2)


def read_json(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def write_json_atomic(path: str, data: Any) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _knowledge(mappings: str | None) -> Knowledge:
    return load_knowledge(mappings or Settings.from_env().mappings_dir)
