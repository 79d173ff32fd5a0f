"""Resumable studies: orbax checkpoints of the train state and history after every epoch."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
from typing import Any

from experiments.common.records import config_hash, write_error


class _Quiet(logging.Filter):
    """Holds back absl's error logs (orbax logs each failing thread's whole traceback)."""

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record):
        self.held.append(record)
        return False


class EpochCheckpoints:
    """Orbax checkpoints of a study's train state + history after every finished epoch.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
    run stopped at any moment resumes from its last finished epoch. A checkpoint written under
    another configuration (its hash is stored with it) is never resumed from.
    """

    def __init__(self, directory: str | os.PathLike, config: dict[str, Any], restart: bool = False):
        import orbax.checkpoint as ocp  # experiments extra

        self._ocp = ocp
        self.directory = pathlib.Path(directory).resolve()
        self.hash = config_hash(config)
        if restart and self.directory.exists():
            shutil.rmtree(self.directory)
        try:
            self.manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=2,
                    enable_async_checkpointing=False,
                    cleanup_tmp_directories=True,  # what a killed or failed save left behind
                ),
            )
        except Exception as e:  # e.g. --out under /proc or a read-only mount: one line
            why = write_error(e)
            if why is None:
                raise
            raise SystemExit(
                f"error: cannot create checkpoints in {self.directory}: {why}"
            ) from None

    def save(self, epoch: int, state: Any, meta: dict[str, Any]) -> None:
        ocp = self._ocp
        meta = {**meta, "config_hash": self.hash, "epochs_done": epoch + 1}
        quiet = _Quiet()
        absl = logging.getLogger("absl")
        absl.addFilter(quiet)
        try:
            self.manager.save(
                epoch + 1,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
            self.manager.wait_until_finished()
        except Exception as e:
            why = write_error(e)
            if why is None:
                raise
            # Orbax renames a checkpoint into place only when it is complete: the previous
            # one is intact. One line instead of orbax's tracebacks of every writer thread.
            raise SystemExit(
                f"error: could not write checkpoint {epoch + 1} to {self.directory}: {why}; "
                f"last complete checkpoint: {self.last_path()}. Free space and rerun the same "
                "command to resume from it."
            ) from None
        finally:
            absl.removeFilter(quiet)
        for record in quiet.held:  # a successful save: pass on whatever was logged
            absl.handle(record)

    def last_path(self) -> str:
        step = self.manager.latest_step()
        return f"{self.directory / str(step)} (epoch {step})" if step else "none yet"

    def restore(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """``(state, meta)`` of the latest checkpoint of this configuration, else ``None``."""
        ocp = self._ocp
        step = self.manager.latest_step()
        if step is None:
            return None
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
        except Exception as e:  # a damaged or foreign checkpoint: one line, not orbax's traceback
            raise SystemExit(self._unreadable(step, e)) from None
        if meta.get("config_hash") != self.hash:
            raise SystemExit(
                f"{self.directory} holds checkpoints of another configuration "
                f"(hash {meta.get('config_hash')} != {self.hash}); use another --out or --restart"
            )
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )
        except Exception as e:
            raise SystemExit(self._unreadable(step, e)) from None
        return restored["state"], meta

    def _unreadable(self, step: int, e: Exception) -> str:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return (
            f"error: checkpoint {self.directory / str(step)} (epoch {step}) cannot be read "
            f"({type(e).__name__}: {first}); delete that folder to resume from the one before, "
            "or pass --restart to start over"
        )

    def close(self) -> None:
        self.manager.close()
