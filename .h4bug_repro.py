"""Repro: with a resting user order in a market, the sim's public book stops following the model."""
import asyncio
from core.dtypes import SIDE_YES
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi.trading import TradingClient
from kalshi_rl.sim import SimConfig, SimExchange
async def main():
    key = auth.generate_private_key_pem(); cr = auth.Credentials.from_pem("a", key)
    async with SimExchange(SimConfig(autostart=False, n_markets=1, seed=12, start_ts_ms=1_700_000_000_000, public_key_pem=cr.public_pem())) as sim:
        t = sim.tickers[0]
        async with TradingClient(sim.rest_url, cr) as tc:
            yb = sim.book(t)["yes"][0][0]
            await tc.create_order(t, "bid", count=500, price=yb - 50, time_in_force="good_till_canceled")
            for k in range(5):
                sim.advance(50)
                model = sim.model.books.levels(0, SIDE_YES)[:3]
                print(k, "public", sim.book(t)["yes"][:3], "model", model)
asyncio.run(main())
