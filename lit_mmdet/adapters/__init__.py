"""The only places lit_mmdet reaches private attributes of other libraries (Lightning, mmcv, torch, the
standard library).

Each accessor is small and named for what it gives; ``tests/adapters/test_private_attributes.py`` calls every one
against the pinned versions, so a version that moves an attribute fails there, loudly, first.
"""
