"""The UI's API types are generated from the app's OpenAPI schema and committed; this
checks both committed files are what the app generates now, so UI and API cannot drift.

Regenerate with ``python -m kalshi_rl.web.openapi ui/openapi.json && (cd ui && npm run
gen:api)``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kalshi_rl.web.openapi import schema, schema_bytes

ROOT = Path(__file__).resolve().parents[3]
UI = ROOT / "ui"
FIX = "run: python -m kalshi_rl.web.openapi ui/openapi.json && (cd ui && npm run gen:api)"


def test_committed_openapi_matches_the_app() -> None:
    assert (UI / "openapi.json").read_bytes() == schema_bytes(), FIX


def test_committed_typescript_types_match_the_schema(tmp_path: Path) -> None:
    gen = UI / "node_modules" / ".bin" / "openapi-typescript"
    assert gen.exists(), "ui/node_modules missing: run `cd ui && npm ci` (make test does)"
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    out = tmp_path / "schema.ts"
    spec = tmp_path / "openapi.json"
    spec.write_bytes(schema_bytes())
    subprocess.run([str(gen), str(spec), "-o", str(out)], check=True, capture_output=True)
    assert out.read_text() == (UI / "src" / "api" / "schema.ts").read_text(), FIX


def test_schema_covers_every_route_and_types_bodies() -> None:
    doc = schema()
    paths = doc["paths"]
    for p in ("/rl/status", "/rl/markets", "/rl/markets/{ticker}", "/rl/models",
              "/rl/models/{model_id}/deploy", "/rl/models/{model_id}/rollback",
              "/rl/models/{model_id}/lineage", "/rl/episodes/{episode_id}", "/rl/training",
              "/rl/training/{run_id}/stop", "/rl/actor/kill", "/rl/actor/mode", "/rl/compare",
              "/rl/sessions/{session_id}", "/metrics"):  # fmt: skip
        assert p in paths, p
    schemas = doc["components"]["schemas"]
    assert schemas["TrainingStart"]["properties"]["timesteps"]["minimum"] == 256
    assert "live" in str(schemas["ActorMode"])
