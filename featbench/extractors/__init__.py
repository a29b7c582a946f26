"""Extractors: scikit-learn transformers from images to ``(n, d)`` float32 features."""

from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray, to_rgb

__all__ = ["Extractor", "ExtractorSpec", "resize", "to_gray", "to_rgb"]
