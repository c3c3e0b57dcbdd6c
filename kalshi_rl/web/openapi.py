"""The API's OpenAPI document, as the UI's types are generated from it.

``python -m kalshi_rl.web.openapi ui/openapi.json`` writes it (sorted keys, so the file is
stable); ``cd ui && npm run gen:api`` turns it into ``ui/src/api/schema.ts``.  A test
checks both committed files match the app, so the UI and the API cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def schema() -> dict[str, Any]:
    """The OpenAPI document of ``create_app`` (no node needed: handlers are not run)."""
    from core.book import BookSet
    from kalshi_rl.web.app import create_app
    from kalshi_rl.web.config import WebConfig
    from kalshi_rl.web.node import NodeHandle
    from kalshi_rl.web.training import TrainingLauncher

    node = NodeHandle(books=BookSet(1), pool=None, dsn="")
    app = create_app(
        node, WebConfig(ui_dir=Path("/nonexistent")), launcher=TrainingLauncher("", Path("."))
    )
    doc: dict[str, Any] = app.openapi_schema.to_schema()
    return doc


def schema_bytes() -> bytes:
    """The document as the committed file holds it."""
    return orjson.dumps(schema(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m kalshi_rl.web.openapi OUT.json", file=sys.stderr)
        return 2
    Path(argv[0]).write_bytes(schema_bytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
