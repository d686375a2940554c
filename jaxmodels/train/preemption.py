"""Stopping cleanly on SIGTERM (preemption, ``kill``) and Ctrl-C, from the first line of ``train``.

While there is nothing unsaved to keep (start-up: workdir checks, building the task, restoring;
sampling after the last checkpoint) a signal stops at once with :class:`Interrupted`, which
unwinds like any error: the workdir lock is released, no file is left half-written, and the CLI
prints one line. While training, the run stops at a step every process agrees on and saves it.
"""

from __future__ import annotations

import os
import signal

import jax


class Interrupted(Exception):
    """SIGTERM or Ctrl-C while nothing was being trained: stopped at once, nothing lost."""

    def __init__(self, signum: int, stage: str):
        self.exit_code = 128 + signum  # what a shell reports for a process ended by the signal
        super().__init__(f"{signal.Signals(signum).name} received {stage}")


class Stop:
    """Turns SIGTERM (preemption, ``kill``) and Ctrl-C into a clean stop.

    While ``stage`` is set (where the run is and what to do next, for the message), a signal
    raises :class:`Interrupted` at once. While it is None (training), the run stops at a step
    all processes share. One process: the signal sets a flag read after each step. Several
    processes: JAX's preemption service (its SIGTERM notifier) agrees on the step through the
    coordinator, and ``reached_preemption_sync_point`` is asked once per step on every process
    (a local check; the agreement runs in the background). Ctrl-C is forwarded to it as
    SIGTERM, during start-up too: every process then stops at the first step. A second Ctrl-C
    exits at once without saving.
    """

    def __init__(self, stage: str | None = None):
        self.stage = stage
        self.multi = False  # set by processes_started()
        self.requested = None  # the name of the first signal

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def processes_started(self) -> None:
        """Call once ``jax.distributed`` is up (``multihost.initialize``). With several processes
        JAX's notifier, installed as it started, keeps SIGTERM; one process takes it back."""
        self.multi = jax.process_count() > 1
        if self.multi:
            del self._old[signal.SIGTERM]  # restoring ours on exit would remove JAX's notifier
        else:
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.stage is not None and not self.multi:
            raise Interrupted(signum, self.stage)
        if self.requested is not None and signum == signal.SIGINT:
            print(f"\n{name} again: exiting now without saving.", flush=True)
            os._exit(130)
        self.requested = self.requested or name
        print(
            f"\n{name} received: stopping after this step (Ctrl-C again to exit at once).",
            flush=True,
        )
        if self.multi and signum == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGTERM)

    def __exit__(self, *exc):
        for signum, old in self._old.items():
            signal.signal(signum, old)

    def at(self, step: int) -> bool:
        """Whether to save and stop after ``step``; call exactly once per step."""
        if not self.multi:
            return self.requested is not None
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)
