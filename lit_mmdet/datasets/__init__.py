"""Datasets the project generates itself."""
