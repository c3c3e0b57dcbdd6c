from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

import asyncpg
import orjson
import pytest

from kalshi_rl import registry as reg
from kalshi_rl.errors import RegistryError
from kalshi_rl.store import db


async def _conn(dsn: str) -> asyncpg.Connection:
    return await db.connect(dsn)


def test_config_hash_is_canonical_and_sensitive() -> None:
    a = {"lr": 3e-4, "net": [64, 64], "obs": {"k": 5, "hist": 32}}
    b = {"obs": {"hist": 32, "k": 5}, "net": [64, 64], "lr": 3e-4}
    assert reg.config_hash(a) == reg.config_hash(b)
    assert len(reg.config_hash(a)) == 64
    assert reg.config_hash(a) != reg.config_hash({**a, "lr": 1e-4})
    assert reg.config_hash({"t": (1, 2)}) == reg.config_hash({"t": [1, 2]})
    with pytest.raises(RegistryError, match="not JSON-serialisable"):
        reg.config_hash({"x": object()})


async def test_register_numbers_versions_per_name(pg_dsn: str) -> None:
    conn = await _conn(pg_dsn)
    try:
        v1 = await reg.register(
            conn,
            "ppo-btc",
            "PPO",
            env_config={"k": 5},
            hyperparams={"lr": 0.001},
            markets=["A", "B"],
            data_window={"start": "2026-01-01"},
            git_commit="abc",
        )
        v2 = await reg.register(conn, "ppo-btc", "PPO", env_config={"k": 6}, parent_id=v1.id)
        other = await reg.register(conn, "a2c-x", "A2C", env_config={})
        assert (v1.version, v2.version, other.version) == (1, 2, 1)
        assert v1.status is reg.ModelStatus.TRAINING
        assert v1.markets == ("A", "B") and v1.hyperparams == {"lr": 0.001}
        assert v1.config_hash == reg.config_hash({"k": 5})
        assert v2.parent_id == v1.id
        got = await reg.get_version(conn, "ppo-btc", 2)
        assert got == v2
        assert (await reg.resolve(conn, "ppo-btc")).id == v2.id
        assert (await reg.resolve(conn, "ppo-btc:1")).id == v1.id
        assert (await reg.resolve(conn, str(other.id))).name == "a2c-x"
        assert [m.id for m in await reg.list_models(conn)] == [other.id, v1.id, v2.id]
        assert [m.id for m in await reg.list_models(conn, name="ppo-btc")] == [v1.id, v2.id]
        with pytest.raises(RegistryError, match="no model 'ppo-btc' version 9"):
            await reg.get_version(conn, "ppo-btc", 9)
        with pytest.raises(RegistryError, match="parent model id 999"):
            await reg.register(conn, "ppo-btc", "PPO", env_config={}, parent_id=999)
        with pytest.raises(RegistryError, match="model name"):
            await reg.register(conn, "bad name/..", "PPO", env_config={})
        upd = await reg.update(conn, v1.id, metrics={"sharpe": 1.5}, checkpoint_path="/x.zip")
        upd = await reg.update(conn, v1.id, metrics={"pnl": 2})
        assert upd.metrics == {"sharpe": 1.5, "pnl": 2} and upd.checkpoint_path == "/x.zip"
    finally:
        await conn.close()


async def test_concurrent_registration_gets_distinct_versions(pg_dsn: str) -> None:
    conns = [await _conn(pg_dsn) for _ in range(4)]
    try:
        got = await asyncio.gather(
            *(reg.register(c, "same", "PPO", env_config={"i": i}) for i, c in enumerate(conns))
        )
        assert sorted(m.version for m in got) == [1, 2, 3, 4]
    finally:
        for c in conns:
            await c.close()


async def test_transitions_validated(pg_dsn: str) -> None:
    conn = await _conn(pg_dsn)
    try:
        m = await reg.register(conn, "m", "PPO", env_config={})
        with pytest.raises(RegistryError, match="cannot go from training to deployed"):
            await reg.deploy(conn, m.id)
        with pytest.raises(RegistryError, match="unknown status 'live'"):
            await reg.set_status(conn, m.id, "live")
        with pytest.raises(RegistryError, match="no model with id 12345"):
            await reg.promote(conn, 12345)
        assert (await reg.promote(conn, m.id)).status is reg.ModelStatus.READY
        assert (await reg.archive(conn, m.id)).status is reg.ModelStatus.ARCHIVED
        with pytest.raises(RegistryError, match="allowed: ready"):
            await reg.deploy(conn, m.id)
        assert (await reg.promote(conn, m.id)).status is reg.ModelStatus.READY
        f = await reg.register(conn, "m", "PPO", env_config={})
        assert (await reg.mark_failed(conn, f.id)).status is reg.ModelStatus.FAILED
        with pytest.raises(RegistryError, match="cannot go from failed to ready"):
            await reg.promote(conn, f.id)
        # a rejected transition leaves the row untouched
        assert (await reg.get(conn, f.id)).status is reg.ModelStatus.FAILED
    finally:
        await conn.close()


async def test_deploy_demotes_previous_and_notifies(pg_dsn: str) -> None:
    conn = await _conn(pg_dsn)
    listener = await asyncpg.connect(pg_dsn)
    got: asyncio.Queue[dict] = asyncio.Queue()

    def on_notify(_c: object, _pid: int, channel: str, payload: str) -> None:
        assert channel == reg.NOTIFY_CHANNEL
        got.put_nowait(orjson.loads(payload))

    await listener.add_listener(reg.NOTIFY_CHANNEL, on_notify)
    try:
        a = await reg.register(conn, "live", "PPO", env_config={"a": 1}, checkpoint_path="/a.zip")
        b = await reg.register(conn, "live", "PPO", env_config={"b": 1})
        await reg.promote(conn, a.id)
        await reg.promote(conn, b.id)
        for _ in range(2):
            await asyncio.wait_for(got.get(), 5)
        da = await reg.deploy(conn, a.id)
        assert da.status is reg.ModelStatus.DEPLOYED
        ev = await asyncio.wait_for(got.get(), 5)
        assert ev == {
            "event": "status",
            "id": a.id,
            "name": "live",
            "version": 1,
            "status": "deployed",
            "previous_status": "ready",
            "checkpoint_path": "/a.zip",
            "config_hash": a.config_hash,
            "demoted_id": None,
        }
        await reg.deploy(conn, b.id)
        ev = await asyncio.wait_for(got.get(), 5)
        assert ev["id"] == b.id and ev["status"] == "deployed" and ev["demoted_id"] == a.id
        assert (await reg.get(conn, a.id)).status is reg.ModelStatus.READY
        assert (await reg.deployed(conn, "live")).id == b.id  # type: ignore[union-attr]
        n = await conn.fetchval("SELECT count(*) FROM models WHERE status = 'deployed'")
        assert n == 1
        # a rejected transition sends nothing
        with pytest.raises(RegistryError):
            await reg.deploy(conn, b.id)
        await reg.archive(conn, b.id)
        ev = await asyncio.wait_for(got.get(), 5)
        assert ev["status"] == "archived" and ev["previous_status"] == "deployed"
        assert got.empty()
        assert await reg.deployed(conn, "live") is None
    finally:
        await listener.close()
        await conn.close()


async def test_lineage(pg_dsn: str) -> None:
    conn = await _conn(pg_dsn)
    try:
        root = await reg.register(conn, "l", "PPO", env_config={})
        c1 = await reg.register(conn, "l", "PPO", env_config={}, parent_id=root.id)
        c2 = await reg.register(conn, "l-fork", "PPO", env_config={}, parent_id=root.id)
        g = await reg.register(conn, "l", "PPO", env_config={}, parent_id=c1.id)
        assert [m.id for m in await reg.ancestors(conn, g.id)] == [c1.id, root.id]
        assert await reg.ancestors(conn, root.id) == []
        assert [m.id for m in await reg.descendants(conn, root.id)] == [c1.id, c2.id, g.id]
        assert await reg.descendants(conn, g.id) == []
        with pytest.raises(RegistryError, match="no model with id"):
            await reg.ancestors(conn, 10_000)
    finally:
        await conn.close()


def test_checkpoint_store_writes_loadable_sb3_zip_with_metadata(tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO

    env = gym.make("CartPole-v1")
    model = PPO(
        "MlpPolicy", env, n_steps=32, batch_size=32, seed=0, policy_kwargs={"net_arch": [8]}
    )
    cfg = {"env": "CartPole-v1", "n_steps": 32}
    meta = reg.checkpoint_metadata(
        cfg,
        name="cp",
        version=3,
        algorithm="PPO",
        data_window={"start": 1},
        metrics={"r": 1.0},
        commit="deadbeef",
    )
    store = reg.CheckpointStore(tmp_path / "models")
    path = store.save(model, meta)
    assert path == tmp_path / "models" / "cp" / "v3" / "model.zip"
    inside = reg.read_embedded_metadata(path)
    assert inside == store.read_metadata("cp", 3) == orjson.loads(orjson.dumps(meta))
    assert inside["config_hash"] == reg.config_hash(cfg)
    assert inside["git_commit"] == "deadbeef"
    for pkg in ("python", "numpy", "numba", "torch", "stable-baselines3", "gymnasium"):
        assert inside["packages"][pkg], pkg
    loaded = PPO.load(path)
    obs, _ = env.reset(seed=1)
    assert loaded.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    # re-embedding replaces the entry instead of duplicating it
    reg.embed_metadata(path, {**meta, "metrics": {"r": 2.0}})
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist().count(reg.ZIP_METADATA_ENTRY) == 1
    assert reg.read_embedded_metadata(path)["metrics"] == {"r": 2.0}
    PPO.load(path)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("data", "{}")
    with pytest.raises(RegistryError, match=r"has no kalshi_rl_metadata\.json"):
        reg.read_embedded_metadata(plain)
    with pytest.raises(RegistryError, match="no checkpoint metadata"):
        store.read_metadata("cp", 4)


def test_default_checkpoint_root_follows_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path))
    store = reg.CheckpointStore.default()
    assert store.model_path("m", 2) == tmp_path / "models" / "m" / "v2" / "model.zip"


@pytest.fixture
async def two_versions(pg_dsn: str) -> str:
    conn = await _conn(pg_dsn)
    try:
        a = await reg.register(conn, "cli", "PPO", env_config={"a": 1})
        await reg.register(conn, "cli", "PPO", env_config={"b": 1}, parent_id=a.id)
    finally:
        await conn.close()
    return pg_dsn


def test_cli_commands(two_versions: str) -> None:
    from typer.testing import CliRunner

    from kalshi_rl.commands.models import app

    run = CliRunner()
    dbo = ["--database-url", two_versions]
    res = run.invoke(app, ["list", *dbo])
    assert res.exit_code == 0 and res.output.count("cli:") == 2 and "training" in res.output
    res = run.invoke(app, ["deploy", "cli:1", *dbo])
    assert res.exit_code == 1 and "cannot go from training to deployed" in res.output
    for args in (
        ["promote", "cli:1"],
        ["deploy", "cli:1"],
        ["promote", "cli:2"],
        ["deploy", "cli:2"],
    ):
        res = run.invoke(app, [*args, *dbo])
        assert res.exit_code == 0, res.output
    res = run.invoke(app, ["list", "--status", "deployed", *dbo])
    assert res.output.count("cli:") == 1 and "cli:2" in res.output
    res = run.invoke(app, ["show", "cli:1", *dbo])
    shown = orjson.loads(res.output)
    assert shown["status"] == "ready" and shown["env_config"] == {"a": 1}
    res = run.invoke(app, ["lineage", "cli", *dbo])
    assert res.exit_code == 0
    up, _, down = res.output.partition("this:")
    assert "cli:1" in up and "cli:2" in down.split("descendants:")[0]
    res = run.invoke(app, ["archive", "cli:2", *dbo])
    assert res.exit_code == 0 and "archived" in res.output
    res = run.invoke(app, ["show", "nope", *dbo])
    assert res.exit_code == 1 and "no model named 'nope'" in res.output
