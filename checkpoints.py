"""Checkpoint files that survive a crash (atomic writes, ``--ckpt_path last`` that skips an unreadable file) and
runs that stop cleanly on a signal (:class:`StopOnSignal`).

Lightning's own writer streams a checkpoint through a temporary file in ``TMPDIR`` and moves it into place; when
``TMPDIR`` is on another file system (node-local /tmp on a cluster) the move is a copy, and a kill during it
leaves a truncated ``last.ckpt`` and a partial file in /tmp. :class:`AtomicCheckpointIO` writes next to the
target, flushes to disk and renames, so a checkpoint file is always either the old complete one or the new
complete one. The CLI installs it whenever the strategy uses Lightning's default writer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from lightning.pytorch.trainer.states import TrainerFn

PARTIAL = ".partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the partial files that writers killed mid-write left in ``folder``; returns what was deleted."""
    removed = []
    for partial in Path(folder).glob(f".*{PARTIAL}"):
        pid = partial.name[: -len(PARTIAL)].rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, but a local file is written beside its target, fsynced and renamed.

    ``.<name>.<pid>.partial`` is the file being written; a writer that dies leaves it behind, and the next save
    into that folder deletes it (its process is gone). Remote paths (``s3://`` ...) go to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(str(path)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target.parent)
        partial = target.with_name(f".{target.name}.{os.getpid()}{PARTIAL}")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)  # atomic on POSIX and Windows within one file system
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU (memory-mapped), or raise ``ValueError`` saying in one line what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): a write was cut off")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable checkpoint (not a complete zip archive: cut off, or another file)")
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # a truncated zip, random bytes, not a torch file at all
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0]  # the first sentence
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}: {first})") from err


def newest_readable(candidates: list[Path]) -> tuple[Path | None, dict[str, Any] | None, list[tuple[Path, str]]]:
    """The newest (by modification time) of ``candidates`` that loads, its content, and the newer ones that did
    not, each with the reason."""
    skipped = []
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return path, read_checkpoint(path), skipped
        except ValueError as err:
            skipped.append((path, str(err)))
    return None, None, skipped


def rng_states(module: Any) -> dict[str, torch.Tensor]:
    """The global RNG state of every rank (D's dropout draws from it), gathered so that rank 0's checkpoint
    holds one row per rank. Call it on every rank (``on_save_checkpoint`` runs on every rank)."""
    states = {"cpu": torch.get_rng_state()}
    if module.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(module.device)
    trainer = module._trainer
    if trainer is not None and trainer.world_size > 1:
        states = {key: module.all_gather(state.to(module.device)).cpu() for key, state in states.items()}
    return states


def restore_rng_states(module: Any, states: dict[str, torch.Tensor]) -> None:
    """This rank's row of ``rng_states``; a checkpoint of another number of processes leaves the RNG as seeded."""
    world = module._trainer.world_size if module._trainer is not None else 1
    for key, state in states.items():
        if state.dim() == 2:  # one row per rank of a multi-process run
            if state.shape[0] != world:
                continue
            state = state[module.global_rank].clone()  # its own storage: set_rng_state ignores a view's offset
        if key == "cpu":
            torch.set_rng_state(state.cpu())
        elif key == "cuda" and module.device.type == "cuda":
            torch.cuda.set_rng_state(state.cpu(), module.device)


def mark_mid_epoch(checkpoint: dict[str, Any]) -> None:
    """Mend the fit loop's epoch count of a checkpoint written after a batch inside an epoch that a run resumed from
    an epoch-end checkpoint went on to.

    Lightning 2.x (``_FitLoop.on_advance_start``) does not count that next epoch as ready and started, so its
    checkpoints carry ready = started = processed = completed, as if written after the epoch had ended; resumed
    from one, Lightning begins the epoch again at batch_idx 0 while the stateful loader skips the batches done, and
    batches are trained twice. A straight run writes ready and started one ahead; this writes them so, and
    Lightning then resumes mid-epoch. Called before the loops load.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs, batches = loop.get("epoch_progress"), loop.get("epoch_loop.batch_progress")
    if not epochs or not batches:
        return
    done, epoch = batches["current"], epochs["total"]
    after_a_batch = done["processed"] > 0 and done["completed"] == done["processed"] - 1
    if after_a_batch and len({epoch["ready"], epoch["started"], epoch["processed"], epoch["completed"]}) == 1:
        for counts in (epochs["total"], epochs["current"]):
            counts["ready"] = counts["started"] = counts["completed"] + 1


# --- Stopping on a signal --------------------------------------------------------------------------------------


def where(trainer: Any) -> str:
    """Where a run is, in words: the entry point, the stage, the epoch and the step (for messages)."""
    fn = getattr(trainer.state.fn, "value", trainer.state.fn) or "setup"
    stage = getattr(trainer.state.stage, "value", trainer.state.stage)
    stage = f" ({stage.replace('_', ' ')})" if stage and stage != fn else ""
    return f"{fn}{stage}, epoch {trainer.current_epoch}, global step {trainer.global_step}"


class StopOnSignal(Callback):
    """SIGTERM or SIGINT (``kill``, a scheduler's preemption, Ctrl-C) ends a run within ``grace_s`` seconds, at any
    point and on every rank, and leaves a checkpoint that resumes exactly wherever the state allows one.

    - **Training** (and validation during ``fit``): the ranks agree after every training batch (one all-reduce of
      a flag) and stop together after the same batch, having written ``last.ckpt`` into the checkpoint folder;
      ``--ckpt_path last`` resumes it exactly (it is the checkpoint ``every_n_train_steps`` would write there).
      A signal during a validation is acted on at the next training batch, or by the watchdog below. (The file is
      written by the ``ModelCheckpoint`` that keeps ``last.ckpt``, the CLI's; without one nothing is written.)
    - **validate, test, predict, the sanity check**: Lightning's loops stop at the next batch; nothing to save.
    - **Anywhere else**, a rank blocked in a collective that another rank never joins included: a watchdog thread,
      woken by the signal itself (``signal.set_wakeup_fd``: it needs no Python code to run in the main thread),
      ends the process after ``grace_s`` seconds with one line naming the stage. A second signal, a second or more
      after the first, ends it at once.

    The signal is passed on to the rank processes that Lightning started from this one (``--trainer.devices N``
    on one machine); under SLURM or torchrun the scheduler signals every task itself. Lightning's own SIGTERM
    handler is replaced for the run (its broadcast from inside the handler is a collective reached by one rank
    alone); SLURM's requeue signal stays Lightning's. The CLI adds this callback to every run (``--stop.*``).

    Args:
        grace_s: seconds from the signal to the watchdog's exit (> 0): long enough to finish a training batch and
            write a checkpoint.
    """

    def __init__(self, grace_s: float = 30.0) -> None:
        if not grace_s > 0:
            raise ValueError(f"stop.grace_s must be > 0, got {grace_s}")
        self.grace_s = float(grace_s)
        self.signal: int | None = None  # the signal received (or, after the agreement, another rank's)
        self.saved: str | None = None  # the checkpoint written on the way out
        self.failed_at: str | None = None  # where the run was when an exception ended it
        self._trainer: Any = None
        self._first_signal_at: float | None = None
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._old_wakeup_fd = -1

    # --- Lightning hooks --------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Runs before the Trainer registers its signal handlers: put ours in their place.
        self._trainer, self.signal, self.saved, self.failed_at = trainer, None, None, None
        trainer._signal_connector = _SignalHandlers(trainer, self)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stop = self.signal is not None
        if trainer.world_size > 1:  # every rank takes part, every batch: they stop after the same batch
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self.signal = self.signal or signal.SIGTERM  # another rank's
        keeper = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "save_last", False)), None)
        if keeper is not None:
            # Through the ModelCheckpoint that keeps last.ckpt, so that its own record of the file (saved in the
            # checkpoint) is right and the resumed run overwrites it. On every rank (collectives inside).
            keeper._save_last_checkpoint(trainer, keeper._monitor_candidates(trainer))
            self.saved = keeper.last_model_path
        trainer._signal_connector.received_sigterm = True  # Lightning's loops end the run after this batch

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.failed_at = where(trainer)  # before the Trainer tears down and forgets its stage

    def message(self) -> str:
        """One line for the end of a run that a signal stopped."""
        name = signal.Signals(self.signal or signal.SIGTERM).name
        if self.saved:
            return f"stopped by {name} after {self.failed_at}; wrote {self.saved}: resume with --ckpt_path last"
        return f"stopped by {name} during {self.failed_at}; no checkpoint written at this point"

    # --- the handler, in the main thread, whenever Python code runs there -----------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = self.signal or signum
        trainer = self._trainer
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not fitting:
            trainer._signal_connector.received_sigterm = True  # evaluation loops stop at the next batch

    # --- the watchdog thread -----------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._old_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._sockets = (reader, writer)
        threading.Thread(target=self._watch, args=(reader,), name="StopOnSignal", daemon=True).start()

    def _stop_watchdog(self) -> None:
        if self._sockets is None:
            return
        signal.set_wakeup_fd(self._old_wakeup_fd)
        for sock in self._sockets:
            sock.close()  # the thread's recv returns: it ends
        self._sockets = None

    def _watch(self, reader: socket.socket) -> None:
        while True:
            try:
                received = reader.recv(64)
            except OSError:
                return
            if not received:
                return
            for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._noticed(signum)

    def _noticed(self, signum: int) -> None:
        now = time.monotonic()
        if self._first_signal_at is None:
            self._first_signal_at = now
            self._pass_on(signum)
            timer = threading.Timer(self.grace_s, self._exit, (signum, f"not stopped within {self.grace_s:g} s"))
            timer.daemon = True
            timer.start()
        elif now - self._first_signal_at > 1.0:  # a second signal, not the same one seen twice
            self._exit(signum, "a second signal")

    def _pass_on(self, signum: int) -> None:
        """The signal to the rank processes Lightning started from this one (none elsewhere)."""
        for proc in getattr(self._trainer.strategy.launcher, "procs", None) or []:
            with contextlib.suppress(OSError):
                proc.send_signal(signum)

    def _exit(self, signum: int, why: str) -> None:
        trainer = self._trainer
        name = signal.Signals(signum).name
        print(
            f"error: stopped by {name} during {where(trainer)} on rank {trainer.global_rank} ({why}); no checkpoint "
            "was written at this point: --ckpt_path last resumes from the newest one",
            file=sys.stderr,
            flush=True,
        )
        self._pass_on(signal.SIGKILL)
        os._exit(128 + signum)


class _SignalHandlers(_SignalConnector):
    """Lightning's signal connector with StopOnSignal's handler for SIGTERM and SIGINT and its watchdog running
    while the Trainer runs (Lightning registers the handlers just before the run and restores the old ones after)."""

    def __init__(self, trainer: L.Trainer, owner: StopOnSignal) -> None:
        super().__init__(trainer)
        self.owner = owner

    def register_signal_handlers(self) -> None:
        super().register_signal_handlers()  # SLURM's requeue handler; the old handlers, restored by teardown
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.owner._on_signal)
        self.owner._start_watchdog()

    def teardown(self) -> None:
        self.owner._stop_watchdog()
        super().teardown()
