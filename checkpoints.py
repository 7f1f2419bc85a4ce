"""Checkpoint files that survive a crash: atomic writes, and ``--ckpt_path last`` that skips an unreadable file.

Lightning's own writer streams a checkpoint through a temporary file in ``TMPDIR`` and moves it into place; when
``TMPDIR`` is on another file system (node-local /tmp on a cluster) the move is a copy, and a kill during it
leaves a truncated ``last.ckpt`` and a partial file in /tmp. :class:`AtomicCheckpointIO` writes next to the
target, flushes to disk and renames, so a checkpoint file is always either the old complete one or the new
complete one. The CLI installs it whenever the strategy uses Lightning's default writer.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

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
