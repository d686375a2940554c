"""Stopping at a step every process agrees on: SIGTERM (preemption, ``kill``) and Ctrl-C."""

from __future__ import annotations

import os
import signal

import jax


class Stop:
    """Turns SIGTERM (preemption, ``kill``) and Ctrl-C into a stop at a step all processes share.

    One process: the signal sets a flag read after each step. Several processes: JAX's
    preemption service (its SIGTERM notifier) agrees on the step through the coordinator, and
    ``reached_preemption_sync_point`` is asked once per step on every process (a local check;
    the agreement runs in the background). Ctrl-C is forwarded to it as SIGTERM. A second
    Ctrl-C exits at once without saving.
    """

    def __init__(self):
        self.multi = jax.process_count() > 1
        self.requested = None  # the name of the first signal

    def __enter__(self):
        self._old = {signal.SIGINT: signal.signal(signal.SIGINT, self._handle)}
        if not self.multi:  # several processes: JAX's notifier owns SIGTERM
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
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
