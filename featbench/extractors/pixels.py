"""Raw pixels: the baseline every comparison table needs."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray, to_rgb
from featbench.registry import register_extractor


@register_extractor("pixels")
class Pixels(Extractor):
    """Resized raw pixel intensities scaled to [0, 1].

    The image is converted to the chosen colour, resized to ``size × size``
    (area interpolation when shrinking) and flattened. Any classifier that beats
    this row has learned something from the features rather than from the pixels.

    Parameters
    ----------
    size : int, default=16
        Side of the square the image is resized to.
    color : {"gray", "rgb"}, default="gray"
        Colour of the flattened pixels; ``d = size**2`` (gray) or ``3 * size**2``.

    References
    ----------
    .. [1] LeCun, Y., Bottou, L., Bengio, Y., Haffner, P. (1998). Gradient-based
           learning applied to document recognition. Proc. IEEE 86(11) — raw-pixel
           baselines on MNIST.
    """

    spec = ExtractorSpec(
        family="classical",
        color="gray",
        description="resized raw pixels in [0, 1] (baseline)",
        references=("LeCun et al. 1998, Gradient-based learning applied to document recognition",),
    )
    _parameter_constraints = {
        # Larger than any image worth resizing to; the run also checks that n_images × dim fits in memory.
        "size": [Interval(Integral, 1, 4096, closed="both")],
        "color": [StrOptions({"gray", "rgb"})],
    }

    def __init__(self, size: int = 16, color: str = "gray") -> None:
        self.size = size
        self.color = color

    def expected_dim(self) -> int:
        """Length of the feature vector, known from the parameters alone."""
        return self.size * self.size * (3 if self.color == "rgb" else 1)

    def _transform_batch(self, images) -> np.ndarray:
        s = self.size
        convert = to_rgb if self.color == "rgb" else to_gray
        d = s * s * (3 if self.color == "rgb" else 1)
        out = np.empty((len(images), d), dtype=np.float32)
        for i in range(len(images)):
            out[i] = resize(convert(images[i]), (s, s)).reshape(-1)
        out *= np.float32(1.0 / 255.0)
        return out
