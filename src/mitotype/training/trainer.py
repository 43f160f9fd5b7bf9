"""The training loop: every strategy of the method, switchable, on a decode-once patch store.

Batches are gathered straight from the memory-mapped store (no per-sample decoding, no worker
processes) and augmented as one tensor on the training device. Every random draw of an epoch is
seeded from ``(seed, epoch)``, each consumer from a stream of its own (:mod:`mitotype.training.seeds`), so a run
resumed from its last checkpoint ends exactly where an uninterrupted run would. Under torchrun every process
draws the same global batch, augments it identically and trains on its own slice, so the result does not depend
on the number of processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mitotype.data.records import FigureRecord, require_labels
from mitotype.errors import ConfigError
from mitotype.evaluation.splits import assert_no_leak
from mitotype.models.allocator import retain_freed_memory
from mitotype.models.calibration import Calibration
from mitotype.models.classifier import build_classifier, build_device
from mitotype.models.device import autocast_dtype, resolve_device, to_float_batch
from mitotype.models.embedding_cache import EmbeddingTable
from mitotype.training.averaging import WeightAverager, recompute_batchnorm, swa_start_epoch
from mitotype.training.checkpointer import Checkpointer
from mitotype.training.config import TrainConfig, stable_dict
from mitotype.training.evaluator import Evaluator
from mitotype.training.recorder import Recorder
from mitotype.training.sampler import EpochSampler
from mitotype.training.seeds import Stream, augmentation_seed, bn_views_seed, dropout_seed, stream
from mitotype.training.selection import Selection
from mitotype.training.strategies.base import Batch, RunContext, Strategy
from mitotype.training.strategies.registry import build_strategies


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    out_dir: Path
    threshold: float
    best_epoch: int
    val_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


class ProgressBar(Protocol):
    """What the trainer needs of a progress bar (``tqdm`` fits)."""

    def update(self, n: int = 1) -> Any: ...
    def set_postfix(self, **values: Any) -> Any: ...
    def close(self) -> Any: ...


ProgressFactory = Callable[[int, str], ProgressBar]
"""``factory(total_batches, description)`` -> a bar for one epoch; the CLI supplies one (tqdm)."""


# --------------------------------------------------------------------------- small helpers


def lr_lambda_factory(total_steps: int, warmup_steps: int, schedule: str) -> Callable[[int], float]:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine decay or constant."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        fraction_done = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * fraction_done))

    return factor


def is_distributed() -> bool:
    """Whether this process is part of an initialised torch.distributed process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_distributed_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def build_optimizer(model: torch.nn.Module, optim: Any, batches_per_epoch: int) -> tuple[Any, Any, int]:
    """AdamW over the heads and the backbone as two groups, its schedule, and the run's optimiser steps."""
    head_params, body_params = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (body_params if name.startswith("backbone.") else head_params).append(p)
    groups = [{"params": head_params, "lr": optim.lr}]
    if body_params:
        groups.append({"params": body_params, "lr": optim.lr if optim.backbone_lr is None else optim.backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=optim.weight_decay)
    steps_per_epoch = math.ceil(batches_per_epoch / optim.grad_accum)
    total_steps = steps_per_epoch * optim.epochs
    if optim.schedule == "onecycle":
        # OneCycleLR divides by zero when its warm-up phase ends on step 0 (pct_start * total_steps == 1):
        # a run of exactly 4 steps, as a tiny dataset gives; a slightly longer warm-up avoids it
        pct_start = 0.25 if total_steps != 4 else 0.3
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(total_steps, 1), pct_start=pct_start
        )
    else:
        warmup = round(optim.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                      lr_lambda_factory(total_steps, warmup, optim.schedule))
    return optimizer, scheduler, total_steps


def run_fingerprint(config: TrainConfig, records: list[FigureRecord], train_idx: np.ndarray, val_idx: np.ndarray,
                    world: int) -> str:
    """What a resume must match: the configuration and the exact training and validation figures."""
    cfg = stable_dict(config)  # a run started before later settings existed still resumes
    cfg["optim"].pop("patience", None)  # may be raised to continue a run that stopped early
    uids = [records[i].uid for i in train_idx] + ["|"] + [records[i].uid for i in val_idx]
    blob = json.dumps({"config": cfg, "uids": uids, "world": world}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Trains one classifier on ``train_idx`` and selects it on ``val_idx`` (both index ``records``).

    The loop itself knows no strategy: it calls the hooks of every registered strategy
    (:mod:`mitotype.training.strategies`) at fixed points. Its other jobs each have their own part: scoring and
    thresholds (:class:`~mitotype.training.evaluator.Evaluator`), the kept epoch and patience
    (:class:`~mitotype.training.selection.Selection`), the per-epoch rows
    (:class:`~mitotype.training.recorder.Recorder`) and the run folder with its resume state
    (:class:`~mitotype.training.checkpointer.Checkpointer`). ``progress`` makes a bar per epoch and ``log``
    receives one line per event; both default to silence (the CLI supplies them).

    Building a trainer only stores what it is given; :meth:`prepare` (called by :meth:`fit`) checks the split,
    joins the process group torchrun describes and builds the run's strategies.
    """

    # set by prepare()
    rank: int
    world: int
    device: torch.device
    labels: np.ndarray
    """Hard 0/1 label of every record."""
    domain_names: list[str]
    """The training domains, in index order."""
    domains: np.ndarray
    """Training-domain index of every record (-1: a domain training never saw)."""
    batches_per_epoch: int
    samples_per_epoch: int
    context: RunContext
    strategies: list[Strategy]
    # set by _build() (model, optimiser and what scores them) and fit() (what the run keeps and writes)
    model: Any
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    total_steps: int
    averager: WeightAverager | None
    amp_dtype: torch.dtype | None
    embeddings: EmbeddingTable | None
    evaluator: Evaluator
    selection: Selection
    checkpoints: Checkpointer

    def __init__(
        self,
        config: TrainConfig,
        records: list[FigureRecord],
        images: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        out_dir: str | Path,
        progress: ProgressFactory | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.records = records
        self.images = images
        self.train_idx = np.asarray(train_idx)
        self.val_idx = np.asarray(val_idx)
        self.out_dir = Path(out_dir)
        self.progress_bars = progress or None
        """Makes the per-epoch progress bar (``progress``), or ``None``."""
        self.log = log or (lambda _msg: None)
        self._prepared = False

    def prepare(self) -> None:
        """Check the split, join the process group torchrun describes, pick the device, and build the run's
        strategies with their training targets. Idempotent; :meth:`fit` calls it."""
        if self._prepared:
            return
        config, records = self.config, self.records
        if len(self.train_idx) == 0 or len(self.val_idx) == 0:
            raise ConfigError("training and validation sets must both be non-empty")
        require_labels([records[i] for i in (*self.train_idx, *self.val_idx)], "training")
        assert_no_leak(records, self.train_idx, self.val_idx)
        for name, part in (("training", self.train_idx), ("validation", self.val_idx)):
            if len({records[i].label for i in part}) < 2:
                raise ConfigError(f"the {name} split holds only one class; it needs normal and atypical "
                                  "figures (raise data.val_fraction or add data)")
        self.rank, self.world = init_distributed_from_env()
        self.device = resolve_device(config.optim.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)

        self.labels = np.array([r.label for r in records], dtype=np.int64)
        self.domain_names = sorted({records[i].domain for i in self.train_idx})
        domain_index = {name: i for i, name in enumerate(self.domain_names)}
        self.domains = np.array([domain_index.get(r.domain, -1) for r in records], dtype=np.int64)
        bs = config.optim.batch_size
        if self.world > 1 and (bs % self.world or bs // self.world < 2):
            raise ConfigError(f"optim.batch_size {bs} must be a multiple of the {self.world} processes "
                              "with at least 2 figures each")
        # An epoch draws len(train) figures; a final batch that would hold fewer than 2 (or fewer than
        # 2 per process) is dropped, so every batch trains every process on at least 2 figures.
        n = len(self.train_idx)
        self.batches_per_epoch = n // bs + (1 if n % bs >= 2 * self.world else 0)
        self.samples_per_epoch = min(n, self.batches_per_epoch * bs)
        self.context = RunContext(
            labels=self.labels, targets=self.labels.astype(np.float32), soft_targets=False,
            domains=self.domains, domain_names=self.domain_names, train_idx=self.train_idx,
            device=self.device, world=self.world, epochs=config.optim.epochs, log=self.log,
            predict=self.predict, sampling_weights=self._sampling_weights, difficulty=self._difficulty,
        )
        self.strategies = build_strategies(config.strategies, self.context)
        soft = np.array([r.soft_label for r in records], dtype=np.float32)
        for strategy in self.strategies:
            blended = strategy.blend_targets(self.context.targets, soft)
            if blended is not None:
                self.context.targets, self.context.soft_targets = blended, True
        self._prepared = True

    @property
    def targets(self) -> np.ndarray:
        """Training targets of every record (blended from votes when a strategy does so); after :meth:`prepare`."""
        return self.context.targets

    def _sampling_weights(self) -> np.ndarray:
        """This epoch's draw weights of the training figures: the strategies' weights multiplied."""
        weights = None
        for strategy in self.strategies:
            w = strategy.sampling_weights()
            if w is not None:
                weights = w if weights is None else weights * w
        return np.ones(len(self.train_idx)) if weights is None else weights

    def _difficulty(self) -> np.ndarray | None:
        """The first difficulty a strategy has measured (hard mining's), else ``None``."""
        for strategy in self.strategies:
            difficulty = strategy.difficulty()
            if difficulty is not None:
                return difficulty
        return None

    # -- model --------------------------------------------------------------------------------

    def _build(self) -> None:
        """Model, optimiser and schedule, then each strategy's own parts (on the training device), and the
        evaluator that scores the model."""
        self.prepare()
        cfg = self.config
        torch.manual_seed(cfg.seed)
        num_domains = max((s.domain_classes() for s in self.strategies), default=0)
        with build_device(cfg.model, self.device):
            self.model = build_classifier(cfg.model, num_domains=num_domains)
        self.model.to(self.device)
        if self.model.stain_norm is not None:
            self._fit_stain_reference()
        if cfg.optim.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=any(s.leaves_parameters_unused() for s in self.strategies),
            )
        if cfg.optim.compile:
            self.net = torch.compile(self.net)
        self.optimizer, self.scheduler, self.total_steps = build_optimizer(self.model, cfg.optim,
                                                                           self.batches_per_epoch)
        self.averager = None
        if cfg.optim.weight_averaging != "none":
            self.averager = WeightAverager(self.model, cfg.optim.weight_averaging, decay=cfg.optim.ema_decay,
                                           start_epoch=swa_start_epoch(cfg.optim.swa_start, cfg.optim.epochs))
        for strategy in self.strategies:
            strategy.setup(self.model)
        self.amp_dtype = autocast_dtype(cfg.optim.precision, self.device)
        self.embeddings = self._embedding_table()
        self.evaluator = Evaluator(self.model, self.images, self.labels, self.val_idx, device=self.device,
                                   batch_size=cfg.optim.eval_batch_size, precision=cfg.optim.precision,
                                   amp_dtype=self.amp_dtype, rule=cfg.threshold,
                                   fixed_threshold=cfg.fixed_threshold, embeddings=self.embeddings)

    def _fit_stain_reference(self) -> None:
        """Fit the model's stain-normalisation reference on a seeded sample of the training figures."""
        settings = self.config.model.stain_norm
        idx = np.sort(np.random.default_rng(self.config.seed).permutation(self.train_idx)[: settings.fit_figures])
        assert self.model.stain_norm is not None
        self.model.stain_norm.fit(to_float_batch(self.images, idx, self.device))
        self.log(f"stain normalisation ({settings.method}): reference fitted on {len(idx)} training figures")

    def _embedding_table(self) -> EmbeddingTable | None:
        """Cached embeddings when the backbone is frozen and nothing changes a batch's images, else ``None``."""
        cfg = self.config
        if not cfg.optim.embedding_cache or self.model.backbone_mode != "frozen":
            return None
        changing = [s.name for s in self.strategies
                    if type(s).transform is not Strategy.transform and getattr(s.settings, s.switch, True)]
        if changing or self.world > 1 or cfg.optim.compile:
            why = f"{', '.join(changing)} change the images" if changing else "several processes or compile"
            self.log(f"note: frozen backbone, but the embedding cache is off ({why})")
            return None
        root = Path(cfg.data.cache_dir) / "embeddings" if cfg.data.cache_dir else None
        table = EmbeddingTable(self.model, self.images, root, amp_dtype=self.amp_dtype, device=self.device,
                               batch_size=cfg.optim.eval_batch_size)
        table.get(np.arange(len(self.images)))  # view 0 of every figure, once
        self.log(f"embedding cache {table.folder}: {table.computed} figure embeddings computed now, "
                 f"{len(self.images) - table.computed} reused")
        return table

    def _strategy_states(self) -> dict[str, Any]:
        """What keeps state besides the model and optimiser, by its key in the resume file: the strategies
        that keep state, and the weight average when there is one."""
        states: dict[str, Any] = {s.state_key: s for s in self.strategies if s.state_key}
        if self.averager is not None:
            states["weight_averaging"] = self.averager
        return states

    def _recompute_bn(self, model: torch.nn.Module) -> None:
        """BatchNorm statistics for the averaged weights, over the training figures in training-sized batches
        (``optim.bn_update_figures`` of them, 0 = all), seen as training saw them (``optim.bn_update_views``:
        through the image strategies, with a generator of their own so that the run's draws do not move)."""
        cfg = self.config
        idx = self.train_idx
        if 0 < cfg.optim.bn_update_figures < len(idx):
            rng = np.random.default_rng(stream(cfg.seed, Stream.BN_UPDATE_FIGURES))  # not the stain reference's
            idx = rng.permutation(idx)[: cfg.optim.bn_update_figures]
        bs = cfg.optim.batch_size
        transforms = (sorted(self.strategies, key=lambda s: s.transform_order)
                      if cfg.optim.bn_update_views == "train" else [])
        gen = torch.Generator(device="cpu").manual_seed(bn_views_seed(cfg.seed))

        def batches() -> Any:
            for start in range(0, len(idx), bs):
                rows = idx[start : start + bs]
                x = to_float_batch(self.images, rows, self.device)
                if transforms:
                    batch = Batch(images=x, targets=torch.from_numpy(self.context.targets[rows]).to(self.device),
                                  domains=torch.from_numpy(self.domains[rows]).to(self.device))
                    for strategy in transforms:
                        batch = strategy.transform(batch, gen)
                    x = batch.images
                yield x.contiguous(memory_format=torch.channels_last) if cfg.optim.channels_last else x

        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            recompute_batchnorm(model, batches())

    # -- passes -------------------------------------------------------------------------------

    def predict(self, idx: np.ndarray, tta: bool = False) -> np.ndarray:
        """p(atypical) of the current model for the given record indices (:meth:`Evaluator.predict`)."""
        return self.evaluator.predict(idx, tta=tta)

    def _epoch_order(self, epoch: int, weights: np.ndarray) -> np.ndarray:
        """The record indices this epoch trains on, in order (seeded from the seed and the epoch)."""
        sampler = EpochSampler(weights, num_samples=len(self.train_idx), seed=self.config.seed)
        sampler.set_epoch(epoch)
        order = self.train_idx[np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))]
        return order[: self.samples_per_epoch]

    def _train_epoch(self, epoch: int, weights: np.ndarray, bar: ProgressBar | None) -> dict[str, float]:
        """One pass over this epoch's draw; the mean of each loss term over the figures seen."""
        cfg = self.config
        torch.manual_seed(dropout_seed(cfg.seed, epoch))  # dropout and anything else global: a stream of its own
        gen = torch.Generator(device="cpu").manual_seed(augmentation_seed(cfg.seed, epoch))
        order = self._epoch_order(epoch, weights)
        transforms = sorted(self.strategies, key=lambda s: s.transform_order)
        bs = cfg.optim.batch_size
        n_batches = self.batches_per_epoch
        self.model.train()
        totals = {"loss": 0.0, **{s.loss_name: 0.0 for s in self.strategies if s.loss_name}}
        seen = 0
        self.optimizer.zero_grad(set_to_none=True)
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            inputs = (torch.from_numpy(self.embeddings.get(idx)[:, 0]).to(self.device) if self.embeddings is not None
                      else to_float_batch(self.images, idx, self.device))
            batch = Batch(images=inputs,
                          targets=torch.from_numpy(self.context.targets[idx]).to(self.device),
                          domains=torch.from_numpy(self.domains[idx]).to(self.device))
            for strategy in transforms:
                batch = strategy.transform(batch, gen)
            global_n = len(batch.images)
            if self.world > 1:  # every rank drew the same global batch; train on a slice of it
                r, w = self.rank, self.world
                batch = Batch(batch.images[r::w], batch.targets[r::w], batch.domains[r::w])
            # DDP averages gradients over ranks; scaling each rank's mean loss by its share of the
            # global batch makes that average the gradient of the global-batch mean, as on one process.
            share = len(batch.images) * self.world / global_n
            fraction_done = (epoch + b / n_batches) / cfg.optim.epochs
            for strategy in self.strategies:
                strategy.before_forward(self.model, fraction_done)
            images = batch.images.contiguous(memory_format=torch.channels_last) \
                if cfg.optim.channels_last and self.embeddings is None else batch.images
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.net(images) if self.embeddings is None else self.model.heads(images)
            loss, terms = self._loss(out, batch)
            (loss * share / cfg.optim.grad_accum).backward()
            for strategy in self.strategies:
                strategy.after_backward(out, batch)
            if (b + 1) % cfg.optim.grad_accum == 0 or b == n_batches - 1:
                self._optimizer_step()
            n = len(idx)
            seen += n
            totals["loss"] += float(loss.detach()) * n
            for name, term in terms.items():
                totals[name] += float(term.detach()) * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
        return {k: v / max(seen, 1) for k, v in totals.items()}

    def _loss(self, out: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the strategies' loss terms, in registry order, and the unweighted terms."""
        loss: torch.Tensor | None = None
        terms: dict[str, torch.Tensor] = {}
        for strategy in self.strategies:
            term = strategy.loss_term(out, batch)
            if term is None:
                continue
            value, weight = term
            terms[strategy.loss_name or strategy.name] = value
            weighted = value if weight == 1.0 else weight * value
            loss = weighted if loss is None else loss + weighted
        if loss is None:
            raise ConfigError("no strategy contributes a loss term (the classification loss is missing)")
        return loss, terms

    def _optimizer_step(self) -> None:
        """Clip, step, clear, and advance the schedule (one-cycle stops at its last step)."""
        cfg = self.config
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.averager is not None:
            self.averager.after_step(self.model)
        if self.scheduler.last_epoch < self.total_steps - 1 or cfg.optim.schedule != "onecycle":
            self.scheduler.step()

    # -- the run ------------------------------------------------------------------------------

    def fit(self, resume: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
        """Train, keep the epoch ``optim.select_metric`` picks, store its thresholds; resumable by epoch.

        ``stop_after_epoch`` ends the run early as an interruption would (for resume tests). The folder's
        lock is held and its ``run.json`` kept current throughout (:mod:`mitotype.runs`). A resume state
        written under other settings or data is refused before the folder is touched.
        """
        self.prepare()
        self.checkpoints = Checkpointer(self.out_dir, self._fingerprint(), enabled=self.rank == 0)
        resume_state = self.checkpoints.read() if resume else None
        with self.checkpoints.locked(self.config.optim.epochs, resume=resume):
            return self._fit(resume_state, resume, stop_after_epoch)

    def _fit(self, resume_state: dict[str, Any] | None, resume: bool,
             stop_after_epoch: int | None) -> TrainResult:
        cfg = self.config
        start_time = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.device.type == "cpu":
            retain_freed_memory()  # activations reuse heap pages instead of faulting in fresh ones
        self._build()
        self.checkpoints.save_config(cfg)
        self.selection = Selection(cfg.optim.select_metric, cfg.optim.patience)
        start_epoch = self._restore(resume_state) if resume_state is not None else 0
        recorder = Recorder(self.out_dir, cfg.optim.epochs, self.log, enabled=self.rank == 0)
        recorder.open(resume)
        for epoch in range(start_epoch, cfg.optim.epochs):
            stop = self._epoch(epoch, recorder)
            if stop or (stop_after_epoch is not None and epoch + 1 >= stop_after_epoch):
                break
        recorder.close()
        best, history = self.selection.best, self.selection.history
        if best is None:  # stopped (stop_after_epoch) before any epoch could be kept: SWA had not started
            return TrainResult(out_dir=self.out_dir, threshold=float("nan"), best_epoch=0, val_metrics={},
                               history=history, wall_seconds=time.perf_counter() - start_time)
        if self.rank == 0 and "threshold_tta" not in best:
            best["threshold_tta"], calibration = self._final_thresholds_and_calibration()
            self.checkpoints.save_model(self.model, cfg, threshold=best["threshold"],
                                        threshold_tta=best["threshold_tta"], metrics=best, domains=self.domain_names,
                                        tensors=self.selection.best_tensors, calibration=calibration)
        return TrainResult(out_dir=self.out_dir, threshold=float(best["threshold"]),
                           best_epoch=int(best["epoch"]), val_metrics=best, history=history,
                           wall_seconds=time.perf_counter() - start_time)

    def _restore(self, state: dict[str, Any]) -> int:
        """Continue from the checked ``last_state.pt``; the first epoch still to train."""
        state = self.checkpoints.restore(state, self.model, self.optimizer, self.scheduler, self._strategy_states())
        self.selection.load_state_dict(state)
        self.log(f"resumed from {self.checkpoints.state_path} after epoch {state['epoch'] + 1}")
        if state.get("stopped"):
            return self.config.optim.epochs  # it had stopped early: nothing left to train
        return state["epoch"] + 1

    def _epoch(self, epoch: int, recorder: Recorder) -> bool:
        """Train and validate one epoch, keep the model if it is the best so far; whether to stop."""
        cfg = self.config
        selection = self.selection
        t_epoch = time.perf_counter()
        for strategy in self.strategies:
            strategy.on_epoch_start(epoch)
        t_train = time.perf_counter()
        weights = self._sampling_weights()
        bar = None
        if self.progress_bars is not None and self.rank == 0:
            bar = self.progress_bars(math.ceil(len(self.train_idx) / cfg.optim.batch_size),
                                f"epoch {epoch + 1}/{cfg.optim.epochs}")
        train_stats = self._train_epoch(epoch, weights, bar)
        averager = self.averager
        if averager is not None:
            averager.after_epoch(self.model, epoch)
        averaged = averager is not None and averager.ready(epoch)
        t_val = time.perf_counter()
        swap = averager.swapped_in(self.model, self._recompute_bn) if averaged and averager is not None \
            else contextlib.nullcontext()
        with swap:
            val = self.evaluator.validate()
            t_done = time.perf_counter()
            # with weight averaging only the averaged weights are validated for keeping (SWA: from swa_start on)
            if selection.offer(val, epoch, eligible=averager is None or averaged):
                selection.best_tensors = {k: v.detach().cpu().clone()
                                          for k, v in self.model.trainable_state_dict().items()}
                self.checkpoints.save_model(self.model, cfg, threshold=val["threshold"], metrics=selection.best,
                                            domains=self.domain_names)
        if bar is not None:
            bar.close()
        # wall times (the per-batch loss read-out synchronises the device, so they are real)
        timing = {"seconds_mining": t_train - t_epoch, "seconds_train": t_val - t_train,
                  "seconds_validation": t_done - t_val,
                  "train_images_per_second": self.samples_per_epoch / max(t_val - t_train, 1e-9)}
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **train_stats, **timing,
               **{f"val_{k}": v for k, v in val.items() if isinstance(v, int | float) or v is None}}
        if averager is not None:
            row["averaged"] = averager.n_averaged if averaged else 0  # 0: these are the training weights
        selection.add(row)
        recorder.record(row, val)
        stop = selection.stop
        self.checkpoints.end_epoch(self.model, self.optimizer, self.scheduler, self._strategy_states(), epoch=epoch,
                                   selection=selection.state_dict(), stopped=stop)
        if stop:
            self.log(f"early stop: no better validation {cfg.optim.select_metric} for {selection.bad_epochs} epochs")
        return stop

    def _fingerprint(self) -> str:
        """This run's :func:`run_fingerprint` (written with every resume state, checked on resume)."""
        return run_fingerprint(self.config, self.records, self.train_idx, self.val_idx, self.world)

    def _final_thresholds_and_calibration(self) -> tuple[float, dict[str, Calibration]]:
        """The kept model's TTA threshold and calibration maps (:meth:`Evaluator.tta_threshold_and_calibration`),
        with the kept weights loaded back (from the model file when the run resumed after its last epoch)."""
        if self.selection.best_tensors is None:
            self.selection.best_tensors = self.checkpoints.kept_tensors()
        self.model.load_trainable_state_dict(self.selection.best_tensors)
        return self.evaluator.tta_threshold_and_calibration()


__all__ = ["ProgressBar", "ProgressFactory", "TrainResult", "Trainer", "build_optimizer", "run_fingerprint"]
