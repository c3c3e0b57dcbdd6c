"""Stopping asyncio tasks at shutdown without hanging it or losing anything.

The usual ``task.cancel(); with suppress(CancelledError): await task`` has three faults:
it swallows a cancellation of the *caller* too (the stopper then runs on as if nobody had
asked it to stop), an exception the task ended with escapes and skips the rest of the
shutdown, and a task that ignores its cancellation hangs the shutdown forever.
:func:`stop_tasks` does the same job without them.  Every layer may import this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None], *, timeout: float = 10.0) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until they have ended.

    Waits at most ``timeout`` seconds: a task still running then ignored its cancellation;
    it is logged by name and left behind, so one stuck part cannot stall the shutdown of
    the rest.  An exception a task ended with is logged with its traceback, not raised.  A
    cancellation of the caller while it waits propagates as usual.
    """
    ts = [t for t in tasks if t is not None]
    if not ts:
        return
    for t in ts:
        t.cancel()
    done, pending = await asyncio.wait(ts, timeout=timeout)
    for t in pending:
        log.error("task %r did not stop within %.1f s of its cancellation", t.get_name(), timeout)
    for t in done:
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("task %r had failed: %r", t.get_name(), exc, exc_info=exc)
