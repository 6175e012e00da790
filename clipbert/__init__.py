"""ClipBERT: video-and-language learning via sparse sampling, re-implemented."""

from clipbert.models.original import load_original
from clipbert.predictor import Answer, Predictor

__all__ = ["Answer", "Predictor", "load_original"]
