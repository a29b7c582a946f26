"""Deep extractors: keras.applications backbones (vgg16, resnet50, keras-app) and the trained cnn.

Everything runs offline: a fixture makes any network access (DNS or connect) fail
and records the attempt, and ``KERAS_HOME`` points at an empty folder unless a
test puts a file there. Sizes are tiny (input 32) and weights random, except for
the real MobileNet ImageNet file from ``FEATBENCH_DATA``.
"""

from __future__ import annotations

import pickle
import shutil
import socket
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import skip_unless_ci
from sklearn.base import clone
from test_common import REASSOCIATION_TOL, assert_close_to_float32_reassociation

from featbench import create_extractor
from featbench.errors import ConfigError, WeightsUnavailableError

pytest.importorskip("tensorflow")

MOBILENET_FILE = "mobilenet_2_5_224_tf_no_top.h5"
VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Make every DNS look-up and socket connection fail, and record them."""
    from featbench.extractors import deep

    monkeypatch.setattr(deep, "_FAILED_DOWNLOADS", {})  # each test starts with no failed download on record
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network access is disabled in featbench's tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def offline(tmp_path, monkeypatch, network_attempts) -> Path:
    """An empty Keras cache and no FEATBENCH_DATA: nothing local, no network."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    return home


def _images(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(20, 20), (50, 70, 3), (33, 25), (120, 90, 3), (32, 32), (64, 48, 3)]
    return [rng.integers(0, 256, size=shapes[i % len(shapes)], dtype=np.uint8) for i in range(n)]


def assert_features_differ(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """``a`` and ``b`` differ by far more than float32 re-association could make them (the
    tolerance of :func:`assert_close_to_float32_reassociation`, relative to the larger scale)."""
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    gap = float(np.abs(a - b).max())
    assert scale > 0 and gap > 10 * REASSOCIATION_TOL * scale, f"{what}: differ by only {gap:.3g} (scale {scale:.3g})"


def _small(name: str, **kw):
    params = {"input_size": 32, "weights": "random", "batch_size": 4}
    if name == "keras-app":
        params.update(model="MobileNet", alpha=0.25)
    params.update(kw)
    return create_extractor(name, **params)


# -- keras.applications backbones ---------------------------------------------------------
@pytest.mark.parametrize(("name", "dim"), [("vgg16", 512), ("resnet50", 2048), ("keras-app", 256)])
def test_embedding_dimension_with_average_pooling(name, dim):
    ext = _small(name, pooling="avg").fit([])
    X = ext.transform(_images())
    assert X.shape == (6, dim) and X.dtype == np.float32
    assert ext.weights_label == "random"
    info = ext.report_info()
    assert info["n_params"] == ext.keras_model.count_params() > 0
    assert info["gflops_per_image"] > 0


def test_max_pooling_is_the_maximum_of_the_feature_map():
    # at 64 the last VGG16 feature map is 2x2 (at 32 it is 1x1 and both poolings agree)
    ext = _small("vgg16", pooling="max", input_size=64).fit([])
    avg = _small("vgg16", pooling="avg", input_size=64).fit([])
    imgs = _images(3)
    X, A = ext.transform(imgs), avg.transform(imgs)
    # the maximum of non-negative (ReLU) activations is at least their mean; the two models are
    # separate (equally seeded) builds, so their feature maps agree up to float32 re-association
    tol = REASSOCIATION_TOL * np.abs(X).max()
    assert (X >= A - tol).all() and (X > A + tol).any()


def test_intermediate_layer_is_pooled():
    ext = _small("vgg16", layer="block3_conv3").fit([])
    assert ext.transform(_images(2)).shape == (2, 256)
    assert ext.report_info()["gflops_per_image"] < _small("vgg16").fit([]).report_info()["gflops_per_image"]


def test_layer_of_the_last_block_is_the_default_embedding_exactly():
    """``layer = "conv_pw_13_relu"`` (MobileNet's last layer) with avg pooling is the default row, bit for bit."""
    imgs = _images(5)
    default = _small("keras-app", random_state=3).fit([])
    probe = _small("keras-app", random_state=3, layer="conv_pw_13_relu", pooling="avg").fit([])
    assert probe.keras_model.output.shape == default.keras_model.output.shape == (None, 256)
    np.testing.assert_array_equal(probe.transform(imgs), default.transform(imgs))
    assert probe.report_info()["gflops_per_image"] == default.report_info()["gflops_per_image"]


def _feature_map(ext, layer: str, imgs) -> np.ndarray:
    """``layer``'s output for ``imgs`` through the extractor's own backbone and preprocessing."""
    from featbench.extractors.deep import import_tensorflow

    tf, keras = import_tensorflow()
    base = ext.keras_backbone
    cut = keras.Model(base.input, base.get_layer(layer).output)
    x = ext._prepare(imgs, 0, len(imgs)).astype(np.float32)
    return np.asarray(cut(ext._ensure_net()["preprocess"](tf.constant(x)), training=False))


@pytest.mark.parametrize("layer", ["conv_pw_1_relu", "conv_pw_1_bn"])  # after the ReLU, and before it
def test_gem_pooling_is_the_generalized_mean_of_the_clamped_map(layer):
    imgs = _images(3)
    ext = _small("keras-app", input_size=64, layer=layer, pooling="gem").fit([])
    fmap = _feature_map(ext, layer, imgs)
    assert fmap.shape[1:3] == (32, 32)
    if layer == "conv_pw_1_bn":
        assert (fmap < 0).any(), "the batch-norm output should have negative values to clamp"
    expected = (np.maximum(fmap.astype(np.float64), 1e-6) ** 3).mean(axis=(1, 2)) ** (1 / 3)
    X = ext.transform(imgs)
    assert_close_to_float32_reassociation(X, expected.astype(np.float32))
    # between the mean and the maximum of the (clamped) map: the power-mean inequality, strictly here
    clamped = np.maximum(fmap, 1e-6)
    tol = REASSOCIATION_TOL * np.abs(X).max()
    assert (X >= clamped.mean(axis=(1, 2)) - tol).all() and (X <= clamped.max(axis=(1, 2)) + tol).all()
    assert_features_differ(X, clamped.mean(axis=(1, 2)), "GeM and the mean")


def test_gflops_are_counted_up_to_the_layer():
    from featbench.extractors.deep import count_gflops

    ext = _small("keras-app", layer="conv_pw_1_relu").fit([])  # alpha 0.25 at 32 px
    # conv1: 3x3, stride 2, 3 -> 8 channels on 16x16 outputs; conv_dw_1: 3x3 depthwise on 8; conv_pw_1: 8 -> 16
    macs = 16 * 16 * (3 * 3 * 3 * 8) + 16 * 16 * (3 * 3 * 8) + 16 * 16 * (8 * 16)
    assert count_gflops(ext.keras_model) == pytest.approx(2 * macs / 1e9, rel=1e-12)
    deeper = _small("keras-app", layer="conv_pw_7_relu").fit([])
    assert count_gflops(ext.keras_model) < count_gflops(deeper.keras_model) < count_gflops(
        _small("keras-app").fit([]).keras_model)


def test_unknown_layer_is_refused_before_anything_runs():
    from featbench.config import parse_experiment

    ext = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=32, layer="conv_pw_7_rlu")
    with pytest.raises(ConfigError, match=r"'layer'.*Got 'conv_pw_7_rlu'; close matches: 'conv_pw_7_relu'"):
        ext.validate()
    data = {"datasets": [{"name": "digits"}], "classifiers": [{"name": "logreg"}],
            "extractors": [{"name": "keras-app", "alpha": 0.25, "input_size": 32, "layer": "conv_pw_7_rlu"}]}
    with pytest.raises(ConfigError, match=r"\[\[extractors\]\] #1.*'layer'.*'conv_pw_7_relu'"):
        parse_experiment(data)
    with pytest.raises(ConfigError, match="'trainable_from'.*fine-tuning only"):
        _small("keras-app", trainable_from="conv_pw_7_relu").validate()
    with pytest.raises(ConfigError, match="'trainable_from'.*at or before layer='conv_pw_3_relu'"):
        _small("keras-app", fine_tune=True, layer="conv_pw_3_relu", trainable_from="conv_pw_7_relu").validate()


def test_gray_and_rgb_inputs_of_several_sizes():
    ext = _small("resnet50").fit([])
    gray = [np.random.default_rng(i).integers(0, 256, size=s, dtype=np.uint8)
            for i, s in enumerate([(8, 8), (20, 20), (31, 57), (300, 200)])]
    rgb = [np.repeat(g[:, :, None], 3, axis=2) for g in gray]
    rgba = [np.dstack([c, np.full(c.shape[:2], 255, np.uint8)]) for c in rgb]
    X = ext.transform(gray)
    assert X.shape == (4, 2048) and np.isfinite(X).all()
    # a gray image is the RGB image with three equal channels: the network gets the same input,
    # and TensorFlow's multi-threaded kernels give the same rows up to float32 re-association
    assert_close_to_float32_reassociation(ext.transform(rgb), X)
    assert_close_to_float32_reassociation(ext.transform(rgba), X)
    # the images differ, so do their features (by far more than that tolerance)
    for i in range(4):
        for j in range(i + 1, 4):
            assert_features_differ(X[i], X[j], f"images {i} and {j}")


def test_rows_do_not_depend_on_the_batch():
    """An image's row is the same whatever batch it is in, up to float32 re-association.

    oneDNN's convolutions are not batch-invariant: a different number of images per batch
    changes how the work is blocked, so each output is the same sum of float32 products added
    in another order. On some machines rows then differ by up to 3e-7 of the largest feature
    (5.7e-6 measured; a relative 8.8e-4 on features near zero, which is why the tolerance is
    relative to the feature scale, not to each element).
    """
    imgs = _images(7)
    ext = _small("resnet50", batch_size=3).fit([])
    X = ext.transform(imgs)
    for b in (1, 2, 7):
        assert_close_to_float32_reassociation(ext.set_params(batch_size=b).transform(imgs), X, f"batch_size={b}")
    assert_close_to_float32_reassociation(ext.transform(imgs[4:5]), X[4:5], "image 4 alone")
    # ... and the tolerance still sees real bugs: rows in the wrong order, or one image prepared
    # differently from the others (here a single grey level brighter, the smallest change there is)
    with pytest.raises(AssertionError):
        assert_close_to_float32_reassociation(X[[0, 1, 2, 4, 3, 5, 6]], X)
    brighter = list(imgs)
    brighter[3] = np.minimum(imgs[3], 254) + np.uint8(1)
    moved = ext.set_params(batch_size=3).transform(brighter)
    with pytest.raises(AssertionError):
        assert_close_to_float32_reassociation(moved, X)
    assert_close_to_float32_reassociation(np.delete(moved, 3, axis=0), np.delete(X, 3, axis=0))


# -- batch_size="auto" ----------------------------------------------------------------------
def test_batch_search_climbs_while_each_size_gains_and_chooses_the_fastest():
    from featbench.extractors.deep import BatchSearch

    # a warm-up batch and two timed windows of at least 16 images each
    assert [BatchSearch.images_for(b) for b in (8, 16, 32, 64)] == [8 + 2 * 16, 16 + 2 * 16, 3 * 32, 3 * 64]
    search = BatchSearch((8, 16, 32, 64, 128))
    # 32 gains 1.7 % on 16 and 64 is slower: two sizes in a row under 2 %, the climb stops
    for b, s in [(8, 1.0), (16, 0.9), (32, 0.885), (64, 0.95)]:
        assert not search.done and search.next_candidate() == b
        search.record(b, s)
    assert search.done and search.next_candidate() is None and search.best == 32
    assert 128 not in search.seconds_per_image
    # a flat step does not stop it: throughput that rises again after one size without a gain is found
    plateau = BatchSearch((8, 16, 32, 64, 128))
    for b, s in [(8, 1.0), (16, 1.0), (32, 0.9), (64, 0.85), (128, 0.86)]:
        assert not plateau.done
        plateau.record(b, s)
    assert plateau.done and plateau.best == 64
    # two slower sizes after the fastest stop it too, and the fastest before them is chosen
    slower = BatchSearch((8, 16, 32, 64, 128))
    for b, s in [(8, 1.0), (16, 0.5), (32, 0.6), (64, 0.7)]:
        slower.record(b, s)
    assert slower.done and slower.best == 16 and 128 not in slower.seconds_per_image
    # gains all the way: every candidate is tried, the last is the best
    rising = BatchSearch((8, 16, 32))
    for b, s in [(8, 1.0), (16, 0.5), (32, 0.25)]:
        rising.record(b, s)
    assert rising.done and rising.best == 32


@pytest.fixture
def fake_batch_costs(monkeypatch):
    """Make the forward pass cost ``costs[batch]`` seconds per image on a fake clock; returns
    ``(costs, batches)``: the dict to fill and the list of batch sizes the network was called with."""
    from featbench.extractors import deep

    costs: dict[int, float] = {}
    batches: list[int] = []
    now = [0.0]
    monkeypatch.setattr(deep, "_clock", lambda: now[0])
    monkeypatch.setattr(deep, "AUTO_BATCH_SIZES", (2, 4, 8))
    monkeypatch.setattr(deep, "AUTO_WINDOW_IMAGES", 4)  # timed windows of 2 batches of 2, 1 of 4, 1 of 8
    build = deep.KerasApplication._build

    def timed_build(self):
        net = build(self)
        predict = net["predict"]

        def fake_cost_predict(x):
            batches.append(len(x))
            now[0] += costs.get(len(x), 1.0) * len(x)
            return predict(x)

        net["predict"] = fake_cost_predict
        return net

    monkeypatch.setattr(deep.KerasApplication, "_build", timed_build)
    return costs, batches


def test_auto_batch_size_measures_on_the_first_images_and_keeps_their_features(fake_batch_costs):
    costs, batches = fake_batch_costs
    costs.update({2: 1.0, 4: 0.5, 8: 0.6})  # 4 is fastest; 8 is slower, so the climb stops there
    imgs = _images(50)
    ext = _small("resnet50", batch_size="auto").fit([])
    assert ext.batch_search_.seconds_per_image == {}
    X = ext.transform(imgs)
    # a warm-up batch and two timed windows per candidate, then the other 4 images at the fastest
    assert batches == [2] * 5 + [4] * 3 + [8] * 3 + [4]
    assert ext.batch_search_.done and ext.batch_size_ == 4 == ext.report_info()["batch_size"]
    assert ext.batch_search_.seconds_per_image == pytest.approx({2: 1.0, 4: 0.5, 8: 0.6})
    # the images measured on are not thrown away: every row is the image's own, whatever batch it was in
    fixed = _small("resnet50", batch_size=4).fit([])
    assert_close_to_float32_reassociation(X, fixed.transform(imgs))
    # the choice is kept: the next call measures nothing
    del batches[:]
    ext.transform(imgs[:10])
    assert batches == [4, 4, 2]


def test_auto_batch_size_waits_for_a_call_with_enough_images(fake_batch_costs):
    costs, batches = fake_batch_costs
    costs.update({2: 1.0, 4: 0.9, 8: 0.5})
    ext = _small("resnet50", batch_size="auto").fit([])
    ext.transform(_images(5))  # fewer than the first candidate needs (10): the fallback size
    assert batches == [5] and ext.batch_search_.seconds_per_image == {} and ext.batch_size_ == 8
    del batches[:]
    ext.transform(_images(25))  # 2 and 4 measured; the 3 images left are too few for 8 (24)
    assert batches == [2] * 5 + [4] * 3 + [3] and not ext.batch_search_.done and ext.batch_size_ == 4
    del batches[:]
    ext.transform(_images(30))  # the search goes on where it stopped
    assert batches == [8] * 3 + [6] and ext.batch_search_.done and ext.batch_size_ == 8


def test_auto_batch_size_is_measured_again_by_a_copy_and_for_other_parameters(fake_batch_costs):
    costs, batches = fake_batch_costs
    costs.update({2: 1.0, 4: 2.0, 8: 2.0})
    ext = _small("resnet50", batch_size="auto").fit([])
    ext.transform(_images(46))  # 10 + 12 + 24 images measure 2, 4 and 8
    assert ext.batch_size_ == 2 and ext.batch_search_.done
    for copy in (pickle.loads(pickle.dumps(ext)), clone(ext)):  # another process or machine may differ
        assert copy.batch_search_ is None
        copy.fit([])
        assert copy.batch_search_.seconds_per_image == {}
    ext.set_params(input_size=48).fit([])  # another network: measured afresh
    assert ext.batch_search_.seconds_per_image == {}
    # an int is used as it is: nothing measured
    fixed = _small("resnet50", batch_size=3).fit([])
    del batches[:]
    fixed.transform(_images(7))
    assert batches == [3, 3, 2] and fixed.batch_search_ is None
    assert fixed.batch_size_ == 3 == fixed.report_info()["batch_size"]


def test_auto_batch_sizes_are_capped_by_memory(monkeypatch):
    from featbench.extractors import deep

    ext = _small("vgg16", batch_size="auto").fit([])
    per_image = ext._ensure_net()["activation_bytes"]
    assert per_image == 4 * 32 * 32 * 64  # block1_conv1/2 at input 32: 64 channels, float32
    monkeypatch.setattr(deep, "_physical_memory_bytes", lambda: int(16 * 20 * per_image))
    assert deep.AUTO_MEMORY_SHARE == 1 / 16
    assert ext._auto_candidates(ext._ensure_net()) == (8, 16)  # 32 x activations > 1/16 of the memory
    monkeypatch.setattr(deep, "_physical_memory_bytes", lambda: 1)
    assert ext._auto_candidates(ext._ensure_net()) == (8,)  # the smallest is always allowed


def test_batch_size_must_be_a_positive_int_or_auto():
    from sklearn.utils._param_validation import InvalidParameterError

    assert create_extractor("vgg16").batch_size == "auto"
    for bad in ("fast", 0, 2.5):
        with pytest.raises(InvalidParameterError, match="'batch_size' parameter of VGG16 must be"):
            _small("vgg16", batch_size=bad).fit([])


def test_random_weights_are_seeded():
    imgs = _images(3)
    ea, eb, ec = (_small("keras-app", random_state=s).fit([]) for s in (1, 1, 2))
    # the seeded generator draws the same weights, bit for bit (element-wise: nothing to re-associate)
    for wa, wb in zip(ea.keras_backbone.get_weights(), eb.keras_backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    a, b, c = (e.transform(imgs) for e in (ea, eb, ec))
    assert_close_to_float32_reassociation(b, a)
    assert_features_differ(a, c, "random_state 1 and 2")


def test_weights_file_round_trip(tmp_path):
    imgs = _images(4)
    ext = _small("keras-app", input_size=64, random_state=7).fit([])
    path = tmp_path / "backbone.weights.h5"
    ext.keras_backbone.save_weights(str(path))
    loaded = _small("keras-app", input_size=64, weights=str(path), random_state=0).fit([])
    assert loaded.weights_label == "file:backbone.weights.h5"
    assert loaded.weights_file_ == str(path)
    # the file gives back the very bytes saved (a round trip, exact) ...
    for a, b in zip(loaded.keras_backbone.get_weights(), ext.keras_backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # ... so the features agree up to float32 re-association (two separate TensorFlow models)
    assert_close_to_float32_reassociation(loaded.transform(imgs), ext.transform(imgs))
    # ... which are not what seed 0 gives
    seed0 = _small("keras-app", input_size=64, random_state=0).fit([])
    assert_features_differ(seed0.transform(imgs), ext.transform(imgs), "seed 0 and the file")


def test_replacing_a_weights_file_changes_the_cache_key_and_the_cells(tmp_path, monkeypatch):
    from featbench import run
    from featbench.cache import feature_key

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "backbone.weights.h5"
    _small("keras-app", random_state=1).fit([]).keras_backbone.save_weights(str(path))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(f"""
        name = "w"
        [protocol]
        kind = "holdout"
        repeats = 1
        test_size = 0.5
        [[datasets]]
        name = "digits"
        limit_per_class = 4
        [[extractors]]
        name = "keras-app"
        model = "MobileNet"
        alpha = 0.25
        input_size = 32
        weights = "{path}"
        [[classifiers]]
        name = "logreg"
        C = [1.0]
    """))
    first = run(cfg, tmp_path / "out")
    key_before = feature_key("fp", _small("keras-app", weights=str(path)))

    _small("keras-app", random_state=2).fit([]).keras_backbone.save_weights(str(path))  # same path, new content
    assert feature_key("fp", _small("keras-app", weights=str(path))) != key_before
    second = run(cfg, tmp_path / "out")
    assert [r["status"] for r in first.records + second.records] == ["ok", "ok"]
    assert second.computed == 1 and second.reused == 0, "a cell computed with the old file must not be reused"
    assert not second.records[0]["features_from_cache"]
    assert second.records[0]["cell_id"] != first.records[0]["cell_id"]


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'weights'.*imagenet.*random"):
        _small("vgg16", weights=str(tmp_path / "nope.h5")).fit([])


def test_model_built_once_and_not_pickled():
    ext = _small("keras-app").fit([])
    model = ext.keras_model
    ext.fit([])
    assert ext.keras_model is model  # same parameters: no rebuild
    blob = pickle.dumps(ext)
    assert len(blob) < 10_000  # parameters only, no TensorFlow objects
    again = pickle.loads(blob)
    # rebuilt from the parameters: the same seeded weights, the same rows up to float32 re-association
    assert_close_to_float32_reassociation(again.transform(_images(2)), ext.transform(_images(2)))


def test_gflops_of_vgg16_and_resnet50_match_their_published_counts():
    from featbench.extractors.deep import count_gflops

    ext = _small("vgg16", input_size=224).fit([])
    gflops = ext.report_info()["gflops_per_image"]
    # VGG16's 13 convolutions (3x3, same padding) at 224: sum of H*W*9*Cin*Cout multiply-adds
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128), (56, 128, 256), (56, 256, 256),
             (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512), (14, 512, 512), (14, 512, 512),
             (14, 512, 512)]
    assert gflops == pytest.approx(2 * sum(h * h * 9 * cin * cout for h, cin, cout in convs) / 1e9, abs=1e-4)
    # torchvision's model card (VGG16_Weights.IMAGENET1K_V1): 15.47 G multiply-adds with the top, whose
    # three dense layers are 25088*4096 + 4096*4096 + 4096*1000 of them; featbench counts no top
    top = 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert gflops == pytest.approx(2 * (15.47e9 - top) / 1e9, abs=2 * 0.005)  # 15.47 is rounded to 0.01
    # ResNet50: He et al. (2016), Table 1: 3.8e9 multiply-adds (with the 1000-way top, 2e6 more)
    r50 = _small("resnet50", input_size=224).fit([])
    assert count_gflops(r50.keras_model) == pytest.approx(2 * 3.86, rel=0.02)


def test_gflops_of_a_small_model_from_its_layer_shapes():
    """Every kind of layer count_gflops knows, with output sizes worked out by hand from the shapes."""
    from featbench.extractors.deep import count_gflops, import_tensorflow

    _, keras = import_tensorflow()
    layers = keras.layers
    x = inp = keras.Input((20, 16, 3))
    x = layers.Conv2D(8, 3, strides=2)(x)  # valid, stride 2: 9 x 7 x 8
    macs = 9 * 7 * (3 * 3 * 3) * 8
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 9 x 7 x 16, one 3x3 filter each
    macs += 9 * 7 * (3 * 3) * 16
    x = layers.SeparableConv2D(12, 3, padding="same")(x)  # depthwise 3x3 on 16 channels, then 1x1 16 -> 12
    macs += 9 * 7 * (3 * 3 * 16 + 16 * 12)
    x = layers.Conv2D(12, 1, groups=4)(x)  # 4 groups of 3 -> 3 channels
    macs += 9 * 7 * (12 // 4) * 12
    x = layers.Conv2DTranspose(4, 2, strides=2)(x)  # every input position writes a 2x2x4 patch: 18 x 14 x 4
    macs += 9 * 7 * (2 * 2 * 12) * 4
    inner = keras.Sequential([keras.Input((18, 14, 4)), layers.Conv2D(6, 5, padding="same")])  # a nested model
    x = inner(x)
    macs += 18 * 14 * (5 * 5 * 4) * 6
    x = layers.MaxPooling2D(2)(x)  # 9 x 7 x 6; pooling, normalisation and activations are not counted
    x = layers.BatchNormalization()(x)
    x = layers.Reshape((63, 6))(x)
    x = layers.Conv1D(10, 3)(x)  # 61 x 10
    macs += 61 * 3 * 6 * 10
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(5)(x)
    macs += 10 * 5
    model = keras.Model(inp, out)
    assert count_gflops(model) == pytest.approx(2 * macs / 1e9, rel=1e-12)
    # the count follows the input size (a fully convolutional model: 4 times the positions, 4 times the cost)
    a = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(4, 3, padding="same")])
    b = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, padding="same")])
    assert count_gflops(b) == pytest.approx(4 * count_gflops(a), rel=1e-12)
    with pytest.raises(ValueError, match="fixed input size"):
        count_gflops(keras.Sequential([keras.Input((None, None, 3)), layers.Conv2D(4, 3)]))


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ConfigError, match="'model'.*'MobileNet'"):
        create_extractor("keras-app", model="mobilenet", weights="random").fit([])
    with pytest.raises(ConfigError, match="ResNet50"):
        create_extractor("keras-app", model="ResNet05", weights="random").fit([])


def test_model_kwargs_and_alpha():
    a = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=32, weights="random").fit([])
    b = create_extractor("keras-app", model="MobileNet", model_kwargs={"alpha": 0.25}, input_size=32,
                         weights="random").fit([])
    assert [w.shape for w in a.keras_backbone.get_weights()] == [w.shape for w in b.keras_backbone.get_weights()]
    assert_close_to_float32_reassociation(a.transform(_images(2)), b.transform(_images(2)))
    with pytest.raises(ConfigError, match="alpha"):
        create_extractor("keras-app", model="MobileNet", alpha=0.5, model_kwargs={"alpha": 0.25}).fit([])
    with pytest.raises(ConfigError, match="'alpha'.*VGG19 has none"):
        create_extractor("keras-app", model="VGG19", alpha=0.5).fit([])
    with pytest.raises(ConfigError, match="'include_top'"):
        create_extractor("keras-app", model="MobileNet", model_kwargs={"include_top": True}).fit([])
    with pytest.raises(ConfigError, match="'depth'.*accepted: alpha, depth_multiplier, dropout"):
        create_extractor("keras-app", model="MobileNet", model_kwargs={"depth": 2}).fit([])


def test_unknown_layer_lists_close_matches():
    with pytest.raises(ConfigError, match="'layer'.*'block3_conv3'"):
        _small("vgg16", layer="block3_conv33").fit([])


def test_input_size_below_32_is_rejected():
    with pytest.raises(ValueError, match="input_size"):
        _small("vgg16", input_size=16).fit([])


# -- ImageNet weights: local files first, never a download when one exists ------------------
def test_offline_imagenet_vgg16_names_the_file(offline, network_attempts):
    ext = create_extractor("vgg16", input_size=32, weights="imagenet")
    assert ext.weights_label == "imagenet"
    with pytest.raises(WeightsUnavailableError, match=f"ImageNet weights for VGG16 not available — put {VGG16_FILE}") as err:
        ext.fit([])
    assert str(offline / "models") in str(err.value)
    assert 'weights = "random"' in str(err.value)
    assert network_attempts, "Keras should have tried its own download last"


def test_a_failed_download_is_not_retried_in_the_same_process(offline, network_attempts):
    for _ in range(2):
        with pytest.raises(WeightsUnavailableError, match=f"put {VGG16_FILE} in .*download failed"):
            create_extractor("vgg16", input_size=32, weights="imagenet").fit([])
        if _ == 0:
            first = len(network_attempts)
    assert first > 0 and len(network_attempts) == first, "the second fit must not try the network again"


def test_offline_imagenet_rows_are_skipped_by_the_runner(offline, tmp_path, monkeypatch):
    from featbench import run

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent("""
        name = "offline"
        [protocol]
        kind = "holdout"
        repeats = 1
        test_size = 0.5
        [[datasets]]
        name = "digits"
        limit_per_class = 4
        [[extractors]]
        name = "vgg16"
        label = "vgg16-imagenet"
        input_size = 32
        weights = "imagenet"
        [[extractors]]
        name = "vgg16"
        label = "vgg16-random"
        input_size = 32
        weights = "random"
        [[classifiers]]
        name = "logreg"
        C = [1.0]
    """))
    result = run(cfg, tmp_path / "out")
    status = {r["extractor"]: r["status"] for r in result.records}
    assert status["vgg16-random"] == "ok"
    assert status["vgg16-imagenet"].startswith("skipped: ImageNet weights for VGG16 not available")
    assert VGG16_FILE in status["vgg16-imagenet"]
    weights = {r["extractor"]: r["weights"] for r in result.records}
    assert weights == {"vgg16-imagenet": "imagenet", "vgg16-random": "random"}


def _assert_weights_equal_file(model, path: Path) -> int:
    """Every weight tensor stored in a Keras (legacy HDF5) weights file equals the model's."""
    checked = 0
    with h5py.File(path, "r") as f:
        for name in f.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            group = f[name]
            stored = [np.asarray(group[w.decode() if isinstance(w, bytes) else w]) for w in group.attrs["weight_names"]]
            if not stored:
                continue
            current = model.get_layer(name).get_weights()
            assert len(current) == len(stored), name
            for a, b in zip(current, stored):
                np.testing.assert_array_equal(a, b, err_msg=name)
                checked += 1
    return checked


def test_a_local_copy_with_the_wrong_hash_is_ignored(offline, network_attempts, tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "keras" / "models").mkdir(parents=True)
    (data / "keras" / "models" / VGG16_FILE).write_bytes(b"not the VGG16 weights")
    monkeypatch.setenv("FEATBENCH_DATA", str(data))
    with pytest.raises(WeightsUnavailableError, match=f"{VGG16_FILE}.*did not match the expected hash"):
        create_extractor("vgg16", input_size=32, weights="imagenet").fit([])


def test_imagenet_file_names_are_the_ones_keras_uses():
    from featbench.extractors.deep import imagenet_weights_file

    assert imagenet_weights_file("VGG16", {}, 224).name == VGG16_FILE
    assert imagenet_weights_file("ResNet50", {}, 32).file_hash == "4d473c1dd8becc155b73f8504c6f6626"
    assert imagenet_weights_file("MobileNet", {"alpha": 0.25}, 96).name == MOBILENET_FILE  # 224's at other sizes
    assert imagenet_weights_file("MobileNet", {"alpha": 0.25}, 128).name == "mobilenet_2_5_128_tf_no_top.h5"
    assert imagenet_weights_file("MobileNet", {"alpha": 0.3}, 224) is None  # Keras has none; it says so itself


@pytest.mark.parametrize("input_size", [224, 96])
def test_real_mobilenet_file_loads_without_network(featbench_data, offline, network_attempts, monkeypatch,
                                                   input_size):
    source = featbench_data / "keras" / "models" / MOBILENET_FILE
    if not source.is_file():
        skip_unless_ci(f"{source} not present")
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    ext = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=input_size, weights="imagenet")
    ext.fit([])
    assert Path(ext.weights_file_) == source
    assert not network_attempts
    # 27 weighted layers (conv + BN), 4 + 1 tensors each: all loaded for real
    assert _assert_weights_equal_file(ext.keras_backbone, source) > 50
    X = ext.transform(_images(3))
    assert X.shape == (3, 256) and np.isfinite(X).all() and X.any()


def test_keras_cache_comes_before_featbench_data(featbench_data, offline, network_attempts, monkeypatch):
    source = featbench_data / "keras" / "models" / MOBILENET_FILE
    if not source.is_file():
        skip_unless_ci(f"{source} not present")
    (offline / "models").mkdir()
    shutil.copy(source, offline / "models" / MOBILENET_FILE)
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    ext = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=32, weights="imagenet").fit([])
    assert Path(ext.weights_file_) == offline / "models" / MOBILENET_FILE
    assert not network_attempts


def test_mobilenet_size_with_its_own_weights_needs_that_file(featbench_data, offline, monkeypatch):
    # Keras has separate MobileNet weights for 128/160/192/224; at 128 it wants the 128 file.
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    ext = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=128, weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match="mobilenet_2_5_128_tf_no_top.h5"):
        ext.fit([])


# -- cnn: trained on the training split ------------------------------------------------------
def _digit_like(n_per_class: int = 8, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two separable classes: a bright horizontal or vertical bar on noise."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for i in range(2 * n_per_class):
        img = rng.integers(0, 60, size=(20, 20), dtype=np.uint8)
        k = int(rng.integers(6, 14))
        if i % 2:
            img[k - 2:k + 2, 3:17] = 250
        else:
            img[3:17, k - 2:k + 2] = 250
        imgs.append(img)
        labels.append(i % 2)
    return imgs, np.array(labels)


def _cnn(**kw):
    params = {"arch": "lenet5", "input_size": 16, "epochs": 3, "batch_size": 8, "validation_fraction": 0.0}
    params.update(kw)
    return create_extractor("cnn", **params)


@pytest.mark.parametrize(("arch", "size"), [("lenet5", 16), ("resnet-small", 8)])
def test_cnn_same_seed_same_features(arch, size):
    imgs, y = _digit_like()
    a = _cnn(arch=arch, input_size=size, seed=3).fit(imgs, y)
    b = _cnn(arch=arch, input_size=size, seed=3).fit(imgs, y)
    # TensorFlow's op determinism (enabled by fit) makes two trainings take the same steps; the
    # embeddings are then compared like any two TensorFlow computations, up to float32 re-association
    assert_close_to_float32_reassociation(b.transform(imgs), a.transform(imgs))
    c = _cnn(arch=arch, input_size=size, seed=4).fit(imgs, y)
    assert_features_differ(a.transform(imgs), c.transform(imgs), "seeds 3 and 4")
    assert a.transform(imgs).shape[1] == {"lenet5": 84, "resnet-small": 64}[arch]
    assert a.weights_label == "trained on train split"


def test_cnn_learns_the_training_labels():
    imgs, y = _digit_like(16)
    ext = _cnn(epochs=30, augment=False, validation_fraction=0.25, patience=30).fit(imgs, y)
    info = ext.report_info()
    assert info["val_accuracy"] >= 0.875  # bars are easy: at most one of 8 validation images wrong
    assert 1 <= info["epochs_trained"] <= 30 and info["n_params"] > 0
    # a nearest-class-mean rule on the embedding separates held-out images
    test, yt = _digit_like(8, seed=1)
    F, Ft = ext.transform(imgs), ext.transform(test)
    means = np.stack([F[y == c].mean(0) for c in (0, 1)])
    pred = np.argmin(((Ft[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == yt).mean() >= 0.9


def test_cnn_pickles_with_its_trained_weights():
    imgs, y = _digit_like()
    ext = _cnn().fit(imgs, y)
    again = pickle.loads(pickle.dumps(ext))
    assert "_net" not in vars(again)
    for a, b in zip(again.weights_, ext.weights_, strict=True):  # the pickled bytes: exact
        np.testing.assert_array_equal(a, b)
    assert_close_to_float32_reassociation(again.transform(imgs), ext.transform(imgs))


def test_cnn_needs_labels():
    with pytest.raises(ConfigError, match="labels"):
        _cnn().fit(_digit_like()[0])


def test_cnn_input_size_for_lenet5():
    with pytest.raises(ConfigError, match="'input_size'.*at least 16.*lenet5"):
        _cnn(input_size=12).fit(*_digit_like())


def test_cnn_fit_sees_training_images_only(tmp_path, monkeypatch):
    """Through the runner, fit receives exactly each split's training images."""
    from featbench import run
    from featbench.datasets import ArrayImageSet
    from featbench.evaluation import Protocol, make_splits
    from featbench.extractors.cnn import CNN
    from featbench.registry import DATASETS, register_dataset

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    imgs, y = _digit_like(10)
    arr = np.stack(imgs)
    arr[:, 0, 0] = np.arange(len(arr))  # each image carries its index

    @register_dataset("test-deep-indexed")
    def _indexed():
        return ArrayImageSet("test-deep-indexed", arr, y, ["vertical", "horizontal"])

    seen: list[list[int]] = []
    original = CNN._fit

    def spy(self, images, labels):
        seen.append(sorted(int(images[i][0, 0]) for i in range(len(images))))
        return original(self, images, labels)

    monkeypatch.setattr(CNN, "_fit", spy)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent("""
        name = "cnn-train-only"
        [protocol]
        kind = "holdout"
        repeats = 2
        test_size = 0.3
        seed = 5
        [[datasets]]
        name = "test-deep-indexed"
        [[extractors]]
        name = "cnn"
        arch = "lenet5"
        input_size = 16
        epochs = 1
        batch_size = 8
        validation_fraction = 0.0
        [[classifiers]]
        name = "logreg"
        C = [1.0]
    """))
    try:
        result = run(cfg, tmp_path / "out")
    finally:
        DATASETS.unregister("test-deep-indexed")
    assert all(r["status"] == "ok" for r in result.records)
    splits = make_splits(y, Protocol(kind="holdout", repeats=2, test_size=0.3, seed=5))
    assert seen == [sorted(s.train.tolist()) for s in splits]
    for s in splits:
        assert not set(s.train) & set(s.test)


def test_published_weights_file_as_a_path(featbench_data, offline, network_attempts, monkeypatch):
    """The Keras file given as ``weights = <path>`` (relative: under FEATBENCH_DATA) equals ``"imagenet"``."""
    if not (featbench_data / "keras" / "models" / MOBILENET_FILE).is_file():
        skip_unless_ci("MobileNet file not present")
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    imgs = _images(3)
    by_path = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=64,
                               weights=f"keras/models/{MOBILENET_FILE}").fit([])
    assert by_path.weights_label == f"file:{MOBILENET_FILE}"
    imagenet = create_extractor("keras-app", model="MobileNet", alpha=0.25, input_size=64, weights="imagenet").fit([])
    for a, b in zip(by_path.keras_backbone.get_weights(), imagenet.keras_backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the same file, read twice: the same bytes
    assert_close_to_float32_reassociation(by_path.transform(imgs), imagenet.transform(imgs))
    assert not network_attempts


def test_perf_search_feeds_the_search_exactly_what_each_candidate_needs(fake_batch_costs):
    from featbench.datasets.base import ArrayImageSet
    from featbench.perf.deep import _search_batch_size

    costs, batches = fake_batch_costs
    costs.update({2: 1.0, 4: 0.5, 8: 0.45})  # each gains: the climb measures all three
    arrays = np.stack([np.full((40, 40, 3), i, np.uint8) for i in range(20)])
    images = ArrayImageSet("grey levels", arrays, np.zeros(20, int), ["x"])
    ext = _small("resnet50", batch_size="auto").fit([])
    used, seconds = _search_batch_size(ext, images)  # 20 images, cycled: the search needs 46
    assert used == 10 + 12 + 24 and seconds > 0 and ext.batch_search_.done and ext.batch_size_ == 8
    assert batches == [2] * 5 + [4] * 3 + [8] * 3  # nothing beyond the search
