"""Helpers shared by the command-line modules (cli, cli_cohort, cli_sandbox), which must not import
each other: `python -m labinterp.cli.main` runs cli.py as __main__, and a module importing labinterp.cli.main then would
load it a second time."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def _internal(exc: BaseException) -> None:
    """A bug: one line, no traceback (which could quote the input), exit 1."""
    click.echo(f"labinterp: error: unexpected internal error ({type(exc).__name__}); please report it", err=True)
    sys.exit(1)


@contextmanager
def one_line_errors(subject: str) -> Iterator[None]:
    """How every command fails: one line on standard error, never a traceback. Input, settings or output
    that cannot be used: exit 2; input nested deeper than the readers go: exit 2; a bug: exit 1."""
    try:
        yield
    except LabinterpError as exc:
        _fail(str(exc))
    except RecursionError:
        _fail(f"{subject}: not readable: nested too deeply")
    except Exception as exc:
        _internal(exc)


class OutputFailure(LabinterpError):
    """An output path that cannot be written (no such directory, no permission, a directory): exit 2, one line."""


def read_text(path: str) -> str:
    """A file's text as UTF-8; a byte order mark, as some editors write, is accepted. InputError (one line, naming
    the file) for a file that is missing, unreadable or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from exc


def read_json(path: str) -> Any:
    return parse_json(read_text(path), path)


def _number(digits: str) -> int | float:
    """An integer as JSON writes it; one of more digits than Python converts (sys.get_int_max_str_digits) is a float
    (inf past 1e308), so one odd value is a problem of its resource, not an input no reader can hold."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def parse_json(text: str | bytes, where: str, *, line: int | None = None) -> Any:
    """JSON text parsed; InputError (one line, naming `where`) for anything that is not JSON a reader can hold:
    malformed, or nested deeper than the parser's recursion allows. Integers too long for Python are floats.
    `line`: the text is that line of a file (NDJSON), named in the message."""
    if line is not None:
        where = f"{where} line {line}"
    try:
        return json.loads(text, parse_int=_number)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if line is not None else f"line {exc.lineno} column {exc.colno}"
        raise InputError(where, f"not JSON: {exc.msg} at {at}") from None
    except RecursionError:
        raise InputError(where, "not readable JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError):  # bytes that are not UTF-8 (the server's request bodies)
        raise InputError(where, "not readable JSON: text that is not UTF-8") from None


def check_writable(path: str) -> None:
    """Fail early (OutputFailure, naming the path) when `path` cannot be written: its directory missing or not
    writable, or the path a directory. Before any work, so a long run or a server write is not wasted."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputFailure(f"{path}: cannot be written: it is a directory")
    if not parent.is_dir():
        raise OutputFailure(f"{path}: cannot be written: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFailure(f"{path}: cannot be written: no permission to write in {parent}")


def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output. The file gets the
    mode a new file gets (0666 less the umask), not mkstemp's private 0600. OutputFailure (one line, naming the
    path) when it cannot be written."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise OutputFailure(f"{path}: cannot be written: {exc.strerror or exc}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputFailure(f"{path}: cannot be written: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    """`data` as indented JSON, written as write_text_atomic writes."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _knowledge(mappings: str | None) -> Knowledge:
    return load_knowledge(mappings or Settings.from_env().mappings_dir)
