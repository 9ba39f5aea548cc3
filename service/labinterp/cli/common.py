"""Helpers shared by the command-line modules (cli, cli_cohort, cli_sandbox), which must not import
each other: `python -m labinterp.cli.main` runs cli.py as __main__, and a module importing labinterp.cli.main then would
load it a second time."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from labinterp.config import Settings
from labinterp.errors import InputError, LabinterpError
from labinterp.knowledge import Knowledge, load_knowledge


class UsageFailure(LabinterpError):
    pass


def _fail(message: str) -> None:
    click.echo(f"labinterp: error: {message}", err=True)
    sys.exit(2)


def read_json(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte order mark, as some editors write, is accepted
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read: {exc}") from exc
    return parse_json(text, path)


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON text parsed; InputError (one line, naming `where`) for anything that is not JSON a reader can hold:
    malformed, nested deeper than the parser's recursion allows, or a number of more digits than Python converts."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(where, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(where, "not readable JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError):  # e.g. an integer of more than 4300 digits
        raise InputError(where, "not readable JSON: a number with too many digits, or text that is not UTF-8") from None


def write_json_atomic(path: str, data: Any) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output. The file gets the
    mode a new file gets (0666 less the umask), not mkstemp's private 0600."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _knowledge(mappings: str | None) -> Knowledge:
    return load_knowledge(mappings or Settings.from_env().mappings_dir)
