"""Command-line entry points behind train.py (and later test.py / predict.py)."""
