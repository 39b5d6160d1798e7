#!/usr/bin/env python
"""Detect on images: python predict.py --checkpoint K [--config C] INPUTS... --out-dir D [--score-thr T]"""
from lit_mmdet.cli.predict import main

if __name__ == '__main__':
    raise SystemExit(main())
