"""Evaluation: metrics (atypical = positive class), leak-free splits and reports.

Submodules are imported explicitly (``from mitotype.evaluation.metrics import binary_metrics``) so
that importing the package stays cheap (no matplotlib until a report is written).
"""
