"""A local exchange that speaks Kalshi's WebSocket v2 and REST v2 (see docs/sim.md).

async with SimExchange(SimConfig(n_markets=5, rate=500, seed=1)) as sim:
    sim.ws_url, sim.rest_url, sim.book(ticker), sim.inject_gap(), ...
"""

from kalshi_rl.sim.accounts import AccountsConfig
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.model import MarketSpec, ModelParams
from kalshi_rl.sim.server import BlastResult, SentMessage, SimExchange

__all__ = [
    "AccountsConfig",
    "BlastResult",
    "MarketSpec",
    "ModelParams",
    "SentMessage",
    "SimConfig",
    "SimExchange",
]
