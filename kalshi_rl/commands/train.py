"""`kalshi-rl train ...`: one SB3 training run over a recorded (or synthetic) dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The defaults below are ``kalshi_rl.train.run.Args``' (written out so that the CLI does not
# import numba/torch to start; tests/kalshi_rl/train/test_command.py checks they agree).


def train(
    *,
    dataset: Annotated[
        str,
        typer.Option(help="Parquet dataset (file/dir) or synthetic:SEGMENTS:LENGTH:SEED."),
    ],
    algo: Annotated[str, typer.Option(help="ppo or a2c.")] = "ppo",
    timesteps: Annotated[int, typer.Option(help="Env-steps to train for.")] = 1_500_000,
    n_envs: Annotated[int, typer.Option(help="Envs stepped together (Numba kernel).")] = 64,
    seed: Annotated[int, typer.Option(help="Seeds numpy, torch, SB3 and the envs.")] = 0,
    name: Annotated[str, typer.Option(help="Model name in the registry.")] = "kalshi-ppo",
    parent: Annotated[int | None, typer.Option(help="Model id to fine-tune/resume from.")] = None,
    eval_every: Annotated[
        int, typer.Option(help="Env-steps between validation evaluations (0: end only).")
    ] = 50_000,
    eval_fraction: Annotated[
        float, typer.Option(help="Share of segments (the latest) held out as the test set.")
    ] = 0.2,
    val_fraction: Annotated[
        float, typer.Option(help="Share of segments (before the test set) for validation.")
    ] = 0.2,
    select_best: Annotated[
        bool,
        typer.Option(
            "--select-best/--no-select-best",
            help="Keep the policy with the best validation P&L (else the last one).",
        ),
    ] = True,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint store root (default <data dir>/models).")
    ] = None,
    progress_bar: Annotated[bool, typer.Option("--progress-bar/--no-progress-bar")] = True,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."),
    ] = None,
) -> None:
    """Train an agent, evaluate it against baselines, register it (status ready)."""
    from kalshi_rl.train.run import Args
    from kalshi_rl.train.run import train as run_train

    extra: dict[str, int] = {"batch_size": _batch_size(n_envs)}
    if algo.lower() == "a2c":
        extra["n_steps"] = 8  # A2C learns from short rollouts
    args = Args(
        dataset=dataset,
        algo=algo.lower(),
        timesteps=timesteps,
        n_envs=n_envs,
        seed=seed,
        name=name,
        parent=parent,
        eval_every=eval_every,
        eval_fraction=eval_fraction,
        val_fraction=val_fraction,
        select_best=select_best,
        database_url=database_url,
        checkpoint_dir=checkpoint_dir,
        progress_bar=progress_bar,
        **extra,  # type: ignore[arg-type]
    )
    res = run_train(args)
    typer.echo(f"model {name} v{res.version} (id {res.model_id}) ready: {res.checkpoint}")
    typer.echo(_report_table(res.report))
    typer.echo(f"report: {res.checkpoint.parent / f'{name}-v{res.version}-eval'}.{{json,png}}")


def _report_table(report: dict) -> str:
    """The evaluation report as a small fixed-width table, the agent first."""
    rows = [f"{'held-out policy':16s} {'P&L $':>9s} {'fees $':>8s} {'Sharpe':>7s}"
            f" {'max DD $':>9s} {'win %':>6s} {'trades':>7s}"]  # fmt: skip
    for pname, m in report["policies"].items():
        rows.append(
            f"{pname:16s} {m['total_pnl']:9.2f} {m['fees']:8.2f} {m['sharpe']:7.2f}"
            f" {m.get('max_drawdown', float('nan')):9.2f}"
            f" {100 * m.get('win_rate', float('nan')):6.1f} {m['trades']:7d}"
        )
    return "\n".join(rows)


def _batch_size(n_envs: int) -> int:
    """PPO's default minibatch (512) or the largest power of two dividing the rollout."""
    rollout = n_envs * 64  # Args.n_steps
    size = 512  # Args.batch_size
    while rollout % size:
        size //= 2
    return size


def register(app: typer.Typer) -> None:
    """Add ``train`` to the root CLI."""
    app.command("train")(train)
