"""Feature combinations: the concatenated features of several extractors (scikit-learn's ``FeatureUnion``)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.utils._param_validation import InvalidParameterError, StrOptions

from featbench.errors import ConfigError, FeatbenchError
from featbench.extractors.base import Extractor, ExtractorSpec
from featbench.registry import create_extractor, register_extractor

__all__ = ["Union"]

#: Numbers of ``report_info`` that add up over parts; the union reports their sum under the plain name too.
_ADDITIVE_INFO = ("n_params", "gflops_per_image", "codebook_not_converged")


class _UnionSpec:
    """The class's :class:`ExtractorSpec`; read from an instance, the spec its parts imply: fitted when a
    part is fitted or ``normalize="standard"``, parallel only when every part is, ``rgb`` when a part reads
    colour, ``deep`` when a part is deep. Parts that cannot be built yet (a wrong name) give the class's spec;
    ``validate`` then says what is wrong."""

    def __init__(self, spec: ExtractorSpec) -> None:
        self.spec = spec

    def __get__(self, obj, owner=None) -> ExtractorSpec:
        if obj is None:
            return self.spec
        try:
            specs = [part.spec for part in obj._build_parts()]
        except Exception:  # noqa: BLE001 -- reported by validate, with the part's position
            return self.spec
        if not specs:
            return self.spec
        return replace(
            self.spec,
            family="deep" if any(s.family == "deep" for s in specs) else "classical",
            color="rgb" if any(s.color == "rgb" for s in specs) else "gray",
            requires=tuple(dict.fromkeys(r for s in specs for r in s.requires)),
            fitted=any(s.fitted for s in specs) or obj.normalize == "standard",
            parallel=all(s.parallel for s in specs),
        )


@register_extractor("union")
class Union(Extractor):
    """The features of several extractors side by side (scikit-learn's ``FeatureUnion``).

    Each part is an extractor table as in an experiment file, ``{name = "hog", size = 64}``,
    created with :func:`featbench.create_extractor` and validated when the union is. ``fit``
    fits every part on the same (training) images; ``transform`` computes each part's
    features ``X_i``, normalises them on their own (``normalize``), multiplies them by the
    part's weight and concatenates them, part after part:
    ``[w_1 * N(X_1), w_2 * N(X_2), ...]``. The dimension is the sum of the parts'.

    In an experiment file::

        [[extractors]]
        name = "union"
        label = "hog+color-hist"
        parts = [{name = "hog", size = 64}, {name = "color-hist", bins = [8, 4, 4], grid = 2}]
        normalize = "l2"

    The union is fitted per split when a part is (or with ``normalize = "standard"``), runs
    in worker processes only when every part may, and reads colour when a part does.

    Parameters
    ----------
    parts : list of dict
        Extractor tables: ``name`` (a registered extractor) and that extractor's
        parameters. Required; an error names ``parts[i]`` for a wrong name or parameter.
    weights : list of float or None, default=None
        One non-negative multiplier per part (scikit-learn's ``transformer_weights``);
        None weighs every part 1.
    normalize : {"none", "l2", "standard"}, default="none"
        Per part, before weighting: ``none`` keeps each part's features as they are;
        ``l2`` divides each image's part vector by its Euclidean norm (zero vectors stay
        zero), so parts of different lengths and scales count alike; ``standard``
        standardises each feature to zero mean and unit variance with a
        ``StandardScaler`` fitted on the training images (the union is then fitted).

    References
    ----------
    .. [1] Pedregosa, F. et al. (2011). Scikit-learn: machine learning in Python. JMLR 12,
           pp. 2825-2830 (``sklearn.pipeline.FeatureUnion``).
    .. [2] Gehler, P., Nowozin, S. (2009). On feature combination for multiclass object
           classification. ICCV 2009.
    """

    spec = _UnionSpec(ExtractorSpec(
        family="classical",
        color="rgb",
        description="concatenated features of several extractors (FeatureUnion), weighted, normalised per part",
        references=("Pedregosa et al. 2011, Scikit-learn: machine learning in Python (FeatureUnion)",
                    "Gehler & Nowozin 2009, On feature combination for multiclass object classification"),
        fitted=False,
        parallel=True,
    ))
    _parameter_constraints: ClassVar[dict] = {
        "parts": [list, tuple, None],
        "weights": [list, tuple, None],
        "normalize": [StrOptions({"none", "l2", "standard"})],
    }
    test_params: ClassVar[dict] = {
        "parts": [{"name": "hog", "size": 32}, {"name": "color-hist", "bins": [4, 3, 2], "grid": 2}],
        "weights": [1.0, 0.5],
        "normalize": "standard",
    }

    def __init__(self, parts: Sequence[Mapping[str, Any]] | None = None,
                 weights: Sequence[float] | None = None, normalize: str = "none") -> None:
        self.parts = parts
        self.weights = weights
        self.normalize = normalize

    # -- parameters -----------------------------------------------------------------------------
    def _part_tables(self) -> list[tuple[str, dict]]:
        if not self.parts:
            raise ConfigError('union: parts is empty; give a list of extractor tables, e.g. '
                              'parts = [{name = "hog"}, {name = "color-hist"}]')
        tables = []
        for i, part in enumerate(self.parts):
            if not isinstance(part, Mapping) or not isinstance(part.get("name"), str):
                raise ConfigError(f"union: parts[{i}] must be an extractor table with a name, such as "
                                  f'{{name = "hog", size = 64}}; got {part!r}')
            tables.append((part["name"], {k: v for k, v in part.items() if k != "name"}))
        return tables

    def _build_parts(self) -> list[Extractor]:
        """New (unfitted, unvalidated) extractors of ``parts``."""
        out = []
        for i, (name, params) in enumerate(self._part_tables()):
            try:
                out.append(create_extractor(name, **params))
            except FeatbenchError as exc:
                raise ConfigError(f"union: parts[{i}] ({name}): {exc}") from None
        return out

    def _check_params(self) -> None:
        parts = self._build_parts()
        for i, part in enumerate(parts):
            try:
                part.validate()
            except (InvalidParameterError, FeatbenchError) as exc:
                raise ConfigError(f"union: parts[{i}] ({self.parts[i]['name']}): {exc}") from None
        if self.weights is not None:
            w = list(self.weights)
            ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                     for x in w)
            if len(w) != len(parts) or not ok:
                raise ConfigError(f"union: weights must be one finite number >= 0 per part ({len(parts)} "
                                  f"parts), e.g. {[1.0] * len(parts)}; got {self.weights!r}")

    # -- fit / transform --------------------------------------------------------------------------
    def _weights(self) -> list[float]:
        return [1.0] * len(self.parts) if self.weights is None else [float(x) for x in self.weights]

    def _fit(self, images, y) -> None:
        self.extractors_ = [part.fit(images, y) for part in self._build_parts()]
        self.scalers_ = None
        if self.normalize == "standard":
            self.scalers_ = [StandardScaler().fit(part.transform(images)) for part in self.extractors_]

    def _normalized(self, i: int, X: np.ndarray) -> np.ndarray:
        if self.normalize == "l2":
            return normalize(X, norm="l2")
        if self.normalize == "standard":
            return self.scalers_[i].transform(X)
        return X

    def _transform_batch(self, images) -> np.ndarray:
        blocks = []
        for i, (part, w) in enumerate(zip(self.extractors_, self._weights())):
            X = self._normalized(i, part.transform(images))
            blocks.append(X * np.float32(w) if w != 1.0 else X)
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _empty_features(self) -> np.ndarray:
        return np.hstack([part.transform([]) for part in self.extractors_]).astype(np.float32, copy=False)

    # -- what the report shows ----------------------------------------------------------------------
    def _prefixes(self) -> list[str]:
        names = [name for name, _ in self._part_tables()]
        return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]

    def report_info(self) -> dict:
        """Each part's numbers under ``<part name>.<key>`` (``<name>#<i>`` when a name repeats); the parts'
        ``n_params``, ``gflops_per_image`` and ``codebook_not_converged`` also summed under their own names."""
        if not hasattr(self, "extractors_"):
            return {}
        info: dict = {}
        totals: dict = {}
        for prefix, part in zip(self._prefixes(), self.extractors_):
            for key, value in part.report_info().items():
                info[f"{prefix}.{key}"] = value
                if key in _ADDITIVE_INFO and isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
        return {**totals, **info}

    @property
    def weights_label(self) -> str:
        """The parts' weights labels (``imagenet``, ``random``...) joined by ``+``; empty when none has one."""
        try:
            parts = getattr(self, "extractors_", None) or self._build_parts()
        except FeatbenchError:
            return ""
        return "+".join(label for label in (p.weights_label for p in parts) if label)

    def content_token(self) -> str | None:
        """The parts' classes, cache versions and content tokens: a change in a part invalidates the union's
        cached features as it does the part's."""
        try:
            parts = self._build_parts()
        except FeatbenchError:
            return None
        ident = [[f"{type(p).__module__}.{type(p).__qualname__}", getattr(type(p), "cache_version", 1),
                  p.content_token()] for p in parts]
        return hashlib.sha256(json.dumps(ident, default=repr).encode()).hexdigest()[:16]
