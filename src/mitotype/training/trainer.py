"""The training loop: every strategy of the method, switchable, on a decode-once patch store.

Batches are gathered straight from the memory-mapped store (no per-sample decoding, no worker
processes) and augmented as one tensor on the training device. Every random draw of an epoch is
seeded from ``(seed, epoch)``, so a run resumed from its last checkpoint ends exactly where an
uninterrupted run would. Under torchrun every process draws the same global batch, augments it
identically and trains on its own slice, so the result does not depend on the number of processes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitotype.data.records import FigureRecord, require_labels
from mitotype.errors import ConfigError, MitotypeError
from mitotype.training.checkpoint import (
    load_resume_state,
    save_model_artifact,
    save_resume_state,
)
from mitotype.training.config import TrainConfig, save_config


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    out_dir: Path
    threshold: float
    best_epoch: int
    val_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


# --------------------------------------------------------------------------- small helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA device (use auto or cpu)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this precision setting, or ``None`` for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def to_float_batch(images: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Gather uint8 N x H x W x 3 rows into a float B x 3 x H x W batch in [0, 1] on ``device``."""
    order = np.argsort(idx, kind="stable")
    rows = np.empty((len(idx), *images.shape[1:]), dtype=np.uint8)
    rows[order] = images[np.asarray(idx)[order]]  # sorted reads are kinder to the memory map
    batch = torch.from_numpy(rows).to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def grl_coefficient(progress: float, max_lambda: float, ramp: str) -> float:
    """Gradient-reversal coefficient at training progress ``p`` in [0, 1]."""
    if ramp == "constant":
        return max_lambda
    if ramp == "linear":
        return max_lambda * progress
    return max_lambda * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


def lr_lambda_factory(total_steps: int, warmup_steps: int, schedule: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def is_distributed() -> bool:
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


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Trains one classifier on ``train_idx`` and selects it on ``val_idx`` (both index ``records``)."""

    def __init__(
        self,
        config: TrainConfig,
        records: list[FigureRecord],
        images: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        out_dir: str | Path,
        progress: bool = True,
        log: Callable[[str], None] | None = print,
    ) -> None:
        from mitotype.evaluation.splits import assert_no_leak

        if len(train_idx) == 0 or len(val_idx) == 0:
            raise ConfigError("training and validation sets must both be non-empty")
        require_labels([records[i] for i in (*train_idx, *val_idx)], "training")
        assert_no_leak(records, train_idx, val_idx)
        for name, part in (("training", train_idx), ("validation", val_idx)):
            if len({records[i].label for i in part}) < 2:
                raise ConfigError(f"the {name} split holds only one class; it needs normal and atypical "
                                  "figures (raise data.val_fraction or add data)")
        self.config = config
        self.records = records
        self.images = images
        self.train_idx = np.asarray(train_idx)
        self.val_idx = np.asarray(val_idx)
        self.out_dir = Path(out_dir)
        self.show_progress = progress
        self.log = log or (lambda _msg: None)
        self.rank, self.world = init_distributed_from_env()
        self.device = resolve_device(config.optim.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)

        labels = np.array([r.label for r in records], dtype=np.int64)
        soft = np.array([r.soft_label for r in records], dtype=np.float32)
        self.labels = labels
        self.targets = self._blend_targets(labels, soft)
        train_domains = sorted({records[i].domain for i in self.train_idx})
        self.domain_names = train_domains
        self.domain_index = {name: i for i, name in enumerate(train_domains)}
        self.domains = np.array([self.domain_index.get(r.domain, -1) for r in records], dtype=np.int64)
        bs = config.optim.batch_size
        if self.world > 1 and (bs % self.world or bs // self.world < 2):
            raise ConfigError(f"optim.batch_size {bs} must be a multiple of the {self.world} processes "
                              "with at least 2 figures each")
        # An epoch draws len(train) figures; a final batch that would hold fewer than 2 (or fewer than
        # 2 per process) is dropped, so every batch trains every process on at least 2 figures.
        n = len(self.train_idx)
        self.batches_per_epoch = n // bs + (1 if n % bs >= 2 * self.world else 0)
        self.samples_per_epoch = min(n, self.batches_per_epoch * bs)
        s = config.strategies
        self.use_domain_head = s.domain_adversarial.enabled and len(train_domains) >= 2
        if s.domain_adversarial.enabled and not self.use_domain_head:
            self.log("note: one training domain only; the domain-adversarial head is off for this run")

    # -- targets and weights ------------------------------------------------------------------

    def _blend_targets(self, labels: np.ndarray, soft: np.ndarray) -> np.ndarray:
        sl = self.config.strategies.soft_labels
        hard = labels.astype(np.float32)
        if not sl.enabled:
            return hard
        return (sl.weight * soft + (1.0 - sl.weight) * hard).astype(np.float32)

    def _sampling_weights(self, difficulty: np.ndarray | None) -> np.ndarray:
        from mitotype.training.sampler import domain_aware_weights

        idx = self.train_idx
        return domain_aware_weights(self.labels[idx], self.domains[idx], difficulty,
                                    self.config.strategies.sampling)

    # -- model --------------------------------------------------------------------------------

    _best_state: dict[str, torch.Tensor] | None = None

    def _build(self) -> None:
        from mitotype.models.classifier import build_classifier, build_device
        from mitotype.training.augment import BatchAugment
        from mitotype.training.hard_mining import HardExampleMiner
        from mitotype.training.losses import AdaptiveFocalLoss

        cfg = self.config
        torch.manual_seed(cfg.seed)
        with build_device(cfg.model, self.device):
            self.model = build_classifier(cfg.model,
                                          num_domains=len(self.domain_names) if self.use_domain_head else 0)
        self.model.to(self.device)
        self.net: torch.nn.Module = self.model
        if self.world > 1:
            unused = not cfg.strategies.supcon.enabled or not self.use_domain_head
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=unused,
            )
        if cfg.optim.compile:
            self.net = torch.compile(self.net)
        head_params, body_params = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (body_params if name.startswith("backbone.") else head_params).append(p)
        groups = [{"params": head_params, "lr": cfg.optim.lr}]
        if body_params:
            groups.append({"params": body_params,
                           "lr": cfg.optim.lr if cfg.optim.backbone_lr is None else cfg.optim.backbone_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.optim.grad_accum)
        self.total_steps = steps_per_epoch * cfg.optim.epochs
        if cfg.optim.schedule == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer,
                max_lr=[g["lr"] for g in groups],
                total_steps=max(self.total_steps, 1),
                pct_start=0.25,
            )
        else:
            warmup = round(cfg.optim.warmup_epochs * steps_per_epoch)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lr_lambda_factory(self.total_steps, warmup, cfg.optim.schedule)
            )
        # pos_weight "auto" must see the class mix the sampler produces, not the raw one, or class
        # imbalance is corrected twice.
        weights = self._sampling_weights(None)
        seen_pos = float(weights[self.labels[self.train_idx] == 1].sum())
        self.focal = AdaptiveFocalLoss(cfg.strategies.focal, positive_fraction=seen_pos).to(self.device)
        self.miner = HardExampleMiner(cfg.strategies.hard_mining, n=len(self.train_idx))
        self.augment = BatchAugment(cfg.strategies.augment).to(self.device)
        self.amp_dtype = autocast_dtype(cfg.optim.precision, self.device)

    # -- passes -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, idx: np.ndarray) -> np.ndarray:
        """p(atypical) for the given record indices, in that order (no augmentation)."""
        self.model.eval()
        out = []
        bs = self.config.optim.eval_batch_size
        for start in range(0, len(idx), bs):
            x = to_float_batch(self.images, idx[start : start + bs], self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                logits = self.model(x).logits
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        if not np.all(np.isfinite(probs)):
            raise MitotypeError("training diverged: the model produces NaN or infinite scores "
                                "(lower optim.lr or enable optim.grad_clip)")
        return probs

    def _validate(self) -> dict[str, Any]:
        from mitotype.evaluation.metrics import best_threshold, binary_metrics

        p = self.predict(self.val_idx)
        y = self.labels[self.val_idx]
        cfg = self.config
        thr = best_threshold(y, p) if cfg.threshold == "val-balanced-accuracy" else cfg.fixed_threshold
        metrics = binary_metrics(y, p, thr)
        metrics["threshold"] = float(thr)
        metrics["balanced_accuracy_at_0.5"] = binary_metrics(y, p, 0.5)["balanced_accuracy"]
        return metrics

    def _train_epoch(self, epoch: int, weights: np.ndarray, bar: Any) -> dict[str, float]:
        from mitotype.training.losses import domain_adversarial_loss, supervised_contrastive_loss
        from mitotype.training.mixup import mixed_domains, mixup_batch
        from mitotype.training.sampler import EpochSampler

        cfg = self.config
        s = cfg.strategies
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout and anything else global
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + epoch)
        sampler = EpochSampler(weights, num_samples=len(self.train_idx), seed=cfg.seed)
        sampler.set_epoch(epoch)
        order = self.train_idx[np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))]
        order = order[: self.samples_per_epoch]
        bs = cfg.optim.batch_size
        n_batches = self.batches_per_epoch
        self.model.train()
        totals = {"loss": 0.0, "cls": 0.0, "supcon": 0.0, "domain": 0.0}
        seen = 0
        self.optimizer.zero_grad(set_to_none=True)
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            x = to_float_batch(self.images, idx, self.device)
            t = torch.from_numpy(self.targets[idx]).to(self.device)
            d = torch.from_numpy(self.domains[idx]).to(self.device)
            x = self.augment(x, generator=gen)
            if s.mixup.enabled and torch.rand((), generator=gen).item() < s.mixup.prob:
                mixed = mixup_batch(x, t, alpha=s.mixup.alpha, generator=gen)
                x, t, d = mixed.images, mixed.targets, mixed_domains(d, mixed)
            global_n = len(x)
            if self.world > 1:  # every rank drew the same global batch; train on a slice of it
                x, t, d = x[self.rank :: self.world], t[self.rank :: self.world], d[self.rank :: self.world]
            # DDP averages gradients over ranks; scaling each rank's mean loss by its share of the
            # global batch makes that average the gradient of the global-batch mean, as on one process.
            share = len(x) * self.world / global_n
            progress = (epoch + b / n_batches) / cfg.optim.epochs
            if self.use_domain_head:
                self.model.set_grl_lambda(
                    grl_coefficient(progress, s.domain_adversarial.max_lambda, s.domain_adversarial.ramp)
                )
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.net(x)
            logits = out.logits.float()
            cls_loss = self.focal(logits, t)
            loss = cls_loss
            sup = torch.zeros((), device=self.device)
            dom = torch.zeros((), device=self.device)
            if s.supcon.enabled:
                sup = supervised_contrastive_loss(out.projection.float(), t, s.supcon.temperature)
                loss = loss + s.supcon.weight * sup
            if self.use_domain_head and out.domain_logits is not None:
                dom = domain_adversarial_loss(out.domain_logits.float(), d)
                loss = loss + s.domain_adversarial.weight * dom
            (loss * share / cfg.optim.grad_accum).backward()
            err_sum, w_sum = self.focal.batch_stats(logits, t)
            if self.world > 1:
                stats = torch.stack([err_sum, w_sum])
                torch.distributed.all_reduce(stats)
                err_sum, w_sum = stats[0], stats[1]
            self.focal.update_from_stats(err_sum, w_sum)
            if (b + 1) % cfg.optim.grad_accum == 0 or b == n_batches - 1:
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scheduler.last_epoch < self.total_steps - 1 or cfg.optim.schedule != "onecycle":
                    self.scheduler.step()
            n = len(idx)
            seen += n
            totals["loss"] += float(loss.detach()) * n
            totals["cls"] += float(cls_loss.detach()) * n
            totals["supcon"] += float(sup.detach()) * n
            totals["domain"] += float(dom.detach()) * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
        return {k: v / max(seen, 1) for k, v in totals.items()}

    # -- the run ------------------------------------------------------------------------------

    def fit(self, resume: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
        """Train, keep the epoch ``optim.select_metric`` picks, store its thresholds; resumable by epoch.

        ``stop_after_epoch`` ends the run early as an interruption would (for resume tests). The folder's
        lock is held and its ``run.json`` kept current throughout (:mod:`mitotype.runs`).
        """
        from mitotype.runs import training_run

        with training_run(self.out_dir, self.config.optim.epochs, resume=resume, enabled=self.rank == 0) as run:
            self._run = run
            return self._fit(resume, stop_after_epoch)

    def _fit(self, resume: bool, stop_after_epoch: int | None) -> TrainResult:
        cfg = self.config
        start_time = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._build()
        is_main = self.rank == 0
        if is_main:
            save_config(cfg, self.out_dir / "config.yaml")
        difficulty: np.ndarray | None = None
        start_epoch, best, history, bad_epochs = 0, None, [], 0
        state_path = self.out_dir / "last_state.pt"
        fingerprint = self._fingerprint()
        if resume and state_path.is_file():
            state = load_resume_state(state_path, self.model, self.optimizer, self.scheduler,
                                      self.focal, self.miner, fingerprint=fingerprint)
            start_epoch = state["epoch"] + 1
            best = state["best"]
            history = state["history"]
            bad_epochs = state["bad_epochs"]
            difficulty = state["difficulty"]
            if state.get("stopped"):
                start_epoch = cfg.optim.epochs  # it had stopped early: nothing left to train
            self.log(f"resumed from {state_path} after epoch {state['epoch'] + 1}")
            self._run.epoch_done(state["epoch"] + 1, stopped_early=bool(state.get("stopped")))
        writer = self._tensorboard() if is_main else None
        metrics_path = self.out_dir / "metrics.jsonl"
        if not resume and is_main and metrics_path.exists():
            metrics_path.unlink()
        hm = cfg.strategies.hard_mining
        for epoch in range(start_epoch, cfg.optim.epochs):
            t_epoch = time.perf_counter()
            if hm.enabled and epoch > 0 and epoch % hm.every_n_epochs == 0:
                scores = self.predict(self.train_idx)
                soft = self.targets[self.train_idx] if cfg.strategies.soft_labels.enabled else None
                difficulty = self.miner.update(scores, self.labels[self.train_idx], soft_labels=soft)
            t_train = time.perf_counter()
            weights = self._sampling_weights(difficulty)
            bar = None
            if self.show_progress and is_main:
                from tqdm.auto import tqdm

                bar = tqdm(total=math.ceil(len(self.train_idx) / cfg.optim.batch_size),
                           desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                           disable=None)  # None: no bar when the output is not a terminal (logs, pipes)
            train_stats = self._train_epoch(epoch, weights, bar)
            t_val = time.perf_counter()
            val = self._validate()
            if bar is not None:
                bar.close()
            # wall times (the per-batch loss read-out synchronises the device, so they are real)
            timing = {"seconds_mining": t_train - t_epoch, "seconds_train": t_val - t_train,
                      "seconds_validation": time.perf_counter() - t_val,
                      "train_images_per_second": self.samples_per_epoch / max(t_val - t_train, 1e-9)}
            row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **train_stats, **timing,
                   **{f"val_{k}": v for k, v in val.items() if isinstance(v, int | float) or v is None}}
            history.append(row)
            improved = best is None or self._better(val, best)
            if improved:
                best = {**val, "epoch": epoch + 1}
                bad_epochs = 0
                self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.trainable_state_dict().items()}
                if is_main:
                    save_model_artifact(self.out_dir, self.model, cfg, threshold=val["threshold"],
                                        metrics=best, domains=self.domain_names)
            else:
                bad_epochs += 1
            if is_main:
                with metrics_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if writer is not None:
                    for k, v in row.items():
                        if isinstance(v, int | float) and k != "epoch":
                            writer.add_scalar(k, v, epoch + 1)
                self.log(f"epoch {epoch + 1}/{cfg.optim.epochs} loss {train_stats['loss']:.4f} "
                         f"val bal.acc {val['balanced_accuracy']:.4f} (thr {val['threshold']:.3f}) "
                         f"auc {val.get('roc_auc') or float('nan'):.4f}")
            stop = bool(cfg.optim.patience and bad_epochs >= cfg.optim.patience)
            if is_main:
                save_resume_state(state_path, self.model, self.optimizer, self.scheduler, self.focal,
                                  self.miner, epoch=epoch, best=best, history=history,
                                  bad_epochs=bad_epochs, difficulty=difficulty, stopped=stop,
                                  fingerprint=fingerprint)
                self._run.epoch_done(epoch + 1, stopped_early=stop)
            if stop:
                self.log(f"early stop: no better validation {cfg.optim.select_metric} for {bad_epochs} epochs")
                break
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                break
        if writer is not None:
            writer.close()
        assert best is not None
        if is_main and "threshold_tta" not in best:
            best["threshold_tta"] = self._tta_threshold()
            save_model_artifact(self.out_dir, self.model, cfg, threshold=best["threshold"],
                                threshold_tta=best["threshold_tta"], metrics=best, domains=self.domain_names,
                                tensors=self._best_state)
        return TrainResult(out_dir=self.out_dir, threshold=float(best["threshold"]),
                           best_epoch=int(best["epoch"]), val_metrics=best, history=history,
                           wall_seconds=time.perf_counter() - start_time)

    def _better(self, val: dict[str, Any], best: dict[str, Any]) -> bool:
        """Whether this epoch's validation beats the kept one under ``optim.select_metric``."""
        metric = self.config.optim.select_metric
        if metric == "last":
            return True
        other = "roc_auc" if metric == "balanced_accuracy" else "balanced_accuracy"
        return (val.get(metric) or 0.0, val.get(other) or 0.0) > (best.get(metric) or 0.0, best.get(other) or 0.0)

    def _fingerprint(self) -> str:
        """What a resume must match: the configuration and the exact training and validation figures."""
        import hashlib

        from mitotype.training.config import to_dict

        cfg = to_dict(self.config)
        cfg["optim"].pop("patience", None)  # may be raised to continue a run that stopped early
        uids = [self.records[i].uid for i in self.train_idx] + ["|"] + [self.records[i].uid for i in self.val_idx]
        blob = json.dumps({"config": cfg, "uids": uids, "world": self.world}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _tta_threshold(self) -> float:
        """Balanced-accuracy threshold of the best model on 8-view TTA validation scores: averaging views
        pulls probabilities inward, so the single-view threshold would misplace TTA decisions."""
        from mitotype.evaluation.metrics import best_threshold
        from mitotype.serving.predict import predict_proba

        if getattr(self, "_best_state", None) is None:  # resumed after the last epoch: reload the best
            from safetensors.torch import load_file

            self._best_state = load_file(str(self.out_dir / "model.safetensors"))
        self.model.load_trainable_state_dict(self._best_state)
        p = predict_proba(self.model, self.images[self.val_idx], batch_size=self.config.optim.eval_batch_size,
                          tta=True, device=self.device, precision=self.config.optim.precision)
        if self.config.threshold == "fixed":
            return self.config.fixed_threshold
        return best_threshold(self.labels[self.val_idx], p)

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: JSON lines only
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))


__all__ = ["TrainResult", "Trainer", "autocast_dtype", "grl_coefficient", "resolve_device", "to_float_batch"]
