"""Serving: reading challenge stacks, writing and checking challenge outputs, scoring them offline,
prediction and export. Submodules are imported explicitly so that importing this package stays cheap.
"""
