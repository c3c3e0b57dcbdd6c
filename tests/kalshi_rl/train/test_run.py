"""End-to-end training runs against a real PostgreSQL: registry, progress rows, NOTIFY."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from stable_baselines3 import PPO

from core.features import N_FEATURES
from kalshi_rl import registry
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.errors import ConfigError
from kalshi_rl.store import db
from kalshi_rl.train.callbacks import NOTIFY_CHANNEL
from kalshi_rl.train.run import Args, split_segments, train


def _args(dsn: str, tmp: Path, **kw: object) -> Args:
    base: dict[str, object] = dict(
        dataset="synthetic:10:120:5",
        timesteps=4096,
        n_envs=16,
        n_steps=64,
        batch_size=256,
        n_epochs=2,
        eval_every=2048,
        progress_every=1024,
        database_url=dsn,
        checkpoint_dir=tmp / "models",
        progress_bar=False,
        name="smoke",
        seed=3,
    )
    base.update(kw)
    return Args(**base)  # type: ignore[arg-type]


async def test_train_ppo_registers_ready_model_with_progress(pg_dsn: str, tmp_path: Path) -> None:
    listener = await asyncpg.connect(pg_dsn)
    notes: list[dict] = []
    await listener.add_listener(NOTIFY_CHANNEL, lambda *a: notes.append(json.loads(a[3])))
    try:
        res = await asyncio.to_thread(train, _args(pg_dsn, tmp_path))
        # NOTIFY is asynchronous: wait for the run's "finished" event, not a fixed time
        end = asyncio.get_running_loop().time() + 30
        while not any(n["run_id"] == res.run_id and n["event"] == "finished" for n in notes):
            if asyncio.get_running_loop().time() > end:
                pytest.fail(f"no 'finished' notification for run {res.run_id}: {notes}")
            await asyncio.sleep(0.02)
    finally:
        await listener.close()

    conn = await db.connect(pg_dsn)
    try:
        mv = await registry.get(conn, res.model_id)
        assert mv.status == registry.ModelStatus.READY and mv.version == 1
        assert mv.algorithm == "PPO" and mv.parent_id is None
        assert mv.metrics["timesteps"] >= 4096
        assert set(mv.metrics["eval"]) == {
            "agent",
            "hold",
            "random",
            "cheaper_side",
            "mean_reversion",
            "bias_aware",
            "oracle",
        }
        assert mv.env_config["n_features"] == N_FEATURES
        # 10 segments: 6 train, 2 validation, 2 test; the kept policy is the best validation
        assert (mv.data_window["train_segments"], mv.data_window["val_segments"]) == (6, 2)
        assert mv.data_window["eval_segments"] == 2 and res.report["segments"] == 2
        val = {v["timesteps"]: v["eval/total_pnl"] for v in mv.metrics["validation"]}
        assert len(val) >= 2 and max(val) == mv.metrics["timesteps"]  # the end is evaluated
        assert val[mv.metrics["selected_timesteps"]] == max(val.values())
        assert mv.metrics["selected_val_pnl"] == max(val.values())
        run = await conn.fetchrow("SELECT * FROM training_runs WHERE id = $1", res.run_id)
        assert run["status"] == "finished" and run["model_id"] == res.model_id
        rows = await conn.fetch(
            "SELECT timesteps, metrics FROM training_progress WHERE run_id = $1 ORDER BY 1",
            res.run_id,
        )
    finally:
        await conn.close()
    assert len(rows) >= 3
    assert all("charts/sps" in r["metrics"] for r in rows)
    assert any("eval/total_pnl" in r["metrics"] for r in rows)
    assert any("losses/value_loss" in r["metrics"] for r in rows)

    assert res.checkpoint.exists()
    assert registry.read_embedded_metadata(res.checkpoint)["config_hash"] == mv.config_hash
    model = PPO.load(res.checkpoint, device="cpu")
    assert model.observation_space.shape == (N_FEATURES,)
    report_dir = res.checkpoint.parent
    assert (report_dir / "smoke-v1-eval.json").exists()
    assert (report_dir / "smoke-v1-eval.png").stat().st_size > 10_000

    events = [n["event"] for n in notes if n["run_id"] == res.run_id]
    assert events[0] == "started" and events[-1] == "finished" and "progress" in events


async def test_fine_tune_from_parent(pg_dsn: str, tmp_path: Path) -> None:
    first = await asyncio.to_thread(train, _args(pg_dsn, tmp_path, eval_every=0))
    second = await asyncio.to_thread(
        train, _args(pg_dsn, tmp_path, eval_every=0, parent=first.model_id, timesteps=2048)
    )
    conn = await db.connect(pg_dsn)
    try:
        child = await registry.get(conn, second.model_id)
        assert child.version == 2 and child.parent_id == first.model_id
        assert child.metrics["timesteps"] >= 4096 + 2048  # resumed, not restarted
        assert [a.id for a in await registry.ancestors(conn, child.id)] == [first.model_id]
    finally:
        await conn.close()


async def test_failed_run_marks_run_and_model_failed(pg_dsn: str, tmp_path: Path) -> None:
    conn = await db.connect(pg_dsn)
    try:
        parent = await registry.register(
            conn, "ghost", "PPO", env_config={}, checkpoint_path=tmp_path / "missing.zip"
        )
    finally:
        await conn.close()
    with pytest.raises(FileNotFoundError):
        await asyncio.to_thread(train, _args(pg_dsn, tmp_path, parent=parent.id))
    conn = await db.connect(pg_dsn)
    try:
        run = await conn.fetchrow("SELECT status, error, model_id FROM training_runs")
        assert run["status"] == "failed" and "missing.zip" in run["error"]
        child = await registry.get(conn, run["model_id"])
        assert child.status == registry.ModelStatus.FAILED
    finally:
        await conn.close()


def test_args_validation() -> None:
    with pytest.raises(ConfigError, match="algo"):
        Args(dataset="x", algo="dqn")
    with pytest.raises(ConfigError, match="multiple of"):
        Args(dataset="x", n_envs=3, n_steps=5, batch_size=64)


def test_split_holds_out_the_last_segments() -> None:
    ds = random_walk_dataset(10, 20, seed=0)
    tr, ev = split_segments(ds, 0.2)
    assert tr.n_segments == 8 and ev.n_segments == 2
    assert (ev.features == ds.features[160:]).all()
