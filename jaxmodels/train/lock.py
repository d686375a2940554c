"""One writer per workdir: a lease file naming the holder's host and pid.

``workdir/train.lock`` holds ``{"host", "pid", "heartbeat"}``; the holder rewrites the heartbeat
every ``HEARTBEAT_S``. A second ``jaxmodels train`` on the workdir is refused while the holder is
alive. A killed run leaves no stuck lock: on the same host a dead pid frees it at once, from
another host (a new VM after preemption) a heartbeat older than ``STALE_S`` does. A plain
file works on object stores too, where ``flock`` does not exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from etils import epath

from jaxmodels.train import paths

HEARTBEAT_S = 20.0
STALE_S = 90.0
CONFIRM_S = 0.2
NAME = "train.lock"


class WorkdirLockedError(RuntimeError):
    """Another live ``jaxmodels train`` holds the workdir."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _read(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def holder_alive(info: dict, now: float) -> bool:
    """Whether the lock described by ``info`` still belongs to a running trainer."""
    if info.get("host") == socket.gethostname():
        return _pid_alive(int(info.get("pid", -1)))
    return now - float(info.get("heartbeat", 0.0)) < STALE_S


class WorkdirLock:
    """Context manager held by process 0 of a training run for the whole run."""

    def __init__(self, workdir: epath.Path):
        self.path = workdir / NAME
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread = None

    def acquire(self) -> None:
        info = _read(self.path)
        if info and info != {**self.me, "heartbeat": info.get("heartbeat")}:
            if holder_alive(info, time.time()):
                raise WorkdirLockedError(
                    f"{self.path.parent} is being trained by pid {info.get('pid')} on host "
                    f"{info.get('host')} (lock {self.path}); stop that run first, or use another "
                    "--workdir. The lock frees itself when that process ends."
                )
            print(f"Taking over the stale lock of pid {info.get('pid')} on {info.get('host')}.")
        with paths.naming_write_errors(self.path):  # a full disk, a read-only folder
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._beat()
        time.sleep(CONFIRM_S)  # two runs starting together: the last writer wins, the other stops
        info = _read(self.path) or {}
        if (info.get("host"), info.get("pid")) != (self.me["host"], self.me["pid"]):
            raise WorkdirLockedError(
                f"{self.path.parent} was just taken by pid {info.get('pid')} on host "
                f"{info.get('host')}; use another --workdir."
            )
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="workdir-lock")
        self._thread.start()

    def _beat(self) -> None:
        self.path.write_text(json.dumps({**self.me, "heartbeat": time.time()}))

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # a transient store error: the next beat retries
                self._beat()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        info = _read(self.path)
        if info and info.get("host") == self.me["host"] and info.get("pid") == self.me["pid"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
