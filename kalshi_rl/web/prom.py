"""Prometheus exposition of the node (text format), built per scrape from live counters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from kalshi_rl.web.state import WebState


class _NodeCollector:
    def __init__(self, web: WebState) -> None:
        self.web = web

    def collect(self) -> Iterator[Metric]:
        web = self.web
        st = web.status()
        yield GaugeMetricFamily("kalshi_rl_up", "1 when health is ok", value=st.health == "ok")
        yield GaugeMetricFamily("kalshi_rl_books_valid", "Books that may be served", st.books_valid)
        yield GaugeMetricFamily("kalshi_rl_books_total", "Books in the node", st.books_total)
        yield GaugeMetricFamily(
            "kalshi_rl_books_invalid", "Books that should be valid and are not", st.books_invalid
        )
        yield GaugeMetricFamily("kalshi_rl_ring_occupancy", "Fullest ring, 0..1", st.ring_occupancy)
        yield GaugeMetricFamily("kalshi_rl_db_lag_ms", "Durability lag, ms", st.db_lag_ms)
        yield GaugeMetricFamily(
            "kalshi_rl_db_up", "1 while the writer reaches PostgreSQL", st.db_up
        )
        yield CounterMetricFamily("kalshi_rl_rows_written", "Rows COPYed", st.rows_written)
        if st.feed is not None:
            f = st.feed
            for name, help_, v in (
                ("msgs", "Frames received", f.msgs),
                ("deltas", "Book deltas applied", f.deltas),
                ("snapshots", "Book snapshots applied", f.snapshots),
                ("trades", "Trades received", f.trades),
                ("gaps", "Sequence gaps and desyncs", f.gaps),
                ("decode_errors", "Frames the decoder rejected", f.decode_errors),
                ("reconnects", "Feed reconnects", f.reconnects),
            ):
                yield CounterMetricFamily(f"kalshi_rl_feed_{name}", help_, v)
            yield GaugeMetricFamily("kalshi_rl_feed_connected", "Feed socket up", f.connected)
            yield GaugeMetricFamily(
                "kalshi_rl_feed_latency_p99_us", "Receive-to-book p99, us", f.latency_p99_us
            )
        states = GaugeMetricFamily(
            "kalshi_rl_actor_state", "1 for the actor's state", labels=["state"]
        )
        for s in ("running", "reducing", "halted", "stopped", "none"):
            states.add_metric([s], 1.0 if st.actor_state == s else 0.0)
        yield states
        yield GaugeMetricFamily(
            "kalshi_rl_training_running", "Training jobs running", st.training_running
        )
        hub = web.orderbook.stats()
        yield GaugeMetricFamily(
            "kalshi_rl_ws_orderbook_clients", "Book stream clients", hub["clients"]
        )
        yield CounterMetricFamily(
            "kalshi_rl_ws_orderbook_frames", "Book frames queued", hub["frames"]
        )
        yield CounterMetricFamily(
            "kalshi_rl_ws_dropped_clients", "Stream clients dropped as too slow",
            hub["dropped_clients"] + web.status_fanout.dropped_clients
            + web.actions_fanout.dropped_clients + web.training_fanout.dropped_clients,
        )  # fmt: skip


def exposition(web: WebState) -> tuple[bytes, str]:
    """(body, content type) of one scrape."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_NodeCollector(web))
    return generate_latest(reg), CONTENT_TYPE_LATEST
