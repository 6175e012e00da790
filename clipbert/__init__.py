"""ClipBERT: video-and-language learning via sparse sampling, re-implemented."""

from clipbert.models.original import load_original

__all__ = ["load_original"]
