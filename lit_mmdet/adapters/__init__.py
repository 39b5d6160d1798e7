"""The only places lit_mmdet reaches private attributes of Lightning and mmcv.

Each accessor is small and named for what it gives; ``tests/test_adapters.py`` calls every one
against the pinned versions, so a version that moves an attribute fails there, loudly, first.
"""
