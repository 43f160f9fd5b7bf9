"""Experiments: what trains and scores many models to answer one question (cross-validation, ablation,
the hold-out benchmark). Above training and serving; below the CLI.
"""
