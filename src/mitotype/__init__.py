"""mitotype: normal vs atypical mitotic figure classification (MIDOG 2025 Track 2).

Atypical is the positive class everywhere: label 1, and every probability is p(atypical).
"""

__version__ = "0.1.0"
