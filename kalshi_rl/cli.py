"""`kalshi-rl ...`: the composition root.

Each subcommand group lives in ``kalshi_rl/commands/<group>.py`` (its own composition
root: it builds config, pools, clients and passes them in) and is registered here.
Heavy imports (torch, SB3, numba kernels) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import logging
import os

import typer

from kalshi_rl.commands import db as db_cmd

app = typer.Typer(
    name="kalshi-rl",
    help="Record Kalshi order books, train RL agents on them, paper-trade them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(db_cmd.app, name="db")


def _register_optional() -> None:
    """Register groups whose modules exist (each lands with its issue)."""
    import importlib

    for mod_name, name in (
        ("sim", "sim"),
        ("collect", None),
        ("dataset", "dataset"),
        ("train", None),
        ("models", "models"),
    ):
        try:
            mod = importlib.import_module(f"kalshi_rl.commands.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kalshi_rl.commands.{mod_name}":
                continue
            raise
        mod.register(app) if name is None else app.add_typer(mod.app, name=name)


_register_optional()


@app.callback()
def _root(
    log_level: str = typer.Option(
        os.environ.get("KALSHI_RL_LOG_LEVEL", "INFO"), "--log-level", help="DEBUG, INFO, WARNING"
    ),
) -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
