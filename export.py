#!/usr/bin/env python
"""Export a checkpoint for mmdet: python export.py CHECKPOINT.ckpt OUT.pth (writes OUT.pth and OUT.py)"""
from lit_mmdet.cli.export import main

if __name__ == '__main__':
    raise SystemExit(main())
