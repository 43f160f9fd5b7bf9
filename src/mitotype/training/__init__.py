"""Training: configuration, the loop, checkpoints, and the strategies it combines.

The strategy modules are pure, device-agnostic torch/numpy components with typed dataclass settings:
``losses`` (adaptive focal, supervised contrastive, domain-adversarial), ``mixup``, ``sampler``
(domain-aware, class-balanced, hardness-weighted epochs; DDP-shardable), ``hard_mining`` and ``augment``
(batched GPU augmentation and dihedral TTA). The trainer owns their state and checkpoints it.
"""
