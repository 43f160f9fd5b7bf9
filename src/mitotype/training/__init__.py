"""Training: configuration, the loop and its parts (evaluator, selection record, recorder, checkpointer), resume
state, and the strategies it combines.

The strategies are plug-ins (:mod:`mitotype.training.strategies`): each implements the hooks it needs of
one small protocol and is registered once, and checked, in the registry. Their components are pure, device-agnostic
torch/numpy modules with typed settings: ``losses`` (adaptive focal, supervised contrastive,
domain-adversarial), ``mixup``, ``sampler`` (domain-aware, class-balanced, hardness-weighted epochs;
DDP-shardable), ``hard_mining`` and ``augment`` (batched augmentation on the training device).
"""
