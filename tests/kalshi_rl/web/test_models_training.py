"""Training from the API (a separate process), progress over /rl/ws/training, and the
registry routes on the model it produced: detail, notes, deploy, rollback, archive,
create from a checkpoint, lineage, compare."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import websockets

pytestmark = pytest.mark.slow


async def test_train_deploy_rollback_archive(
    client: httpx.AsyncClient, server: str, train_body: dict, wait_training: Any
) -> None:
    TRAIN = train_body
    ws_url = server.replace("http", "ws") + "/rl/ws/training"
    async with websockets.connect(ws_url) as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "runs"
        r = await client.post("/rl/training", json=TRAIN)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        # progress arrives over the socket from the training process (NOTIFY)
        seen: set[str] = set()
        while "finished" not in seen:
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 240))
            if msg["type"] == "training":
                seen.add(msg["event"])
        assert {"started", "progress", "finished"} <= seen
    job = await wait_training(client, job_id)
    assert job["state"] == "finished", job["log_tail"]

    runs = (await client.get("/rl/training")).json()
    run = next(x for x in runs if x["model_name"] == "webtest")
    assert run["status"] == "finished" and run["job_id"] == job_id
    assert run["timesteps"] >= 2048
    detail = (await client.get(f"/rl/training/{run['id']}")).json()
    assert any("charts/sps" in p["metrics"] for p in detail["progress"])
    assert any("eval/total_pnl" in p["metrics"] for p in detail["progress"])

    models = (await client.get("/rl/models", params={"name": "webtest"})).json()
    assert [m["version"] for m in models] == [1]
    v1 = models[0]
    assert v1["status"] == "ready" and v1["checkpoint_path"]
    assert "agent" in v1["metrics"]["eval"]

    # notes
    r = await client.put(f"/rl/models/{v1['id']}", json={"notes": "first try"})
    assert r.status_code == 200 and r.json()["notes"] == "first try"

    # a second version from the same checkpoint, child of v1
    r = await client.post(
        "/rl/models",
        json={"name": "webtest", "algorithm": "PPO", "checkpoint_path": v1["checkpoint_path"],
              "parent_id": v1["id"], "notes": "copy"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["status"] == "ready" and v2["parent_id"] == v1["id"]
    lin = (await client.get(f"/rl/models/{v2['id']}/lineage")).json()
    assert [m["id"] for m in lin["ancestors"]] == [v1["id"]]
    lin1 = (await client.get(f"/rl/models/{v1['id']}/lineage")).json()
    assert [m["id"] for m in lin1["descendants"]] == [v2["id"]]

    # deploy v1, then v2 (demotes v1), then roll back to v1
    r = await client.post(f"/rl/models/{v1['id']}/deploy")
    assert r.status_code == 200 and r.json()["model"]["status"] == "deployed"
    r = await client.post(f"/rl/models/{v2['id']}/deploy")
    assert r.json()["demoted_id"] == v1["id"]
    r = await client.post(f"/rl/models/{v2['id']}/rollback")
    assert r.status_code == 200, r.text
    assert r.json()["model"]["id"] == v1["id"] and r.json()["model"]["status"] == "deployed"
    r = await client.post(f"/rl/models/{v1['id']}/rollback")  # nothing older than v1
    assert r.status_code == 409 and "no ready version older" in r.json()["detail"]

    # archive v2; an illegal transition is a 409 with the registry's reason
    r = await client.post(f"/rl/models/{v2['id']}/archive")
    assert r.json()["status"] == "archived"
    r = await client.put(f"/rl/models/{v2['id']}", json={"status": "deployed"})
    assert r.status_code == 409 and "cannot go from archived" in r.json()["detail"]
    assert (await client.get("/rl/models", params={"status": "archived"})).json()[0]["id"] == v2[
        "id"
    ]

    # compare: evaluation tables side by side
    r = await client.get("/rl/compare", params={"ids": [v1["id"], v2["id"]]})
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert [m["model_id"] for m in cmp["models"]] == [v1["id"], v2["id"]]
    assert "total_pnl" in cmp["metric_names"]
    assert (await client.get("/rl/models/999999")).status_code == 404


async def test_training_stop_and_bad_requests(
    client: httpx.AsyncClient, train_body: dict, wait_training: Any
) -> None:
    TRAIN = train_body
    r = await client.post("/rl/training", json={**TRAIN, "name": "longrun", "timesteps": 5_000_000})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    loop = asyncio.get_running_loop()
    end = loop.time() + 120
    run_id = None
    while run_id is None and loop.time() < end:  # the child registers its run
        await asyncio.sleep(0.5)
        run_id = next(
            (x["id"] for x in (await client.get("/rl/training")).json()
             if x["model_name"] == "longrun" and x["status"] == "running"), None,
        )  # fmt: skip
    assert run_id is not None
    r = await client.post(f"/rl/training/{run_id}/stop")
    assert r.status_code == 202, r.text
    job = await wait_training(client, job_id)
    assert job["state"] == "stopped"
    run = (await client.get(f"/rl/training/{run_id}")).json()["run"]
    assert run["status"] == "stopped"
    r = await client.post(f"/rl/training/{run_id}/stop")
    assert r.status_code == 409

    # bad bodies: 400 with the reason
    for body, reason in (
        ({**TRAIN, "timesteps": 5}, "timesteps"),
        ({**TRAIN, "algorithm": "dqn"}, "algorithm"),
        ({**TRAIN, "name": "bad name!"}, "name"),
        ({**TRAIN, "surprise": 1}, "surprise"),
        ({k: v for k, v in TRAIN.items() if k != "dataset"}, "exactly one of dataset"),
        ({**TRAIN, "dataset": "/nope/x.parquet"}, "not found"),
        ({**TRAIN, "dataset": "sim:0:20:1"}, "sim:MARKETS"),
        ({**TRAIN, "dataset": "rolling:9:20:1"}, "rolling:SERIES"),
        ({**TRAIN, "dataset": "synthetic:a:b"}, "synthetic:S:L:SEED"),
    ):
        r = await client.post("/rl/training", json=body)
        assert r.status_code == 400, (body, r.text)
        assert reason in r.text, r.text
    r = await client.post("/rl/training", content=b"{not json")
    assert r.status_code == 400
