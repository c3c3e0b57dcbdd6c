"""kalshi_rl.tasks.stop_tasks: a shutdown that cannot hang and loses nothing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kalshi_rl.tasks import stop_tasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def _ignores_cancellation(started: asyncio.Event, release: asyncio.Event) -> None:
    started.set()
    while not release.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue  # a buggy part that does not stop when cancelled


async def _fails() -> None:
    raise RuntimeError("boom in a background task")


async def test_cancels_and_waits_for_every_task() -> None:
    tasks = [asyncio.create_task(_forever(), name=f"t{i}") for i in range(3)]
    await stop_tasks([*tasks, None])
    assert all(t.cancelled() for t in tasks)


async def test_a_task_ignoring_its_cancellation_is_named_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    stuck = asyncio.create_task(_ignores_cancellation(started, release), name="stuck-part")
    fine = asyncio.create_task(_forever(), name="fine-part")
    await started.wait()
    with caplog.at_level(logging.ERROR, logger="kalshi_rl.tasks"):
        await stop_tasks([stuck, fine], timeout=0.3)  # returns although one never ends
    assert fine.cancelled() and not stuck.done()
    assert "'stuck-part' did not stop within 0.3 s" in caplog.text
    release.set()
    await asyncio.wait([stuck])


async def test_a_failed_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    failed = asyncio.create_task(_fails(), name="failing-part")
    await asyncio.sleep(0)  # it runs and fails before it is stopped
    other = asyncio.create_task(_forever(), name="other")
    with caplog.at_level(logging.ERROR, logger="kalshi_rl.tasks"):
        await stop_tasks([failed, other])
    assert other.cancelled()
    assert "'failing-part' had failed" in caplog.text and "boom" in caplog.text


async def test_the_callers_own_cancellation_propagates() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    stuck = asyncio.create_task(_ignores_cancellation(started, release), name="slow")
    await started.wait()
    stopper = asyncio.create_task(stop_tasks([stuck], timeout=30))
    await asyncio.sleep(0.05)
    stopper.cancel()  # e.g. Ctrl-C while shutting down
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not stuck.done()  # the stopper left at once, not after its 30 s
    release.set()
    await asyncio.wait([stuck])
