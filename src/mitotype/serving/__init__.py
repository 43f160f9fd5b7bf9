"""Serving: reading challenge stacks, writing and checking challenge outputs, scoring them offline, and
export (prediction itself is :mod:`mitotype.models.predict`). Submodules are imported explicitly so that
importing this package stays cheap.
"""
