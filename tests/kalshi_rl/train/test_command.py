"""`kalshi-rl train` through the real CLI root (typer), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from kalshi_rl import registry
from kalshi_rl.cli import app
from kalshi_rl.store import db


async def test_cli_train_a2c_registers_model(pg_dsn: str, tmp_path: Path) -> None:
    argv = [
        "train",
        "--algo",
        "a2c",
        "--dataset",
        "synthetic:6:80:1",
        "--timesteps",
        "2000",
        "--n-envs",
        "8",
        "--name",
        "cli-a2c",
        "--eval-every",
        "0",
        "--no-progress-bar",
        "--checkpoint-dir",
        str(tmp_path),
        "--database-url",
        pg_dsn,
    ]
    result = await asyncio.to_thread(CliRunner().invoke, app, argv)
    assert result.exit_code == 0, result.output
    assert "cli-a2c v1" in result.output
    # the evaluation table: the agent and every baseline, one row each
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("held-out policy"))
    names = [line.split()[0] for line in lines[header + 1 : header + 6]]
    assert names == ["agent", "hold", "random", "cheaper_side", "mean_reversion"]
    conn = await db.connect(pg_dsn)
    try:
        mv = await registry.latest(conn, "cli-a2c")
    finally:
        await conn.close()
    assert mv is not None and mv.algorithm == "A2C" and mv.status == registry.ModelStatus.READY
    assert Path(str(mv.checkpoint_path)).exists()


def test_cli_rejects_unknown_algo(tmp_path: Path) -> None:
    argv = [
        "train",
        "--algo",
        "dqn",
        "--dataset",
        "synthetic:2:10:0",
        "--checkpoint-dir",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0
    assert "algo must be one of" in str(result.exception)


def test_cli_defaults_are_the_args_defaults() -> None:
    import inspect

    from kalshi_rl.commands.train import _batch_size
    from kalshi_rl.commands.train import train as cli_train
    from kalshi_rl.train.run import Args

    shipped = Args(dataset="-")
    params = inspect.signature(cli_train).parameters
    shared = [n for n in params if n in Args.__dataclass_fields__ and n != "dataset"]
    assert {"timesteps", "n_envs", "seed", "eval_every", "val_fraction", "select_best"} <= set(
        shared
    )
    for n in shared:
        assert params[n].default == getattr(shipped, n), n
    assert _batch_size(shipped.n_envs) == shipped.batch_size
