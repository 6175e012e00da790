"""ClipBERT: video-and-language learning via sparse sampling, re-implemented."""

from clipbert.models.original import load_original
from clipbert.predictor import Answer, ClipScores, Predictor

__all__ = ["Answer", "ClipScores", "Predictor", "load_original"]
