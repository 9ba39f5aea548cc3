"""One Jinja environment for every page labinterp renders (reports, dashboard, cohort report): the templates
are files in labinterp/templates/, autoescaped, compiled once and cached by Jinja's own loader."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, Template

ENV = Environment(loader=PackageLoader("labinterp", "templates"), autoescape=True, auto_reload=False)


def template(name: str) -> Template:
    return ENV.get_template(name)
