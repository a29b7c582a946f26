"""Principal components of the resized gray pixels ("eigen-images"), learnt from the training images."""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import numpy as np
from sklearn.decomposition import PCA as _SklearnPCA
from sklearn.utils._param_validation import Interval, RealNotInt

from featbench.errors import ConfigError
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray
from featbench.registry import register_extractor

__all__ = ["PCA", "pixel_matrix"]


def pixel_matrix(images, size: int) -> np.ndarray:
    """``(n, size²)`` float32 matrix of the gray images resized to ``size × size``, scaled to [0, 1]."""
    out = np.empty((len(images), size * size), dtype=np.float32)
    for i in range(len(images)):
        out[i] = resize(to_gray(images[i]), (size, size)).reshape(-1)
    out *= np.float32(1.0 / 255.0)
    return out


@register_extractor("pca")
class PCA(Extractor):
    """Principal components of the resized gray pixels, "eigen-images" (Turk & Pentland 1991).

    Each image is converted to gray, resized to ``size × size`` (area interpolation when
    shrinking) and flattened to ``size²`` pixels in [0, 1]. ``fit`` learns a
    :class:`sklearn.decomposition.PCA` on the training images only (the mean image and the
    leading eigenvectors of the pixel covariance, with an exact SVD, ``svd_solver="full"``);
    ``transform`` projects each image onto them: ``(x - mean) @ components_.T``, divided by
    the square root of each component's variance when ``whiten=True``.

    ``n_components`` is either a number of components or, as in scikit-learn, a fraction in
    (0, 1): the fewest leading components whose explained variance ratios sum to more than
    the fraction (``components_`` of the fitted PCA tells how many; ``n_features_out_`` too).
    A number larger than ``min(n_training_images, size²)`` is refused at ``fit`` with a
    :class:`~featbench.errors.ConfigError`, as scikit-learn refuses it (there are no more
    components to find); it is not silently clamped, so a feature dimension never differs
    from the one asked for.

    Parameters
    ----------
    size : int, default=32
        Side of the square the gray image is resized to (``size²`` pixels).
    n_components : int or float, default=0.95
        Components kept: an int >= 1, or a float in (0, 1), the fraction of the training
        pixels' variance to keep.
    whiten : bool, default=False
        Scale each component to unit variance on the training images.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    n_features_out_ : int
        Number of components kept.

    References
    ----------
    .. [1] Turk, M., Pentland, A. (1991). Eigenfaces for recognition. Journal of Cognitive
           Neuroscience 3(1), pp. 71-86.
    .. [2] Sirovich, L., Kirby, M. (1987). Low-dimensional procedure for the characterization
           of human faces. JOSA A 4(3), pp. 519-524.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="principal components of the resized gray pixels (eigen-images, scikit-learn PCA)",
        references=("Turk & Pentland 1991, Eigenfaces for recognition",),
        fitted=True,
    )
    _parameter_constraints: ClassVar[dict] = {
        "size": [Interval(Integral, 1, 512, closed="both")],
        "n_components": [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="neither")],
        "whiten": ["boolean"],
    }
    test_params: ClassVar[dict] = {"size": 8, "n_components": 4}

    def __init__(self, size: int = 32, n_components: int | float = 0.95, whiten: bool = False) -> None:
        self.size = size
        self.n_components = n_components
        self.whiten = whiten

    def _check_params(self) -> None:
        if isinstance(self.n_components, Integral) and self.n_components > self.size**2:
            raise ConfigError(f"pca: n_components={self.n_components} is more than the {self.size**2} pixels of a "
                              f"{self.size}x{self.size} image; use at most {self.size**2}, a larger size, or a "
                              f"fraction of variance such as 0.95")

    def _fit(self, images, y) -> None:
        n = len(images)
        if n == 0:
            raise ConfigError("pca: fit needs training images to learn the components from; got none")
        if isinstance(self.n_components, Integral) and self.n_components > n:
            raise ConfigError(f"pca: n_components={self.n_components} is more than the {n} training images (a PCA "
                              f"has at most min(n_images, size**2) = {min(n, self.size**2)} components); use at "
                              f"most {min(n, self.size**2)} or a fraction of variance such as 0.95")
        n_components = int(self.n_components) if isinstance(self.n_components, Integral) else float(self.n_components)
        self.pca_ = _SklearnPCA(n_components=n_components, whiten=self.whiten, svd_solver="full")
        self.pca_.fit(pixel_matrix(images, self.size))
        self.n_features_out_ = int(self.pca_.n_components_)

    def _transform_batch(self, images) -> np.ndarray:
        return self.pca_.transform(pixel_matrix(images, self.size))
