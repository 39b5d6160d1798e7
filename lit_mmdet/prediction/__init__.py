"""Prediction over many images: Lightning's predict loop, resumable, COCO results files."""
from .runner import PredictOptions, PredictSummary, predict_images
from .stream import Prediction, iter_predictions

__all__ = ['PredictOptions', 'PredictSummary', 'Prediction', 'iter_predictions', 'predict_images']
