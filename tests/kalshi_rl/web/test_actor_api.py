"""The actor driven through the API on a live node: start a trained model on paper,
actions stream out, deploying another version switches the actor, the kill switch halts it,
and the episode's actions and metrics are served afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import websockets

from kalshi_rl.commands.stack import LiveStack

pytestmark = pytest.mark.slow


async def _train(client: httpx.AsyncClient, body: dict, wait: Any, name: str) -> dict:
    r = await client.post("/rl/training", json={**body, "name": name, "timesteps": 1024})
    assert r.status_code == 202, r.text
    job = await wait(client, r.json()["job_id"])
    assert job["state"] == "finished", job["log_tail"]
    return (await client.get("/rl/models", params={"name": name})).json()[-1]


async def test_actor_start_actions_deploy_switch_kill(
    client: httpx.AsyncClient, server: str, stack: LiveStack, train_body: dict, wait_training: Any
) -> None:
    v1 = await _train(client, train_body, wait_training, "actortest")
    r = await client.post("/rl/actor/start", json={"model_id": v1["id"]})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["available"] and a["state"] == "running" and a["model_id"] == v1["id"]
    assert a["model_name"] == "actortest" and a["episode_id"]

    async with websockets.connect(server.replace("http", "ws") + "/rl/ws/actions") as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "actor" and first["state"] == "running"
        acts = []
        while len(acts) < 5:
            m = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if m["type"] == "action":
                acts.append(m)
        assert all(m["ticker"] in stack.sim.tickers for m in acts)
        assert all(len(m["probs"]) == 5 and abs(sum(m["probs"]) - 1) < 1e-3 for m in acts)
        assert {m["action_name"] for m in acts} <= {
            "hold",
            "buy_yes",
            "sell_yes",
            "buy_no",
            "sell_no",
        }

    # a second version: deploying it from the API switches the running actor
    r = await client.post(
        "/rl/models",
        json={"name": "actortest", "algorithm": "PPO", "checkpoint_path": v1["checkpoint_path"],
              "parent_id": v1["id"]},
    )  # fmt: skip
    v2 = r.json()
    r = await client.post(f"/rl/models/{v2['id']}/deploy")
    assert r.status_code == 200, r.text
    assert r.json()["actor_switched"] is True
    a = (await client.get("/rl/actor")).json()
    assert a["model_id"] == v2["id"] and a["model_version"] == 2 and a["state"] == "running"
    st = (await client.get("/rl/status")).json()
    assert st["actor_state"] == "running" and st["actor_model_id"] == v2["id"]

    # the kill switch halts it
    r = await client.post("/rl/actor/kill", json={"reason": "test"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "halted" and "test" in (r.json()["halted_reason"] or "")
    assert (await client.get("/rl/status")).json()["actor_state"] == "halted"
    assert (await client.get("/rl/actor")).json()["orders"] == []  # halting cancels them all
    r = await client.post("/rl/actor/resume")  # the operator releases it
    assert r.status_code == 200 and r.json()["state"] == "running"
    await client.post("/rl/actor/kill", json={"reason": "again"})

    # the episodes and their actions are in PostgreSQL
    await client.post("/rl/actor/stop")
    eps = (await client.get("/rl/episodes")).json()
    assert eps and eps[0]["model_id"] in (v1["id"], v2["id"])
    ep_id = next(e["id"] for e in eps if e["model_id"] == v1["id"])

    async def has_actions() -> bool:
        d = (await client.get(f"/rl/episodes/{ep_id}")).json()
        return len(d["actions"]) > 0

    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while not await has_actions():
        if loop.time() >= end:  # a wait deadline, not a timing check
            pytest.fail("the episode's actions never reached PostgreSQL")
        await asyncio.sleep(0.5)
    d = (await client.get(f"/rl/episodes/{ep_id}")).json()
    assert d["metrics"]["steps"] >= len(d["actions"]) >= 1
    assert all(len(x["probs"]) == 5 for x in d["actions"])
    m = (await client.get(f"/rl/models/{v1['id']}/metrics")).json()
    assert m["paper"]["episodes"] >= 1 and "agent" in m["evaluation"]
