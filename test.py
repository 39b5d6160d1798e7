#!/usr/bin/env python
"""Evaluate a checkpoint: python test.py --checkpoint K.ckpt [--config C] [--metrics segm] [...]"""
from lit_mmdet.cli.test import main

if __name__ == '__main__':
    raise SystemExit(main())
