"""Weight averaging: an exponential moving average of the weights (EMA), or stochastic weight averaging
(SWA) over the last epochs, kept beside the training weights and validated instead of them.

The averaging rules are torch's own (:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`,
:func:`~torch.optim.swa_utils.get_swa_multi_avg_fn`), applied to the trainable parameters only: under LoRA
or a frozen backbone those are a few MB, where ``AveragedModel`` would copy (and, for EMA, re-average at
every step) the whole backbone. BatchNorm statistics are not averaged: an averaged network's activations
differ from any one of the networks it averages, so the statistics of the BatchNorm layers that train are
recomputed for it over the training figures (:func:`torch.optim.swa_utils.update_bn`) before it is
validated; layers that keep their pretrained statistics (BatchNorm in eval under LoRA) are left as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn, update_bn

AVERAGING_MODES = ("none", "ema", "swa")
"""``optim.weight_averaging``: off, EMA at every optimiser step, SWA at the end of each late epoch."""


def swa_start_epoch(swa_start: float, epochs: int) -> int:
    """The first (0-based) epoch whose end weights enter the SWA average: ``floor(swa_start * epochs)``,
    at most the last epoch, so that at least one epoch is averaged."""
    return min(int(swa_start * epochs), epochs - 1)


class WeightAverager:
    """The running average of a model's trainable parameters (EMA or SWA), its resume state and the swap
    that puts it into the model for validation."""

    def __init__(self, model: nn.Module, mode: str, *, decay: float = 0.999, start_epoch: int = 0) -> None:
        if mode not in ("ema", "swa"):
            raise ValueError(f"weight averaging mode must be ema or swa, got {mode!r}")
        self.mode = mode
        self.start_epoch = start_epoch if mode == "swa" else 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.devices = {n: p.device for n, p in model.named_parameters() if p.requires_grad}
        self.average = get_ema_multi_avg_fn(decay) if mode == "ema" else get_swa_multi_avg_fn()
        self.n_averaged = 0
        """How many weight snapshots the average holds (optimiser steps for EMA, epochs for SWA)."""
        self.tensors: dict[str, Tensor] = {}

    def _update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        current = [params[n].detach() for n in self.names]
        if self.n_averaged == 0:  # as AveragedModel: the first snapshot is the average
            self.tensors = {n: c.clone() for n, c in zip(self.names, current, strict=True)}
        else:
            self.average([self.tensors[n] for n in self.names], current, self.n_averaged)
        self.n_averaged += 1

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step: EMA takes the new weights in."""
        if self.mode == "ema":
            self._update(model)

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called at the end of every epoch (0-based): SWA takes the epoch's weights in from ``start_epoch``."""
        if self.mode == "swa" and epoch >= self.start_epoch:
            self._update(model)

    def ready(self, epoch: int) -> bool:
        """Whether the average is what gets validated (and may be kept) after ``epoch``."""
        return self.n_averaged > 0 and epoch >= self.start_epoch

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module, recompute_bn: Callable[[nn.Module], None] | None = None
                   ) -> Iterator[None]:
        """Inside the block the model holds the averaged parameters (and, through ``recompute_bn``, the
        BatchNorm statistics that fit them); after it, exactly the training weights and statistics again."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.names}
        bn_buffers = [(b, b.detach().clone()) for b in _batchnorm_buffers(model)]
        try:
            with torch.no_grad():
                for n in self.names:
                    params[n].copy_(self.tensors[n])
            if recompute_bn is not None:
                recompute_bn(model)
            yield
        finally:
            with torch.no_grad():
                for n in self.names:
                    params[n].copy_(saved[n])
                for buf, value in bn_buffers:
                    buf.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """The resume state: the average and how many snapshots it holds."""
        return {"mode": self.mode, "n_averaged": self.n_averaged,
                "tensors": {n: t.detach().cpu() for n, t in self.tensors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (onto the devices of the parameters it averages)."""
        if state.get("mode") != self.mode:
            raise ValueError(f"the saved average is {state.get('mode')!r}, this run averages {self.mode!r}")
        tensors = state["tensors"]
        if int(state["n_averaged"]) > 0 and sorted(tensors) != sorted(self.names):
            raise ValueError("the saved average holds other parameters than this model trains")
        self.n_averaged = int(state["n_averaged"])
        self.tensors = {n: t.to(self.devices[n]) for n, t in tensors.items()}


def _batchnorm_buffers(model: nn.Module) -> list[Tensor]:
    out: list[Tensor] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            out += [b for b in (module.running_mean, module.running_var, module.num_batches_tracked) if b is not None]
    return out


def training_batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers that update their running statistics while ``model`` trains (``model.train()``
    may keep some in eval: MitoClassifier keeps a LoRA backbone's pretrained statistics)."""
    was_training = model.training
    model.train()
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.training and m.track_running_stats]
    model.train(was_training)
    return layers


def recompute_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> bool:
    """Recompute the running statistics of the BatchNorm layers that train, as the plain average over
    ``batches`` (:func:`torch.optim.swa_utils.update_bn`); layers kept in eval keep theirs. Whether any
    layer was recomputed (no BatchNorm trains = nothing to do, ``batches`` not consumed)."""
    if not training_batchnorms(model):
        return False
    # update_bn resets every BatchNorm layer, also those that stay in eval under model.train() (and would
    # then not learn their statistics back): keep theirs aside.
    was_training = model.training
    model.train()
    frozen = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training]
    kept = [(b, b.detach().clone()) for m in frozen for b in _batchnorm_buffers(m)]
    with torch.no_grad():
        update_bn(batches, model)
        for buf, value in kept:
            buf.copy_(value)
    model.train(was_training)
    return True


__all__ = ["AVERAGING_MODES", "WeightAverager", "recompute_batchnorm", "swa_start_epoch", "training_batchnorms"]
