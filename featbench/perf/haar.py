"""Haar-like features: featbench's selected subset against all features from scikit-image.

The reference is what one would do without feature selection: every Haar-like
feature of the 25×25 window (``haar_like_feature(integral_image(img), 0, 0, 25, 25)``,
190,736 values). The subject is ``haar.transform`` of the same images, fitted on
the ``faces`` training images (200 features). Both are throughputs in images/s
measured in this run, so the ratio is the speed-up; the target is ``>= 20``.
"""

from __future__ import annotations

import numpy as np

from featbench.perf import Measurement, benchmark, best_time


@benchmark("haar-transform")
def haar_transform(quick: bool) -> list[Measurement]:
    from skimage.feature import haar_like_feature
    from skimage.transform import integral_image

    from featbench import create_extractor, load_dataset

    faces = load_dataset("faces")
    images = np.stack([faces[i] for i in range(len(faces))])
    labels = faces.labels
    ext = create_extractor("haar", size=25)
    ext.fit(images[::2], labels[::2])  # half of the set, both classes: the fit is not what is timed
    side = images.shape[1]

    # All 190,736 features take about 0.3 s per image, so the reference runs on a few images only.
    n_ref = 1 if quick else 3
    ref_images = [images[i].astype(np.float64) for i in range(n_ref)]

    def reference() -> None:
        for img in ref_images:
            haar_like_feature(integral_image(img), 0, 0, side, side)

    subject_images = images[: 50 if quick else 200]

    def subject() -> None:
        ext.transform(subject_images)

    t_ref = best_time(reference, repeats=1 if quick else 3, min_time=0.0) / n_ref
    t_sub = best_time(subject, repeats=3 if quick else 5) / len(subject_images)
    n_all = haar_like_feature(integral_image(ref_images[0]), 0, 0, side, side).size
    return [
        Measurement(
            benchmark="haar-transform",
            subject=f"featbench haar.transform ({ext.n_features_out_} selected features)",
            reference=f"scikit-image haar_like_feature, all {n_all} features",
            value=1.0 / t_sub,
            reference_value=1.0 / t_ref,
            unit="images/s",
            target=">= 20",
            note=f"25x25 faces; {1000 * t_sub:.3g} ms vs {1000 * t_ref:.3g} ms per image; ratio = speed-up",
        )
    ]
