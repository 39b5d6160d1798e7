#!/usr/bin/env python
"""Train an mmdet 2.x config with PyTorch Lightning: python train.py --config CONFIG [...]"""
from lit_mmdet.cli.train import main

if __name__ == '__main__':
    raise SystemExit(main())
