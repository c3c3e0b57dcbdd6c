"""Private events of the local exchange: recorded for REST and pushed on the private channels.

``PrivateFeed`` is the matching engine's ``Listener``: each fill is stored in the
account (``GET /portfolio/fills``) and sent on ``fill``; each order change goes out on
``user_orders`` (type ``user_order``, the REST order object); each position change on
``market_positions`` (type ``market_position``).  Messages go to the sessions of the
same user (the API key id of the handshake) that subscribed to the channel, filtered by
the subscription's markets when it named some.
"""

from __future__ import annotations

import orjson

from kalshi_rl.kalshi.protocol import CH_FILL, CH_POSITIONS, CH_USER_ORDERS
from kalshi_rl.sim import portfolio, wire
from kalshi_rl.sim.matching import Engine, Fill, Listener, Order
from kalshi_rl.sim.subscriptions import Subscriptions

MSG_FILL = "fill"
MSG_USER_ORDER = "user_order"
MSG_POSITION = "market_position"


class PrivateFeed:
    """Records private events and sends them to subscribed sessions.

    Args:
        engine: the matching engine (its listener is set to this feed).
        hub: the subscriptions.
    """

    def __init__(self, engine: Engine, hub: Subscriptions) -> None:
        self.x = engine
        self.hub = hub
        engine.listener = Listener(self.on_order, self.on_fill, self.on_position)

    def _push(self, user: str, channel: str, kind: str, m: int, msg: dict[str, object]) -> None:
        subs = self.hub.private_subs(user, channel)
        if not subs:
            return
        body = orjson.dumps(msg).decode()
        ticker = self.x.mk.tickers[m]
        for sub in subs:
            if sub.markets is None or m in sub.markets:
                sub.session.queue(wire.unsequenced_message(kind, sub.sid, body), sub.sid, None,
                                  kind, ticker)  # fmt: skip

    def on_fill(self, f: Fill) -> None:
        """Store the fill (with the position after it) and send it on ``fill``."""
        acc = self.x.account(f.order.user)
        post = acc.position(f.order.m).position
        acc.fills.append((f, post))
        if self.hub.private_subs(f.order.user, CH_FILL):
            obj = portfolio.fill_json(self.x, f, post)
            self._push(f.order.user, CH_FILL, MSG_FILL, f.order.m, obj)

    def on_order(self, o: Order) -> None:
        """Send the order on ``user_orders``."""
        if self.hub.private_subs(o.user, CH_USER_ORDERS):
            obj = portfolio.order_json(self.x, o)
            self._push(o.user, CH_USER_ORDERS, MSG_USER_ORDER, o.m, obj)

    def on_position(self, user: str, m: int) -> None:
        """Send the position on ``market_positions``."""
        if self.hub.private_subs(user, CH_POSITIONS):
            msg = portfolio.position_msg(self.x, self.x.account(user), m)
            self._push(user, CH_POSITIONS, MSG_POSITION, m, msg)
