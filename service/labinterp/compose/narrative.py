"""Readable XHTML narratives (Resource.text) built from plain strings, escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

XHTML = "http://www.w3.org/1999/xhtml"


def section(title: str, items: Sequence[str]) -> str:
    if not items:
        return ""
    return f"<p><b>{escape(title)}</b></p><ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def div(title: str, lead: Sequence[str], *parts: str) -> dict[str, str]:
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in lead if p)
    return {"status": "generated", "div": f'<div xmlns="{XHTML}"><h3>{escape(title)}</h3>{paragraphs}{"".join(parts)}</div>'}
