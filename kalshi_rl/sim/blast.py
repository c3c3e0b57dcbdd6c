"""Blast mode: pre-encoded snapshot + delta frames written as fast as the socket takes them.

``Blast.prepare`` generates whole model batches up front (so the sim's book ends where a
client that applied every frame will be) and encodes them for sid 1; the first orderbook
subscription of a connection is then taken over (``Subscriptions.book_takeover``) and
served from those frames.  The measured rates land in ``results``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

from core.dtypes import EV_DELTA, SIDE_NO, SIDE_YES
from kalshi_rl.kalshi.protocol import KalshiErrorCode
from kalshi_rl.sim import wire
from kalshi_rl.sim.subscriptions import Session, Sub, Subscriptions
from kalshi_rl.tasks import stop_tasks

log = logging.getLogger(__name__)


class BlastResult(NamedTuple):
    """What a blast achieved: frames and bytes written, wall time, rates."""

    frames: int
    bytes: int
    seconds: float
    frames_per_s: float
    mbytes_per_s: float


class Blast:
    """Pre-encoded frames and the tasks that write them.

    Args:
        hub: the subscriptions (markets, errors, the takeover hook).
    """

    def __init__(self, hub: Subscriptions) -> None:
        self.hub = hub
        self.frames: list[bytes] = []
        self.results: list[BlastResult] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def prepare(self, n_frames: int, batch_steps: int) -> None:
        """Pre-encode snapshots (sid 1, seq 1..M) and at least ``n_frames`` delta frames
        (whole model batches, so the sim's book ends where the client's will); from now
        on orderbook subscriptions are served by blasting."""
        mk = self.hub.markets
        b = mk.books
        frames = []
        seq = 0
        for m, t in enumerate(mk.tickers):
            seq += 1
            body = wire.snapshot_body(
                t, mk.market_ids[m], b.levels(m, SIDE_YES), b.levels(m, SIDE_NO), False
            )
            frames.append(wire.frame(wire.book_message("orderbook_snapshot", 1, seq, body)))
        n = 0
        while n < n_frames:
            ev = mk.model.step(batch_steps)
            # keep the whole batch: its deltas are already in the sim's book
            ev = ev[ev["kind"] == EV_DELTA]
            for t_i, side, price, qty, ts in zip(
                ev["market"].tolist(),
                ev["side"].tolist(),
                ev["price"].tolist(),
                ev["qty"].tolist(),
                ev["ts"].tolist(),
                strict=True,
            ):
                seq += 1
                body = wire.delta_body(
                    mk.tickers[t_i], mk.market_ids[t_i], side, price, qty, ts, False
                )
                frames.append(wire.frame(wire.book_message("orderbook_delta", 1, seq, body)))
            n += ev.shape[0]
        self.frames = frames
        self.hub.stats["blast_prepared"] = len(frames)
        self.hub.book_takeover = self.take

    def take(self, s: Session, sub: Sub) -> bool:
        """The takeover hook: blast ``sub`` (the connection's first orderbook sub)."""
        if not self.frames or s.blasting:
            return False
        s.blasting = True
        task = asyncio.get_running_loop().create_task(self._blast(s, sub))
        self._tasks.add(task)  # keep a reference until it ends
        task.add_done_callback(self._tasks.discard)
        return True

    async def stop(self) -> None:
        """Cancel running blasts."""
        await stop_tasks(list(self._tasks))

    async def _blast(self, s: Session, sub: Sub) -> None:
        """Write the pre-encoded frames as fast as the socket takes them."""
        if sub.sid != 1 or sub.markets is None or len(sub.markets) != len(self.hub.markets):
            self.hub.error(
                s,
                None,
                KalshiErrorCode.INVALID_PARAM,
                sid=sub.sid,
                text="blast mode needs sid 1 subscribed to every market",
            )
            s.flush()
            return
        s.flush()
        tr = s.transport
        if tr is None:
            return
        raw = tr.underlying_transport
        frames = self.frames
        chunk = 4096
        nbytes = 0
        t0 = time.perf_counter()
        for i in range(0, len(frames), chunk):
            if tr.is_disconnected:
                return
            data = b"".join(frames[i : i + chunk])
            nbytes += len(data)
            raw.write(data)
            if s.paused:
                await s.resumed.wait()
        while raw.get_write_buffer_size() > 0 and not tr.is_disconnected:
            await asyncio.sleep(0.0005)
        dt = time.perf_counter() - t0
        sub.seq = len(frames)
        self.results.append(
            BlastResult(len(frames), nbytes, dt, len(frames) / dt, nbytes / dt / 1e6)
        )
        log.info(
            "blast: %d frames, %.1f MB in %.3f s = %.0f frames/s",
            len(frames),
            nbytes / 1e6,
            dt,
            len(frames) / dt,
        )
