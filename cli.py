"""Command line: ``python cli.py {fit,validate,test,predict} --config configs/cifar.yaml [--key value ...]``.

A thin ``LightningCLI``: it links the data's image shape into the model and both networks and the model's
``latent_dim`` into G (so neither is typed twice), adds a checkpoint callback that keeps ``last.ckpt``,
logs to TensorBoard under ``lightning_logs/``, picks a DDP strategy that works with manual optimization
when more than one process is asked for, and resolves ``--ckpt_path last`` to the newest run's last.ckpt.
It also adds the writer of ``predict``'s samples (``--sampler.*``, see sampling.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

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


class GANCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)  # the model builds its two optimizers
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # a resume rewrites its run's config
        super().__init__(GAN, L.LightningDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # predict writes samples.npz / samples.png / interpolation.png into --sampler.output_dir (sampling.py)
        parser.add_lightning_class_args(SampleWriter, "sampler")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,  # last.ckpt, what --ckpt_path last resumes from
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "lightning_logs", "name": "default"},
                },
            }
        )
        # The data decides the image shape; the model and both networks receive it.
        for target in (
            "model.image_shape",
            "model.generator.init_args.image_shape",
            "model.discriminator.init_args.image_shape",
        ):
            parser.link_arguments("data.image_shape", target, apply_on="instantiate")
        parser.link_arguments("model.latent_dim", "model.generator.init_args.latent_dim", apply_on="parse")

    def instantiate_classes(self) -> None:
        # A bad value that only the constructors can judge (k < 1, a learning rate <= 0, a generator whose
        # output does not fit the data) is a configuration error, reported like jsonargparse's own.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            raise ConfigError(str(err)) from err

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self._refuse_automatic_only_options(cfg)
        self._choose_strategy(cfg)
        self._unfuse_adam_for_clipping_with_fp16(cfg)
        self._resolve_last_checkpoint(cfg)

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

    def _resolve_last_checkpoint(self, cfg: Any) -> None:
        if cfg.get("ckpt_path") != "last":
            return
        run_dir = _logger_dir(cfg.trainer.logger)
        if run_dir is None:
            return  # not our logger layout: leave "last" to Lightning
        found = sorted(run_dir.glob("version_*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError(
                f"--ckpt_path last: no last.ckpt under {run_dir}/version_*/checkpoints; train first "
                "(python cli.py fit ...) or give the checkpoint's path"
            )
        last = found[-1]
        cfg.ckpt_path = str(last)
        if self.subcommand == "fit":
            # Keep logging into the run being resumed, so TensorBoard shows one continuous run.
            cfg.trainer.logger.init_args.version = last.parent.parent.name
        print(f"Resuming from {last}", file=sys.stderr)


def main(args: list[str] | None = None) -> GANCLI:
    """Run the CLI; errors the user can fix end the run with one line, not a traceback."""
    try:
        return GANCLI(args=args)
    except (ConfigError, DataError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
