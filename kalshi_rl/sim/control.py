"""The HTTP control endpoint ``/sim/control/<name>`` (for other processes and tests).

``Control`` maps a name to a handler taking the parsed query and returning a JSON-able
result; the answer is ``{"ok": true, "result": ...}`` or 400/404 with ``{"error": ...}``.
The sim registers the fault triggers and ``status``; other parts register their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi.protocol import KalshiErrorCode
from kalshi_rl.sim.faults import Faults

Query = dict[str, list[str]]
Handler = Callable[[Query], Any]


def int_arg(q: Query, key: str) -> int | None:
    """The integer query parameter ``key`` (None when absent; ValueError when bad)."""
    v = q.get(key)
    return int(v[0]) if v else None


class Control:
    """Named control handlers.

    Args:
        faults: the fault knobs (gap, error, disconnect, garbage, stall are registered).
        status: builds the ``status`` answer.
    """

    def __init__(self, faults: Faults, status: Callable[[], dict[str, Any]]) -> None:
        self.handlers: dict[str, Handler] = {"status": lambda q: status()}
        self.handlers["gap"] = lambda q: faults.inject_gap(int_arg(q, "sid"))
        self.handlers["error"] = lambda q: faults.sub_error(
            int_arg(q, "code") or KalshiErrorCode.INTERNAL, int_arg(q, "sid")
        )
        extra = {"garbage": "kind", "stall": "ms"}
        for name in ("disconnect", "garbage", "stall"):
            key = extra.get(name, "")

            def trigger(q: Query, name: str = name, key: str = key) -> Any:
                val = q.get(key, [""])[0] if key else ""
                return faults.trigger(f"{name}:{val}" if val else name)

            self.handlers[name] = trigger

    def register(self, name: str, handler: Handler) -> None:
        """Serve ``handler`` at ``/sim/control/<name>``."""
        self.handlers[name] = handler

    def handle(self, name: str, q: Query) -> tuple[int, bytes]:
        """Answer one control request: (HTTP status, JSON body)."""
        fn = self.handlers.get(name)
        if fn is None:
            return 404, orjson.dumps({"error": f"unknown control {name!r}"})
        try:
            res = fn(q)
        except (ConfigError, ValueError) as exc:
            return 400, orjson.dumps({"error": str(exc)})
        return 200, orjson.dumps({"ok": True, "result": res})
