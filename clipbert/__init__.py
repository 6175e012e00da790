"""ClipBERT: video-and-language learning via sparse sampling, re-implemented."""

from clipbert.models.original import load_original
from clipbert.predictor import Answer, ClipScores, Predictor, SampledFrames

__all__ = ["Answer", "ClipScores", "Predictor", "SampledFrames", "load_original"]
