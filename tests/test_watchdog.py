"""The suite cannot hang on a stuck async test: the conftest watchdog cancels it.

A run of its own (a subprocess with this suite's conftest and a 2 s watchdog) holds a
test that waits forever while its event loop stays busy -- the case pytest-timeout's
signal method cannot end -- and a test after it.  The stuck test must fail naming the
watchdog and where it waited, and the run must go on to the next test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

STUCK = """
import asyncio

async def _spin():
    while True:
        await asyncio.sleep(0)

async def test_stuck_while_the_loop_is_busy():
    spinner = asyncio.create_task(_spin())
    await asyncio.Event().wait()  # never set
    spinner.cancel()

def test_after_it():
    pass
"""


def test_a_stuck_async_test_is_cancelled_and_the_run_goes_on(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_stuck.py").write_text(STUCK)
    env = {**os.environ, "KALSHI_RL_ASYNC_TEST_TIMEOUT": "2"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "timeout=60",
         "--rootdir", str(tmp_path), "-o", "asyncio_mode=auto",
         "-o", "asyncio_default_fixture_loop_scope=function", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "async test cancelled by the watchdog after 2 s" in out, out
    assert "async watchdog: " in out and "test_stuck_while_the_loop_is_busy" in out, out
    assert "Event().wait()" in out, out  # the traceback shows where it waited
