"""`python -m kalshi_rl.sim ...` == `kalshi-rl sim ...`."""

from kalshi_rl.commands.sim import app

if __name__ == "__main__":
    app(prog_name="kalshi-rl-sim")
