"""Golden outputs: run each example patient through the pipeline at a fixed time and compare the
transaction Bundle with tests/data/golden/, semantically: generated ids and times are normalized, so a
rule-set version bump (which changes every id) does not rewrite the meaning.

    python -m tests.golden_tool --update     # rewrite the goldens; review the diff before committing
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from labinterp.cli.main import read_json
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.pipeline import interpret_bundle
from tests.conftest import NOW, SITE

DATA = Path(__file__).resolve().parent / "data"
PATIENTS = DATA / "patients"
GOLDEN = DATA / "golden"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VOLATILE = {"issued", "recorded"}


def normalize(bundle: dict[str, Any]) -> Any:
    """Generated uuids become #1, #2... in order of first appearance; issue and record times become <now>;
    rendered attachments become <rendered> (their content is tested on its own)."""
    seen: dict[str, str] = {}
    text = _UUID.sub(lambda m: seen.setdefault(m.group(0), f"#{len(seen) + 1}"), json.dumps(bundle))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "contentType" in node and "data" in node:  # rendered HTML/PDF: checked by tests/unit/test_render.py
                return {**node, "data": "<rendered>"}
            return {key: ("<now>" if key in _VOLATILE else walk(v)) for key, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(json.loads(text))


def run(path: Path, k: Knowledge) -> dict[str, Any]:
    return interpret_bundle(read_json(str(path)), k, NOW).bundle


def main(argv: list[str]) -> int:
    k = load_knowledge(SITE)
    GOLDEN.mkdir(exist_ok=True)
    changed = 0
    for path in sorted(PATIENTS.glob("*.json")):
        out = normalize(run(path, k))
        target = GOLDEN / path.name
        text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
        if not target.exists() or target.read_text() != text:
            changed += 1
            if "--update" in argv:
                target.write_text(text)
            print(f"{'updated' if '--update' in argv else 'differs'}: {target.relative_to(DATA.parent.parent)}")
    print(f"{changed} golden files {'updated' if '--update' in argv else 'differ'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
