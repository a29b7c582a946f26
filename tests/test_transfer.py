"""Transfer learning with the keras.applications extractors: layer sweeps in experiments, fine-tuning.

Tiny inputs (32 px), a few epochs, and VGG16 with random weights standing for a pretrained
network (it has no batch normalisation, so its random activations do not vanish as a random
MobileNet's do at 32 px: ~1e-16 at its last layer, which leaves nothing to train); the real
MobileNet ImageNet file where FEATBENCH_DATA has it. The tests check the tests check what fine-tuning must do (train only from
``trainable_from`` on, learn from training images only, repeat for a seed, pickle), not how
well it transfers (experiments/transfer.toml measures that on real photos).
"""

from __future__ import annotations

import pickle
import textwrap

import numpy as np
import pytest
from test_common import assert_close_to_float32_reassociation
from test_deep import assert_features_differ

from featbench import create_extractor
from featbench.config import parse_experiment
from featbench.errors import ConfigError

pytest.importorskip("tensorflow")


def _bars(n: int = 24, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two classes of RGB images: a bright vertical or horizontal bar on dark noise."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for i in range(n):
        img = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        k = int(rng.integers(8, 24))
        if i % 2:
            img[k - 3:k + 3, 4:28] = 250
        else:
            img[4:28, k - 3:k + 3] = 250
        imgs.append(img)
        labels.append(i % 2)
    return imgs, np.array(labels)


def _tuned(name: str = "vgg16", **kw):
    params = {"input_size": 32, "weights": "random", "batch_size": 8, "fine_tune": True,
              "trainable_from": "block5_conv3", "epochs": 2, "learning_rate": 1e-3, "validation_fraction": 0.25,
              "random_state": 1}
    if name == "keras-app":
        params.update(model="MobileNet", alpha=0.25, trainable_from="conv_dw_12")
    params.update(kw)
    return create_extractor(name, **params)


def _layer_weights(ext, weights: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """``weights`` (in ``keras_backbone.get_weights()`` order) grouped by layer name."""
    out: dict[str, list[np.ndarray]] = {}
    it = iter(weights)
    for layer in ext.keras_backbone.layers:
        out[layer.name] = [next(it) for _ in layer.weights]
    return out


# -- sweeps in experiment files ------------------------------------------------------------------
def _experiment(**extractor) -> dict:
    return {"datasets": [{"name": "digits"}], "classifiers": [{"name": "logreg"}],
            "extractors": [{"name": "keras-app", "alpha": 0.25, "input_size": 32, "weights": "random", **extractor}]}


def test_sweep_expands_a_list_into_one_row_per_value():
    exp = parse_experiment(_experiment(label="m", layer=["conv_pw_3_relu", "conv_pw_13_relu"], sweep="layer"))
    assert [(e.label, e.params["layer"]) for e in exp.extractors] == [
        ("m[layer=conv_pw_3_relu]", "conv_pw_3_relu"), ("m[layer=conv_pw_13_relu]", "conv_pw_13_relu")]
    assert all("sweep" not in e.params and e.params["alpha"] == 0.25 for e in exp.extractors)
    # two keys: their product, in the order written; without a label, the extractor's name
    exp = parse_experiment(_experiment(layer=["conv_pw_3_relu", "conv_pw_5_relu"], pooling=["avg", "gem"],
                                       sweep=["layer", "pooling"]))
    assert [e.label for e in exp.extractors] == [
        "keras-app[layer=conv_pw_3_relu,pooling=avg]", "keras-app[layer=conv_pw_3_relu,pooling=gem]",
        "keras-app[layer=conv_pw_5_relu,pooling=avg]", "keras-app[layer=conv_pw_5_relu,pooling=gem]"]


def test_sweep_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"sweep names 'layer', which must be a parameter given"):
        parse_experiment(_experiment(sweep="layer"))
    with pytest.raises(ConfigError, match=r"layer must be a non-empty list"):
        parse_experiment(_experiment(layer="conv_pw_3_relu", sweep="layer"))
    with pytest.raises(ConfigError, match=r"sweep must name a parameter"):
        parse_experiment(_experiment(layer=["conv_pw_3_relu"], sweep=3))
    # each expanded row is validated like any other: a wrong layer name among the values is refused
    with pytest.raises(ConfigError, match=r"'layer'.*'conv_pw_5_rlu'.*'conv_pw_5_relu'"):
        parse_experiment(_experiment(layer=["conv_pw_3_relu", "conv_pw_5_rlu"], sweep="layer"))


# -- fine-tuning -----------------------------------------------------------------------------------
def _changed_layers(ext, pretrained) -> set[str]:
    before = _layer_weights(ext, pretrained.keras_backbone.get_weights())
    after = _layer_weights(ext, ext.fine_tuned_weights_)
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


def test_fine_tuning_trains_only_from_trainable_from_on():
    imgs, y = _bars()
    pretrained = _tuned(fine_tune=False, trainable_from=None).fit([])
    ext = _tuned().fit(imgs, y)
    assert ext.weights_label == "random+fine-tuned"
    assert ext.spec.fitted and not type(ext).spec.fitted  # the runner fits this instance per split
    assert _changed_layers(ext, pretrained) == {"block5_conv3"}
    # the embedding is the trained network's
    assert_features_differ(ext.transform(imgs), pretrained.transform(imgs), "fine-tuned and pretrained")
    info = ext.report_info()
    assert 1 <= info["epochs_trained"] <= 2 and 0 <= info["val_accuracy"] <= 1
    assert set(ext.history_) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(ext.head_history_["loss"]) >= 1


def test_fine_tuning_the_real_mobilenet_keeps_batch_norm_frozen(featbench_data, monkeypatch):
    from conftest import skip_unless_ci

    if not (featbench_data / "keras" / "models" / "mobilenet_2_5_224_tf_no_top.h5").is_file():
        skip_unless_ci("MobileNet file not present")
    monkeypatch.setenv("FEATBENCH_DATA", str(featbench_data))
    imgs, y = _bars()
    pretrained = _tuned("keras-app", weights="imagenet", fine_tune=False, trainable_from=None).fit([])
    ext = _tuned("keras-app", weights="imagenet").fit(imgs, y)
    assert ext.weights_label == "imagenet+fine-tuned"
    # blocks 12 and 13's convolutions train; everything before them and every batch norm stays as it was
    assert _changed_layers(ext, pretrained) == {"conv_dw_12", "conv_pw_12", "conv_dw_13", "conv_pw_13"}


def test_fine_tuning_lowers_the_training_loss():
    imgs, y = _bars(32)
    ext = _tuned(trainable_from="block5_conv1", epochs=6, validation_fraction=0.0).fit(imgs, y)
    assert ext.history_["loss"][-1] < ext.history_["loss"][0]
    assert ext.report_info()["val_accuracy"] is None and ext.report_info()["epochs_trained"] == 6


def test_fine_tuning_repeats_for_a_seed_and_refits_from_the_pretrained_network():
    imgs, y = _bars()
    other, y_other = _bars(seed=5)
    a = _tuned().fit(imgs, y)
    b = _tuned().fit(other, y_other).fit(imgs, y)  # a second fit starts again from the pretrained weights
    # op determinism (enabled by fit): the same steps, the same weights bit for bit
    for wa, wb in zip(a.fine_tuned_weights_, b.fine_tuned_weights_, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert_close_to_float32_reassociation(b.transform(imgs), a.transform(imgs))
    c = _tuned(random_state=2).fit(imgs, y)
    assert_features_differ(a.transform(imgs), c.transform(imgs), "seeds 1 and 2")


def test_fine_tuned_extractor_pickles_with_its_weights():
    imgs, y = _bars()
    ext = _tuned().fit(imgs, y)
    again = pickle.loads(pickle.dumps(ext))
    assert "_net" not in vars(again)
    for a, b in zip(again.fine_tuned_weights_, ext.fine_tuned_weights_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_close_to_float32_reassociation(again.transform(imgs), ext.transform(imgs))


def test_fine_tuning_needs_labels_and_a_known_layer():
    with pytest.raises(ConfigError, match="fine-tuning learns from labels"):
        _tuned().fit(_bars()[0])
    with pytest.raises(ConfigError, match=r"'trainable_from'.*'conv_dw_12x'.*'conv_dw_12'"):
        _tuned("keras-app", trainable_from="conv_dw_12x").fit(*_bars())


def test_stratified_validation_part_is_carved_from_the_training_images():
    from featbench.extractors._tf import stratified_validation_split

    y = np.repeat(np.arange(4), 10)
    train, val = stratified_validation_split(y, 0.2, 0, "test", 3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))
    assert np.bincount(y[val]).tolist() == [2, 2, 2, 2]
    lone = np.array([0, 0, 1, 1, 2, 2, 3])  # class 3 has one image: no validation part, all images train
    train, val = stratified_validation_split(lone, 0.5, 0, "test", 3)
    assert val is None and train.tolist() == list(range(7))


def test_fine_tuning_through_the_runner_sees_training_images_only(tmp_path, monkeypatch):
    """Fit gets exactly each split's training images; the rows say imagenet's fine-tuned label."""
    from featbench import run
    from featbench.datasets import ArrayImageSet
    from featbench.evaluation import Protocol, make_splits
    from featbench.extractors.deep import KerasApplication
    from featbench.registry import DATASETS, register_dataset

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    imgs, y = _bars(20)
    arr = np.stack(imgs)
    arr[:, 0, 0, 0] = np.arange(len(arr))  # each image carries its index

    @register_dataset("test-transfer-indexed")
    def _indexed():
        return ArrayImageSet("test-transfer-indexed", arr, y, ["vertical", "horizontal"])

    seen: list[list[int]] = []
    original = KerasApplication._fine_tune

    def spy(self, net, images, labels):
        seen.append(sorted(int(images[i][0, 0, 0]) for i in range(len(images))))
        return original(self, net, images, labels)

    monkeypatch.setattr(KerasApplication, "_fine_tune", spy)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent("""
        name = "transfer-train-only"
        [protocol]
        kind = "holdout"
        repeats = 2
        test_size = 0.3
        seed = 5
        [[datasets]]
        name = "test-transfer-indexed"
        [[extractors]]
        name = "vgg16"
        label = "tuned"
        input_size = 32
        weights = "random"
        batch_size = 8
        fine_tune = true
        trainable_from = "block5_conv3"
        epochs = 1
        validation_fraction = 0.0
        [[classifiers]]
        name = "logreg"
        C = [1.0]
    """))
    try:
        result = run(cfg, tmp_path / "out")
    finally:
        DATASETS.unregister("test-transfer-indexed")
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    assert {r["weights"] for r in result.records} == {"random+fine-tuned"}
    assert all(r["extractor_fit_s"] > 0 for r in result.records)
    splits = make_splits(y, Protocol(kind="holdout", repeats=2, test_size=0.3, seed=5))
    assert seen == [sorted(s.train.tolist()) for s in splits]
