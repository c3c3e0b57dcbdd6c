"""Closing the action sink while a flush is writing loses and duplicates nothing.

Seen at the main job's Ctrl-C: the close cancelled the periodic flush inside its COPY
after PostgreSQL had taken the rows, the last flush wrote the same batch again, the
primary key refused it, and the batch stayed "waiting for PostgreSQL" -- lost.  Here many
sinks on a real PostgreSQL are closed at once after records arrive, while their flush
task runs back to back; every record must be stored exactly once, with no failed write.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.dtypes import DECISION_DTYPE
from core.ring import Ring
from kalshi_rl.store import db
from kalshi_rl.trade.records import ActionSink

pytestmark = pytest.mark.slow


async def test_close_during_a_flush_writes_every_record_once(pg_dsn: str) -> None:
    pool = await db.create_pool(pg_dsn, min_size=1, max_size=4)
    try:
        total, failures = 0, 0
        for k in range(40):
            ring = Ring(DECISION_DTYPE, 1 << 10)
            sink = ActionSink(ring, pool, lambda s: f"SINK-{s}", interval_s=0.0)
            sink.start()
            for j in range(3):
                recs = np.zeros(20, dtype=DECISION_DTYPE)
                recs["episode_id"] = k + 1
                recs["step"] = np.arange(j * 20, (j + 1) * 20)
                ring.push_batch(recs)
                total += 20
                await asyncio.sleep(0.001 * (k % 4))
            await sink.close()
            failures += sink.failures
        async with pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM trading_actions")
            dup = await conn.fetchval(
                "SELECT count(*) FROM (SELECT episode_id, step FROM trading_actions"
                " GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        assert failures == 0
        assert dup == 0 and n == total
    finally:
        await pool.close()
