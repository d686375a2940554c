"""Orbax checkpoints of the train state plus the grain iterator position.

Checkpoints are written asynchronously under ``workdir/checkpoints/<step>`` and only count once
orbax has committed them, so an interrupted save never shadows the previous one. On restore
the newest step that loads is used: a checkpoint that fails to load is reported, moved aside
to ``workdir/checkpoints_corrupt/<step>`` (kept for inspection) and the one before it is tried.
Restoring onto another mesh or device count works because the target carries the new
shardings.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

import jax

log = logging.getLogger(__name__)


def _has_iterator_state(it) -> bool:
    import grain

    return isinstance(it, grain.DatasetIterator)


class Checkpointer:
    """Saves and restores ``(state, data iterator)`` pairs under ``workdir/checkpoints``."""

    def __init__(self, workdir: str, *, keep: int, use_async: bool = True):
        import grain
        import orbax.checkpoint as ocp

        self._ocp, self._grain = ocp, grain
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async, create=True
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, data_iter=None) -> None:
        """Starts an (async) save; the state's device buffers are copied before returning."""
        items = {"state": self._ocp.args.StandardSave(state)}
        if data_iter is not None and _has_iterator_state(data_iter):
            items["data"] = self._grain.checkpoint.CheckpointSave(data_iter)
        self._manager.save(step, args=self._ocp.args.Composite(**items), force=True)

    def restore(self, abstract_state, data_iter=None):
        """Restores the newest loadable checkpoint into ``abstract_state``'s shardings.

        Returns ``(state, step)``, or ``(None, 0)`` when there is no checkpoint. ``data_iter``
        is moved to the saved position in place.
        """
        for step in reversed(self.steps()):
            try:
                return self._restore_step(step, abstract_state, data_iter), step
            except Exception as e:  # any failure to read means this checkpoint is unusable
                self._set_aside(step, e)
        return None, 0

    def _restore_step(self, step: int, abstract_state, data_iter):
        items = {"state": self._ocp.args.StandardRestore(abstract_state)}
        saved = os.listdir(os.path.join(self.directory, str(step)))
        if data_iter is not None and _has_iterator_state(data_iter) and "data" in saved:
            items["data"] = self._grain.checkpoint.CheckpointRestore(data_iter)
        return self._manager.restore(step, args=self._ocp.args.Composite(**items))["state"]

    def _set_aside(self, step: int, error: Exception) -> None:
        src = os.path.join(self.directory, str(step))
        dst = os.path.join(os.path.dirname(self.directory), "checkpoints_corrupt", f"{step}")
        msg = f"checkpoint {src} could not be restored ({type(error).__name__}: {error})"
        log.warning("%s; moving it to %s and trying the previous one", msg, dst)
        print(f"WARNING: {msg}; moved to {dst}, trying the previous checkpoint", flush=True)
        if jax.process_index() == 0:
            if os.path.exists(dst):
                dst = f"{dst}.{int(time.time())}"
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.move(src, dst)
        if jax.process_count() > 1:  # every process must see the move before rescanning
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set_aside_checkpoint_{step}")
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
