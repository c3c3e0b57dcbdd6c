"""Training runs started from the dashboard: each one a separate ``kalshi-rl train`` process.

The trainer never runs in the live node's process (ARCHITECTURE.md): the launcher spawns
``python -m kalshi_rl.cli [dataset build ...] train ...`` children, keeps the tail of their
output, and stops one with SIGINT (SB3 stops between steps; the run is recorded as
``stopped``).  Progress reaches the dashboard through PostgreSQL (``training_progress``
rows and ``NOTIFY kalshi_rl_training``), not through this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kalshi_rl.web.schemas import TrainingJob, TrainingStart

log = logging.getLogger(__name__)

_TAIL = 40
# dataset spec "sim:MARKETS:SECONDS:SEED": generated history from the local exchange's fast
# mode (``kalshi-rl generate``) is recorded first, then trained on
GENERATED_PREFIX = "sim:"
# "rolling:SERIES:SECONDS:SEED": the same, with SERIES rolling series of short-lived markets
ROLLING_PREFIX = "rolling:"


# seconds a training child gets to stop after SIGINT (it stops at its next env step and
# records the run as stopped) before it is killed
STOP_GRACE_S = 30.0


def _kill_if_running(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        log.warning("training child %s did not stop within %.0f s of SIGINT: killing it",
                    proc.pid, STOP_GRACE_S)  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


@dataclass
class Job:
    """One training process (and its dataset build, if any)."""

    job_id: int
    name: str
    request: TrainingStart
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: str = "building"
    proc: asyncio.subprocess.Process | None = None
    run_id: int | None = None
    exit_code: int | None = None
    stop_requested: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL))
    task: asyncio.Task[None] | None = None
    dataset_path: str | None = None  # the Parquet dataset trained on (once built)

    def view(self) -> TrainingJob:
        return TrainingJob(
            job_id=self.job_id,
            pid=None if self.proc is None else self.proc.pid,
            name=self.name,
            state=self.state,  # type: ignore[arg-type]
            run_id=self.run_id,
            exit_code=self.exit_code,
            started_at=self.started_at,
            log_tail=list(self.tail),
        )


class TrainingLauncher:
    """Starts, tracks and stops training processes.

    Args:
        dsn: PostgreSQL DSN handed to the children (never logged: it may hold a password).
        data_dir: where datasets built from sessions are written.
        python: interpreter of the children (default this one).
    """

    def __init__(self, dsn: str, data_dir: Path, python: str | None = None) -> None:
        self.dsn = dsn
        self.data_dir = Path(data_dir)
        self.python = python or sys.executable
        self.jobs: dict[int, Job] = {}
        self._next = 1
        # the DSN goes by environment, not argv: argv is world-readable in ps
        self._env = dict(os.environ, DATABASE_URL=dsn)

    @property
    def running(self) -> int:
        """Jobs still building or training."""
        return sum(1 for j in self.jobs.values() if j.state in ("building", "training"))

    def start(self, req: TrainingStart) -> Job:
        """Launch a job (returns at once; the child runs in the background)."""
        job = Job(self._next, req.name, req)
        self._next += 1
        self.jobs[job.job_id] = job
        job.task = asyncio.create_task(self._run(job), name=f"training-job-{job.job_id}")
        return job

    def job_for_run(self, run_id: int) -> Job | None:
        """The job whose child created training run ``run_id`` (None if not ours)."""
        return next((j for j in self.jobs.values() if j.run_id == run_id), None)

    def stop(self, job: Job) -> bool:
        """Ask a job's child to stop (SIGINT). False if it is not running."""
        if job.state not in ("building", "training"):
            return False
        job.stop_requested = True
        proc = job.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            # a child that has not stopped by then is killed: Stop always ends the job
            with contextlib.suppress(RuntimeError):  # no running loop (closing)
                asyncio.get_running_loop().call_later(STOP_GRACE_S, _kill_if_running, proc)
        return True

    async def close(self, timeout: float = 20.0) -> None:
        """Stop every running job and wait for the children (kill after ``timeout``)."""
        for job in self.jobs.values():
            self.stop(job)
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for job in self.jobs.values():
            if job.proc is not None and job.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    job.proc.kill()
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ internals
    def _train_args(self, job: Job, dataset: str) -> list[str]:
        r = job.request
        args = [
            "train", "--dataset", dataset, "--algo", r.algorithm, "--timesteps",
            str(r.timesteps), "--seed", str(r.seed), "--n-envs", str(r.n_envs), "--name",
            r.name, "--eval-every", str(r.eval_every), "--no-progress-bar",
        ]  # fmt: skip
        if r.parent_id is not None:
            args += ["--parent", str(r.parent_id)]
        return args

    async def _run(self, job: Job) -> None:
        r = job.request
        try:
            dataset = r.dataset
            if dataset is not None and dataset.startswith((GENERATED_PREFIX, ROLLING_PREFIX)):
                kind, n, seconds, seed = dataset.split(":")
                path = self.data_dir / "datasets" / f"generated-job{job.job_id}"
                what = ["--rolling", n] if kind + ":" == ROLLING_PREFIX else ["--markets", n]
                gen = ["generate", "--out", str(path), *what, "--seconds", seconds,
                       "--seed", seed]  # fmt: skip
                rc = await self._child(job, gen)
                if rc != 0 or job.stop_requested:
                    job.exit_code = rc
                    job.state = "stopped" if job.stop_requested else "failed"
                    return
                dataset = str(path / "dataset")
            if dataset is None:
                path = self.data_dir / "datasets" / f"session-{r.session_id}-job{job.job_id}"
                build = ["dataset", "build", "--out", str(path), "--cadence-updates", "5"]
                if r.start_ms is not None:
                    build += ["--start", str(r.start_ms)]
                if r.end_ms is not None:
                    build += ["--end", str(r.end_ms)]
                rc = await self._child(job, build)
                if rc != 0 or job.stop_requested:
                    job.exit_code = rc
                    job.state = "stopped" if job.stop_requested else "failed"
                    return
                dataset = str(path)
            job.state = "training"
            job.dataset_path = dataset
            rc = await self._child(job, self._train_args(job, dataset))
            job.exit_code = rc
            job.state = "finished" if rc == 0 else ("stopped" if job.stop_requested else "failed")
        except OSError as exc:
            job.tail.append(f"could not start the training process: {exc}")
            job.state = "failed"

    async def _child(self, job: Job, args: list[str]) -> int:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "kalshi_rl.cli", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=self._env,
        )  # fmt: skip
        job.proc = proc
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    job.tail.append(line)
            return await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
