"""Fault injection: seq gaps, disconnects, garbage frames, stalls, subscription errors.

Each fault is a method of ``Faults`` returning what it hit; ``trigger`` runs one given as
text (``gap``, ``disconnect``, ``garbage[:kind]``, ``stall[:ms]``, ``error[:code]``), the
form the CLI, the HTTP control endpoint and ``run_schedule`` use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi.protocol import KalshiErrorCode
from kalshi_rl.sim.subscriptions import Subscriptions

log = logging.getLogger(__name__)

GARBAGE_KINDS = ("non_json", "unknown_type", "off_grid", "missing_fields")
# the codes Kalshi sends on a live sid to end it (RESUBSCRIBE_CODES)
SUB_ERROR_CODES = (
    KalshiErrorCode.CHANNEL_ERROR,
    KalshiErrorCode.INTERNAL,
    KalshiErrorCode.BUFFER_OVERFLOW,
)


class Faults:
    """The fault knobs of one sim (see the module docstring).

    Args:
        hub: the subscriptions the faults act on.
    """

    def __init__(self, hub: Subscriptions) -> None:
        self.hub = hub
        self.stats = hub.stats
        self.stall_until = 0.0  # loop time until which the generator sends nothing

    def inject_gap(self, sid: int | None = None) -> int:
        """Drop the next orderbook message of every orderbook sid (or one sid): the seq
        jumps by one.  Returns how many subscriptions were hit."""
        subs = self.hub.live_book_subs(sid)
        for sub in subs:
            sub.seq += 1  # consumed, never sent: a gap of exactly one
            self.hub.drop(sub, "orderbook_delta", None)
        return len(subs)

    def disconnect_all(self) -> int:
        """Drop every client connection (no close handshake). Returns how many."""
        n = 0
        for s in list(self.hub.sessions.values()):
            if s.transport is not None and not s.transport.is_disconnected:
                s.transport.disconnect(graceful=False)
                n += 1
        self.stats["disconnects"] += n
        return n

    def send_garbage(self, kind: str = "non_json") -> int:
        """Send one bad message to every client with an orderbook sub.

        Kinds: ``non_json``; ``unknown_type``; ``off_grid`` (an orderbook_delta priced
        $0.0005, which no grid allows); ``missing_fields`` (an orderbook_delta without
        ``delta_fp``).  The two delta kinds take the sid's next seq (so they are not a
        gap) and are NOT applied to the sim's book.  Returns messages sent.
        """
        if kind not in GARBAGE_KINDS:
            raise ConfigError(f"unknown garbage kind {kind!r} (valid: {GARBAGE_KINDS})")
        tickers = self.hub.markets.tickers
        n = 0
        for sub in self.hub.live_book_subs():
            t = tickers[next(iter(sub.markets))] if sub.markets else tickers[0]
            if kind == "non_json":
                payload = b"\x00{not json"
            elif kind == "unknown_type":
                payload = orjson.dumps({"type": "mystery", "sid": sub.sid, "msg": {}})
            else:
                sub.seq += 1
                msg: dict[str, Any] = {
                    "market_ticker": t,
                    "price_dollars": "0.0005",
                    "delta_fp": "1.00",
                    "side": "yes",
                    "ts_ms": 0,
                }
                if kind == "missing_fields":
                    msg["price_dollars"] = "0.5000"
                    del msg["delta_fp"]
                payload = orjson.dumps(
                    {"type": "orderbook_delta", "sid": sub.sid, "seq": sub.seq, "msg": msg}
                )
            sub.session.queue(payload, sub.sid, sub.seq, "garbage_" + kind, t)
            sub.session.flush()
            n += 1
        self.stats["garbage"] += n
        return n

    def stall(self, ms: int) -> None:
        """Send nothing for ``ms`` milliseconds (the generator pauses; pings continue)."""
        self.stall_until = asyncio.get_running_loop().time() + ms / 1000.0
        self.stats["stalls"] += 1

    def sub_error(self, code: int = KalshiErrorCode.INTERNAL, sid: int | None = None) -> int:
        """Kill live orderbook subscriptions with error ``code`` (10, 17 or 25) on their
        sid, as Kalshi does; a correct client resubscribes.  Returns subs killed."""
        if code not in SUB_ERROR_CODES:
            raise ConfigError(f"sub_error code must be 10, 17 or 25, got {code}")
        subs = self.hub.live_book_subs(sid)
        for sub in subs:
            self.hub.kill(sub, code)
            sub.session.flush()
        return len(subs)

    def trigger(self, spec: str) -> int:
        """Run one fault given as text: ``gap``, ``disconnect``, ``garbage[:kind]``,
        ``stall[:ms]``, ``error[:code]`` (the schedule and CLI use this form).

        Returns:
            What the fault hit (subscriptions, connections or messages).
        """
        name, _, arg = spec.partition(":")
        try:
            if name == "gap":
                return self.inject_gap(int(arg) if arg else None)
            if name == "disconnect":
                return self.disconnect_all()
            if name == "garbage":
                return self.send_garbage(arg or "non_json")
            if name == "stall":
                self.stall(int(arg) if arg else 1000)
                return 1
            if name == "error":
                return self.sub_error(int(arg) if arg else KalshiErrorCode.INTERNAL)
        except ValueError as exc:
            raise ConfigError(f"bad fault argument in {spec!r}: {exc}") from exc
        raise ConfigError(
            f"unknown fault {spec!r} (gap, disconnect, garbage:KIND, stall:MS, error:CODE)"
        )

    async def run_schedule(self, faults: tuple[str, ...], every_s: float) -> None:
        """Fire ``faults`` in turn, one every ``every_s`` seconds (until cancelled)."""
        i = 0
        while True:
            await asyncio.sleep(every_s)
            if not self.hub.has_listeners() and faults[i % len(faults)] != "disconnect":
                continue
            spec = faults[i % len(faults)]
            i += 1
            log.info("scheduled fault %s hit %d", spec, self.trigger(spec))
