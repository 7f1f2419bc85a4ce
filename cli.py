"""Command line: ``python cli.py {fit,validate,test,predict} --config configs/cifar.yaml [--key value ...]``.

A thin ``LightningCLI``: it links the data's image shape into the model and both networks and the model's
``latent_dim`` into G (so neither is typed twice), adds a checkpoint callback that writes ``last.ckpt`` after
every training epoch, logs to TensorBoard under ``lightning_logs/``, picks a DDP strategy that works with manual
optimization when more than one process is asked for (with a timeout on its collectives, ``--ddp_timeout``), and
resolves ``--ckpt_path last`` to the newest run's last.ckpt. It also adds the writer of ``predict``'s samples
(``--sampler.*``, see sampling.py) and the clean stop on SIGTERM / Ctrl-C (``--stop.*``, see checkpoints.py).
"""

from __future__ import annotations

import re
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from checkpoints import AtomicCheckpointIO, StopOnSignal, newest_readable, read_checkpoint, where
from datamodule import DataError
from gan_module import GAN
from sampling import SampleWriter

# Manual optimization updates D and G in turn, so each backward leaves the other network's parameters
# unused; plain DDP then fails on the first backward (Lightning issues #20328, #20866). This strategy lets
# DDP find the unused parameters and still all-reduces the gradients of the ones that were used.
DDP_STRATEGY = "ddp_find_unused_parameters_true"
_PLAIN_DDP = {"ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"}


def _num_devices(devices: Any, accelerator: Any) -> int:
    """How many processes per node ``--trainer.devices`` asks for (best effort, before the Trainer exists)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        on_gpu = str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return torch.cuda.device_count() if on_gpu else 1
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    try:
        return int(text)
    except ValueError:
        return 1


def _logger_dir(logger: Any) -> Path | None:
    """``save_dir/name`` of a TensorBoardLogger given in the config, else None."""
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    class_path = getattr(logger, "class_path", "") or ""
    if not class_path.endswith("TensorBoardLogger"):
        return None
    init = logger.init_args
    return Path(str(init.get("save_dir") or ".")) / str(init.get("name") or "lightning_logs")


class ConfigError(ValueError):
    """An option's value is not allowed; raised before anything is trained."""


class RunStopped(RuntimeError):
    """The run ended early (a signal, a collective that timed out); the message says where and what is saved."""

    def __init__(self, message: str, exit_code: int, every_rank: bool = False) -> None:
        super().__init__(message)
        self.exit_code, self.every_rank = exit_code, every_rank


@rank_zero_only
def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts / Namespaces as {"a.b.c": leaf}."""
    if hasattr(tree, "as_dict"):
        tree = tree.as_dict()
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _one_line(message: str) -> str:
    """jsonargparse's report of a value refused inside a ``class_path`` union, cut to the refusal itself."""
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    reasons = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    return reasons[0] if len(reasons) == 1 else message


def _check_yaml_files(args: list[str] | None) -> None:
    """A config file that is not valid YAML is named in the error (jsonargparse's own message does not)."""
    args = sys.argv[1:] if args is None else args
    for i, arg in enumerate(args):
        path = args[i + 1] if arg in ("-c", "--config") and i + 1 < len(args) else arg.partition("=")[2]
        if not (arg in ("-c", "--config") or arg.startswith("--config=")) or not Path(path).is_file():
            continue
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{path} is not valid YAML: {problem}{where}") from None


class GANCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)  # the model builds its two optimizers
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # a resume rewrites its run's config
        _check_yaml_files(kwargs.get("args"))
        self.checkpoint: dict[str, Any] | None = None  # the content of --ckpt_path, read once
        self._pack = 1  # --model.pack, read before the classes are built (D's input shape depends on it)
        super().__init__(GAN, L.LightningDataModule, *args, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Leave the parsed options as they are.

        LightningCLI replaces the model options with the hyperparameters stored in a checkpoint given by path, so
        ``--ckpt_path run/last.ckpt --model.k 2`` would train with the checkpoint's k. Here the config and the
        command line always decide, for ``last`` and for a path alike; a checkpoint whose weights do not fit the
        model they build is refused, and options that differ from the checkpoint's are listed (see
        ``_compare_with_checkpoint``).
        """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # predict writes samples.npz / samples.png / interpolation.png into --sampler.output_dir (sampling.py)
        parser.add_lightning_class_args(SampleWriter, "sampler")
        # SIGTERM / Ctrl-C: stop on every rank within stop.grace_s, with a checkpoint where one is consistent
        parser.add_lightning_class_args(StopOnSignal, "stop")
        parser.add_argument(
            "--ddp_timeout",
            type=float,
            default=600.0,
            help="Seconds a collective operation between processes may wait for the others before the run ends "
            "with an error naming the stage (multi-process runs; the strategy cli.py picks). Default 600.",
        )
        parser.set_defaults(
            {
                "checkpoint.save_last": True,  # last.ckpt, what --ckpt_path last resumes from
                # after every training epoch, whatever the validation interval (Lightning's default saves only
                # after validations when they are not every epoch): a killed run loses at most the epoch it was in
                "checkpoint.save_on_train_epoch_end": True,
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "lightning_logs", "name": "default"},
                },
            }
        )
        # The data decides the image shape; the model and both networks receive it (D the shape of a pack of
        # --model.pack images, PacGAN's: m·C channels; read from the parsed config, see before_instantiate_classes).
        for target in ("model.image_shape", "model.generator.init_args.image_shape"):
            parser.link_arguments("data.image_shape", target, apply_on="instantiate")
        parser.link_arguments(
            "data.image_shape", "model.discriminator.init_args.image_shape", self._packed, apply_on="instantiate"
        )
        parser.link_arguments("model.latent_dim", "model.generator.init_args.latent_dim", apply_on="parse")

    def _packed(self, image_shape: Any) -> tuple[int, ...]:
        """D's input shape: one image, or a pack of ``--model.pack`` m images concatenated along the first axis."""
        shape = tuple(int(s) for s in image_shape)
        return (self._pack * shape[0], *shape[1:])

    def instantiate_classes(self) -> None:
        # A bad value that only the constructors can judge (k < 1, a learning rate <= 0, a generator whose
        # output does not fit the data) is a configuration error, reported like jsonargparse's own.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, ImportError) as err:  # ImportError: a package a callback needs is missing
            raise ConfigError(_one_line(str(err))) from err
        if self.checkpoint is not None:
            self._compare_with_checkpoint()
            self.checkpoint = None  # Lightning loads the file itself; do not keep it mapped for the whole run

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except DataError:
            self._remove_unused_run_folder()
            raise
        except SIGTERMException:
            stop = next(cb for cb in self.trainer.callbacks if isinstance(cb, StopOnSignal))
            raise RunStopped(stop.message(), 128 + int(stop.signal or 15)) from None
        except RuntimeError as err:
            if self.trainer.world_size > 1 and re.search(r"timed out|timeout", str(err), re.IGNORECASE):
                stop = next((cb for cb in self.trainer.callbacks if isinstance(cb, StopOnSignal)), None)
                at = (stop.failed_at if stop else None) or where(self.trainer)
                timeout = self.config[subcommand].get("ddp_timeout")
                raise RunStopped(
                    f"rank {self.trainer.global_rank} waited {timeout:g} s (--ddp_timeout) in a collective operation "
                    f"during {at}: another process stopped taking part (it failed, hung, or ran code the others did "
                    f"not). {str(err).strip().splitlines()[0][:200]}",
                    1,
                    every_rank=True,
                ) from err
            raise

    @rank_zero_only
    def _remove_unused_run_folder(self) -> None:
        """A run that failed before its first step leaves no empty ``version_N`` behind (a resumed run's stays)."""
        logger, cfg = self.trainer.logger, self.config[self.subcommand]
        if not isinstance(logger, TensorBoardLogger) or self.trainer.global_step > 0 or cfg.get("ckpt_path"):
            return
        logger.finalize("failed")  # closes the event file
        run = Path(logger.log_dir)
        if run.is_dir() and not any(run.rglob("*.ckpt")):
            shutil.rmtree(run, ignore_errors=True)
            if run.parent.is_dir() and not any(run.parent.iterdir()):
                run.parent.rmdir()  # the logger's name folder, made for this run

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.trainer.strategy == DDP_STRATEGY:  # the strategy string, with --ddp_timeout on its collectives
            timeout = timedelta(seconds=float(cfg.get("ddp_timeout") or 600.0))
            kwargs["strategy"] = DDPStrategy(find_unused_parameters=True, timeout=timeout)
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default: make writes atomic
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _compare_with_checkpoint(self) -> None:
        """Refuse a checkpoint whose weights do not fit the model; list the options that differ from its own."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        path, saved = cfg.ckpt_path, self.checkpoint.get("state_dict", {})
        ours = {k: v for k, v in self.model.state_dict().items() if not k.startswith("G_ema.")}
        hparams = self.checkpoint.get("hyper_parameters", {})
        differing = {
            key: (value, mine)
            for key, mine in _flat(cfg.model).items()
            if key in (flat := _flat(hparams)) and (value := flat[key]) != mine and not key.endswith("image_shape")
        }
        trained_with = "; ".join(f"model.{key}={value!r} (here {mine!r})" for key, (value, mine) in differing.items())
        misfits = [
            f"{key}: {tuple(saved[key].shape)} in the checkpoint, {tuple(t.shape)} here"
            for key, t in ours.items()
            if key in saved and tuple(saved[key].shape) != tuple(t.shape)
        ]
        missing = [key for key in ours if key not in saved]
        if misfits or missing:
            what = misfits[0] if misfits else f"{missing[0]} is not in the checkpoint"
            hint = f"; it was trained with {trained_with}" if trained_with else ""
            raise ConfigError(
                f"--ckpt_path {path} does not fit the model these options build ({what}){hint}. Use the options it "
                "was trained with (its run folder holds config.yaml: --config .../config.yaml)"
            )
        if trained_with:
            _note(f"Note: options differ from the checkpoint's, this run uses the given ones: {trained_with}")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self._refuse_automatic_only_options(cfg)
        if cfg.get("ddp_timeout") is not None and not cfg.ddp_timeout > 0:
            raise ConfigError(f"ddp_timeout must be a number of seconds > 0, got {cfg.ddp_timeout}")
        self._choose_strategy(cfg)
        self._pack = self._check_pack(cfg)
        self._unfuse_adam_for_clipping_with_fp16(cfg)
        self._resolve_checkpoint(cfg)

    @staticmethod
    def _refuse_automatic_only_options(cfg: Any) -> None:
        trainer = cfg.trainer
        if trainer.gradient_clip_val:
            raise ConfigError(
                "trainer.gradient_clip_val works only with automatic optimization; this GAN clips each network's "
                "gradients itself: use --model.grad_clip_norm instead"
            )
        if trainer.accumulate_grad_batches not in (None, 1):
            raise ConfigError(
                "trainer.accumulate_grad_batches must be 1: Algorithm 1 updates D on every minibatch (a larger "
                "--data.batch_size gives the same effect)"
            )

    @staticmethod
    def _check_pack(cfg: Any) -> int:
        pack = cfg.model.get("pack", 1)
        if not isinstance(pack, int) or pack < 1:
            raise ConfigError(f"model.pack must be an integer >= 1 (1: the paper's D), got {pack!r}")
        batch_size = getattr(cfg.data.get("init_args"), "batch_size", None) if cfg.get("data") else None
        if pack > 1 and isinstance(batch_size, int) and batch_size % pack:
            raise ConfigError(
                f"model.pack={pack} must divide data.batch_size={batch_size}: D judges the minibatch in packs of "
                f"{pack} samples"
            )
        return pack

    @staticmethod
    def _unfuse_adam_for_clipping_with_fp16(cfg: Any) -> None:
        # With 16-bit AMP a fused Adam unscales the gradients inside its step, after the point where they are
        # clipped, and Lightning refuses to clip them. GANAdam picks fused only when fused/foreach are unset;
        # when clipping under 16-mixed, pick foreach instead (same updates up to float rounding).
        if not cfg.model.get("grad_clip_norm") or str(cfg.trainer.precision) not in ("16-mixed", "16"):
            return
        for key in ("g_optimizer", "d_optimizer"):
            opt = cfg.model.get(key)
            init = getattr(opt, "init_args", None)
            if getattr(opt, "class_path", "").endswith("GANAdam") and init is not None:
                if init.get("fused") is None and init.get("foreach") is None:
                    init.foreach = True

    def _choose_strategy(self, cfg: Any) -> None:
        trainer = cfg.trainer
        strategy = trainer.strategy
        if not isinstance(strategy, str):
            return  # a Strategy object given by class_path: the user's choice
        processes = _num_devices(trainer.devices, trainer.accelerator) * int(trainer.num_nodes or 1)
        if strategy in _PLAIN_DDP:
            raise ConfigError(
                f"trainer.strategy={strategy!r} fails with the GAN's manual optimization (each backward leaves one "
                f"network's parameters unused). Use {DDP_STRATEGY!r} (chosen automatically for "
                "--trainer.devices > 1 when trainer.strategy is 'auto')."
            )
        if strategy == "auto" and processes > 1:
            trainer.strategy = DDP_STRATEGY

    def _resolve_checkpoint(self, cfg: Any) -> None:
        """Check ``--ckpt_path`` before anything runs: ``last`` becomes the newest readable checkpoint of the
        config's runs (an unreadable one is skipped with a warning); a path must be a readable checkpoint."""
        path, run_dir = cfg.get("ckpt_path"), _logger_dir(cfg.trainer.logger)
        if not path or path in ("best", "hpc", "registry") or (path == "last" and run_dir is None):
            return  # Lightning's own meanings
        if path == "last":
            candidates = list(run_dir.glob("version_*/checkpoints/*.ckpt"))
            found, self.checkpoint, skipped = newest_readable(candidates)
            for bad, reason in skipped:
                if self.subcommand == "fit" and found is not None:
                    # Out of the way, so that this run writes its own last.ckpt under the usual name.
                    rank_zero_only(bad.rename)(bad.with_name(bad.name + ".unreadable"))
                    reason += f"; renamed to {bad.name}.unreadable"
                _note(f"Warning: skipping {reason}")
            if found is None:
                raise ConfigError(
                    f"--ckpt_path last: no readable checkpoint under {run_dir}/version_*/checkpoints; train first "
                    "(python cli.py fit ...) or give the checkpoint's path"
                )
            cfg.ckpt_path = str(found)
        else:
            try:
                self.checkpoint = read_checkpoint(path)
            except ValueError as err:
                raise ConfigError(f"--ckpt_path: {err}") from None
        found = Path(cfg.ckpt_path)
        in_run = run_dir is not None and found.parent.name == "checkpoints" and found.parent.parent.parent == run_dir
        if self.subcommand == "fit" and in_run:
            # Keep logging into the run being resumed, so TensorBoard shows one continuous run.
            cfg.trainer.logger.init_args.version = found.parent.parent.name
        _note(f"{'Resuming from' if self.subcommand == 'fit' else 'Loading'} {found}")


def main(args: list[str] | None = None) -> GANCLI:
    """Run the CLI; errors the user can fix end the run with one line, not a traceback."""
    try:
        cli = GANCLI(args=args)
    except (ConfigError, DataError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except RunStopped as err:
        if err.every_rank or rank_zero_only.rank == 0:
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    _end_process_group()
    return cli


def _end_process_group() -> None:
    """Close this process's part of the process group once its run has ended well (every rank gets here).

    Lightning closes only NCCL groups at exit. A gloo group (DDP on the CPU) left to the interpreter's teardown can
    abort the process after all its work is done: SIGABRT, "terminate called without an active exception" (its
    worker threads outlive Python; pytorch/pytorch#190489). It did once in CI, a two-process ``predict`` that had
    written its samples. PyTorch asks every process to call ``destroy_process_group`` at the end (its
    "Shutdown" docs). Not after a failure: a rank may then still wait in a collective.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
