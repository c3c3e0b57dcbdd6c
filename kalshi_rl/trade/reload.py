"""Hot reload: deployments reach a running actor within a second, checked, off the hot path.

The registry sends ``NOTIFY kalshi_rl_models`` on every status change
(``kalshi_rl.registry.notify_payload``).  :class:`Reloader` holds one pooled connection
with ``LISTEN kalshi_rl_models``; a ``deployed`` event for the actor's model name starts a
load in a worker thread (torch, the zip, the JIT warm-up: never on the event loop), then
``Actor.switch_to`` checks the candidate's identity and swaps between two decisions.  A
refused candidate leaves the old version trading (the refusal is logged and kept in
``Actor.refusals``).  With ``shadow=True`` a deployment becomes the shadow candidate
instead of replacing the live model.

Fallback when notifications cannot arrive (LISTEN connection lost): every ``poll_s`` the
reloader asks the registry which version is deployed, and it always watches the running
checkpoint's mtime (a checkpoint rewritten in place is reloaded and checked again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import orjson

from kalshi_rl import registry
from kalshi_rl.errors import KalshiRLError
from kalshi_rl.live.session import DB_ERRORS
from kalshi_rl.tasks import stop_tasks
from kalshi_rl.trade.policy import LoadedModel, load_model

log = logging.getLogger(__name__)

_LOAD_ERRORS: tuple[type[BaseException], ...] = (KalshiRLError, *DB_ERRORS)


async def load_version(mv: registry.ModelVersion, *, fast: bool = True) -> LoadedModel:
    """Load a registry version in a worker thread."""
    if not mv.checkpoint_path:
        raise KalshiRLError(f"{mv.name} v{mv.version} has no checkpoint")
    return await asyncio.to_thread(
        load_model,
        mv.checkpoint_path,
        env_config=mv.env_config,
        name=mv.name,
        version=mv.version,
        model_id=mv.id,
        algorithm=mv.algorithm,
        fast=fast,
    )


class Reloader:
    """Follows the registry for ``actor.model.name`` (see the module docstring).

    Args:
        actor: the running actor.
        pool: the live node's pool (one connection is held for LISTEN).
        poll_s: registry/mtime poll period (the fallback path).
        shadow: deployments become the shadow candidate instead of trading.
        fast: build the fast policy path for loaded versions.
        listen: LISTEN for deployments (False: the polls alone, as while LISTEN is down).
    """

    def __init__(
        self,
        actor: Any,
        pool: Any,
        *,
        poll_s: float = 2.0,
        shadow: bool = False,
        fast: bool = True,
        listen: bool = True,
    ) -> None:
        self.actor = actor
        self.pool = pool
        self.poll_s = poll_s
        self.shadow = shadow
        self.fast = fast
        self.listen = listen
        self._conn: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock = asyncio.Lock()
        self._mtime = self._stat(actor.model.path)
        self.listening = False
        self.notifications = 0
        self.loads = 0
        self.swaps = 0
        self.refused = 0
        self.errors = 0
        self.relistens = 0  # LISTEN connections re-established after one was lost
        self.last_swap_s: float | None = None  # NOTIFY received -> swapped, seconds

    @staticmethod
    def _stat(path: str) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0

    async def start(self) -> None:
        """LISTEN now (best effort) and start the poll task."""
        await self._listen()
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="actor-reload-poll"))

    async def close(self) -> None:
        """Stop listening and polling."""
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*DB_ERRORS):
                conn.remove_termination_listener(self._on_lost)
            with contextlib.suppress(*DB_ERRORS):
                await conn.remove_listener(registry.NOTIFY_CHANNEL, self._on_notify)
            with contextlib.suppress(*DB_ERRORS):
                await self.pool.release(conn)
        self.listening = False

    async def _listen(self) -> None:
        if not self.listen:
            return
        try:
            self._conn = await self.pool.acquire()
            await self._conn.add_listener(registry.NOTIFY_CHANNEL, self._on_notify)
            self._conn.add_termination_listener(self._on_lost)
            self.listening = True
        except DB_ERRORS as exc:
            log.warning("reload: LISTEN failed (%s); polling the registry instead", exc)
            self.listening = False

    def _on_lost(self, _conn: Any) -> None:
        self.listening = False
        log.warning("reload: LISTEN connection lost; polling the registry until it is back")

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """asyncpg listener callback (sync): schedule the reload, never block."""
        t0 = time.monotonic()
        self.notifications += 1
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("reload: unreadable notification %r", payload[:200])
            return
        if ev.get("name") != self.actor.model.name or ev.get("status") != "deployed":
            return
        task = asyncio.get_running_loop().create_task(self.reload(int(ev["id"]), t0))
        self._tasks.append(task)

    async def reload(self, model_id: int, t0: float | None = None) -> str | None:
        """Load version ``model_id`` and swap (or shadow) it; the refusal or None."""
        t0 = time.monotonic() if t0 is None else t0
        async with self._lock:
            if model_id == self.actor.model.model_id and not self.shadow:
                return None
            try:
                async with self.pool.acquire() as conn:
                    mv = await registry.get(conn, model_id)
                new = await load_version(mv, fast=self.fast)
            except _LOAD_ERRORS as exc:
                self.errors += 1
                msg = (
                    f"reload of model {model_id} failed: {exc};"
                    f" {self.actor.model.label} keeps trading"
                )
                log.error(msg)
                self.actor.refusals.append(msg)
                return msg
            self.loads += 1
            if self.shadow:
                problem = await self.actor.set_shadow(new)
            else:
                problem = await self.actor.switch_to(new)
            if problem:
                self.refused += 1
                return problem
            self.swaps += 1
            self.last_swap_s = time.monotonic() - t0
            self._mtime = self._stat(new.path)
            log.info("reload: %s live %.3f s after the notification", new.label, self.last_swap_s)
            return None

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self._poll_once()
            except DB_ERRORS as exc:
                log.debug("reload poll: %s", exc)

    async def _poll_once(self) -> None:
        model = self.actor.model
        mtime = self._stat(model.path)
        if mtime and mtime != self._mtime:
            log.info("reload: %s changed on disk; reloading it", model.path)
            self._mtime = mtime
            new = await asyncio.to_thread(
                load_model, model.path, env_config=model.env_config, name=model.name,
                version=model.version, model_id=model.model_id, fast=self.fast,
            )  # fmt: skip
            await self.actor.switch_to(new)
        if not self.listening:
            async with self.pool.acquire() as conn:
                dep = await registry.deployed(conn, model.name)
            if dep is not None and dep.id != model.model_id:
                await self.reload(dep.id)
            if self._conn is not None:  # the lost one goes back (the pool discards it)
                conn, self._conn = self._conn, None
                # a lost connection may already be back in the pool (asyncpg detaches it):
                # these calls then raise, and must not keep LISTEN from coming back
                with contextlib.suppress(*DB_ERRORS):
                    conn.remove_termination_listener(self._on_lost)
                with contextlib.suppress(*DB_ERRORS):
                    await self.pool.release(conn)
                await self._listen()
                self.relistens += int(self.listening)
            else:
                await self._listen()

    def stats(self) -> dict[str, Any]:
        return {
            "listening": self.listening,
            "notifications": self.notifications,
            "loads": self.loads,
            "swaps": self.swaps,
            "refused": self.refused,
            "errors": self.errors,
            "last_swap_s": self.last_swap_s,
        }
