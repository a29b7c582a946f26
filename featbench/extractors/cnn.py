"""A small convolutional network trained on the training split; its penultimate layer is the embedding."""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench.errors import ConfigError
from featbench.extractors._tf import count_gflops, import_tensorflow, seeded, stratified_validation_split
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_gray
from featbench.registry import register_extractor

__all__ = ["CNN", "build_network"]

log = logging.getLogger("featbench")

#: Smallest input side each architecture accepts (LeNet-5's two valid 5x5 convolutions and
#: two poolings leave 1x1 at 16; resnet-small halves the size twice).
_MIN_SIZE = {"lenet5": 16, "resnet-small": 8}


def build_network(keras, arch: str, size: int, n_classes: int, seed: int, augment: bool, width: int = 16):
    """The training network and the embedding network that shares its layers.

    Input: uint8-range gray images ``(size, size, 1)`` as float32; a ``Rescaling``
    layer maps them to [0, 1]. With ``augment``, random shifts (±10 % of the side),
    rotations (±10°) and zooms (±10 %) are applied in training only (Keras's
    preprocessing layers are the identity at inference). Returns
    ``(train_model, embedding_model)``. ``width`` is resnet-small's first-stage channel count.
    """
    L = keras.layers
    inp = keras.Input((size, size, 1), name="image")
    x = L.Rescaling(1.0 / 255.0, name="scale")(inp)
    if augment:
        x = L.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 1, name="aug_shift")(x)
        x = L.RandomRotation(10 / 360, fill_mode="constant", seed=seed + 2, name="aug_rotate")(x)
        x = L.RandomZoom(0.1, fill_mode="constant", seed=seed + 3, name="aug_zoom")(x)
    if arch == "lenet5":
        # LeNet-5's layer sizes; C3 is fully connected to S2 (LeCun et al. used a sparse
        # connection table), and C5 is a dense layer, which is the same as its 5x5
        # convolution at the native 32x32 input.
        x = L.Conv2D(6, 5, activation="tanh", name="C1")(x)
        x = L.AveragePooling2D(2, name="S2")(x)
        x = L.Conv2D(16, 5, activation="tanh", name="C3")(x)
        x = L.AveragePooling2D(2, name="S4")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(120, activation="tanh", name="C5")(x)
        emb = L.Dense(84, activation="tanh", name="F6")(x)
        head = emb
    else:
        # He et al.'s basic block (two 3x3 convolutions + shortcut) in three stages of
        # w, 2w, 4w channels (16, 32, 64 in their CIFAR networks); the shortcut is the identity
        # where shape is kept and a strided 1x1 convolution + BN where it changes.
        # BN momentum 0.9: with ~20-40 steps per epoch, Keras's default 0.99 leaves the
        # inference statistics far from the training ones for many epochs.
        def bn(name):
            return L.BatchNormalization(momentum=0.9, name=name)

        def block(x, channels, stride, name):
            shortcut = x
            if stride != 1 or x.shape[-1] != channels:
                shortcut = L.Conv2D(channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
                shortcut = bn(f"{name}_proj_bn")(shortcut)
            h = L.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
            h = L.ReLU(name=f"{name}_relu1")(bn(f"{name}_bn1")(h))
            h = L.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv2")(h)
            h = bn(f"{name}_bn2")(h)
            return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([h, shortcut]))

        x = L.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
        x = L.ReLU(name="stem_relu")(bn("stem_bn")(x))
        x = block(x, width, 1, "stage1")
        x = block(x, 2 * width, 2, "stage2")
        x = block(x, 4 * width, 2, "stage3")
        emb = L.GlobalAveragePooling2D(name="embedding")(x)
        head = L.Dropout(0.3, seed=seed + 4, name="dropout")(emb)
    out = L.Dense(n_classes, activation="softmax", name="classes")(head)
    return keras.Model(inp, out, name=f"featbench_{arch}"), keras.Model(inp, emb, name=f"featbench_{arch}_embedding")


@register_extractor("cnn")
class CNN(Extractor):
    """A small CNN trained in ``fit`` on the training images; the embedding is its penultimate layer.

    ``fit`` trains the network to classify the training labels (cross-entropy with
    label smoothing 0.1, mini-batch Adam with a cosine-decayed learning rate,
    optional early stopping on a stratified validation part carved from the
    training images);
    ``transform`` returns the activations of the layer before the softmax: LeNet-5's
    F6 (84 values) or resnet-small's global-average-pooled last stage (``4 * width`` values).
    Test images are never seen in ``fit`` (the runner fits on each split's training
    part only).

    Images are converted to gray and resized to ``input_size × input_size``
    (area interpolation when shrinking, linear when growing).

    Parameters
    ----------
    arch : {"lenet5", "resnet-small"}, default="resnet-small"
        ``"lenet5"``: LeNet-5 (LeCun et al. 1998) — C1 6@5×5, S2 average pooling,
        C3 16@5×5, S4, C5 120, F6 84, tanh activations. ``"resnet-small"``: a 3×3
        stem and three residual stages of one basic block each (``width``,
        ``2 * width``, ``4 * width`` channels, strides 1, 2, 2; identity shortcuts,
        1×1 projection convolutions where the channel count changes; He et al.
        2016), then global average pooling and dropout 0.3.
    input_size : int, default=24
        Side the images are resized to (LeNet-5's native size is 32; the
        OpenCV digits are 20). At least 16 for lenet5, 8 for resnet-small.
    width : int, default=16
        resnet-small's channels in the first stage (the cost grows as its square);
        ignored by lenet5.
    epochs : int, default=30
        Maximum number of passes over the training images.
    batch_size : int, default=128
        Training and inference batch size.
    learning_rate : float, default=0.002
        Initial Adam learning rate, decayed to 0 over ``epochs`` by a cosine.
    seed : int, default=0
        Seed of the initial weights, the validation split, the shuffling, the
        augmentation and dropout.
    validation_fraction : float, default=0.1
        Part of the training images held out (stratified) to stop early: training
        stops when the validation loss has not improved for ``patience`` epochs and
        the weights of the best epoch are kept. 0 trains for all ``epochs`` on all
        training images; so does a training set too small to give every class a
        validation image (every class needs two images).
    patience : int, default=8
        Epochs without improvement of the validation loss before stopping.
    augment : bool, default=True
        Light augmentation in training: random shifts (±10 %), rotations (±10°) and
        zooms (±10 %).

    Notes
    -----
    Determinism: ``fit`` seeds Python, NumPy and TensorFlow
    (``keras.utils.set_random_seed(seed)``; Python's and NumPy's global states are
    restored afterwards), gives every random layer its own seed, and turns on
    ``tf.config.experimental.enable_op_determinism()`` (process-wide and, in
    TensorFlow 2.21, not reversible), and shuffles with a NumPy generator seeded by
    ``seed``. On the same machine, TensorFlow build and thread count, two fits with
    the same seed then give bit-identical weights and features (the tests check
    this). Across machines
    or thread counts, floating-point reductions may be ordered differently and
    features can differ in the last bits, then diverge slightly through training.

    ``report_info()`` gives ``n_params`` (of the embedding network),
    ``gflops_per_image`` (2 × multiply-adds of its convolution and dense layers at
    ``input_size``, see :func:`featbench.extractors._tf.count_gflops`),
    ``epochs_trained`` (the kept epoch) and ``val_accuracy`` (at that epoch; None
    without validation). Training history per epoch: ``history_``.

    References
    ----------
    .. [1] LeCun, Y., Bottou, L., Bengio, Y., Haffner, P. (1998). Gradient-based
           learning applied to document recognition. Proc. IEEE 86(11), 2278-2324.
    .. [2] He, K., Zhang, X., Ren, S., Sun, J. (2016). Deep residual learning for
           image recognition. CVPR 2016, pp. 770-778.
    """

    spec = ExtractorSpec(
        family="deep",
        color="gray",
        description="small CNN (LeNet-5 or residual) trained on the training split; penultimate layer",
        input_size=None,
        requires=("tensorflow",),
        references=(
            "LeCun et al. 1998, Gradient-based learning applied to document recognition",
            "He et al. 2016, Deep residual learning for image recognition",
        ),
        fitted=True,
        parallel=False,
    )
    _parameter_constraints: ClassVar[dict] = {
        "arch": [StrOptions({"lenet5", "resnet-small"})],
        "input_size": [Interval(Integral, 8, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "seed": [Interval(Integral, 0, 2**31 - 100, closed="both")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "augment": ["boolean"],
    }
    test_params: ClassVar[dict] = {"arch": "lenet5", "input_size": 16, "epochs": 2, "batch_size": 8,
                                   "validation_fraction": 0.0}

    def __init__(
        self,
        arch: str = "resnet-small",
        input_size: int = 24,
        width: int = 16,
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float = 0.002,
        seed: int = 0,
        validation_fraction: float = 0.1,
        patience: int = 8,
        augment: bool = True,
    ) -> None:
        self.arch = arch
        self.input_size = input_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment

    @property
    def weights_label(self) -> str:
        return "trained on train split"

    def _check_params(self) -> None:
        low = _MIN_SIZE[self.arch]
        if self.input_size < low:
            raise ConfigError(
                f"The 'input_size' parameter of CNN must be at least {low} for arch={self.arch!r}. "
                f"Got {self.input_size} instead."
            )

    # -- data ------------------------------------------------------------------------------
    def _pixels(self, images, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(images) if stop is None else stop
        s = int(self.input_size)
        out = np.empty((stop - start, s, s, 1), dtype=np.float32)
        for j, i in enumerate(range(start, stop)):
            out[j, :, :, 0] = resize(to_gray(images[i]), (s, s))
        return out

    def _validation_split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return stratified_validation_split(y, float(self.validation_fraction), self.seed, "cnn", int(self.epochs))

    # -- training ----------------------------------------------------------------------------
    def _fit(self, images, y) -> None:
        if y is None:
            raise ConfigError("cnn learns from labels: fit(images, y) needs the training labels y")
        y = np.asarray(y)
        if len(y) != len(images):
            raise ValueError(f"cnn: {len(images)} images but {len(y)} labels")
        if len(images) == 0:
            raise ValueError("cnn: fit needs at least one training image")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        n_classes = max(2, len(self.classes_))
        tf, keras = import_tensorflow()
        tf.config.experimental.enable_op_determinism()
        X = self._pixels(images)
        train, val = self._validation_split(y_idx)
        onehot = np.eye(n_classes, dtype=np.float32)[y_idx]
        with seeded(self.seed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model, embedding = build_network(keras, self.arch, int(self.input_size), n_classes, int(self.seed),
                                             bool(self.augment), int(self.width))
            hist = self._train(tf, keras, model, X, onehot, train, val)
        if val is not None:
            best = int(np.argmin(hist["val_loss"]))
            self.val_accuracy_ = float(hist["val_accuracy"][best])
            self.epochs_trained_ = best + 1
        else:
            self.val_accuracy_ = float("nan")
            self.epochs_trained_ = len(hist["loss"])
        self.history_ = hist
        self.n_classes_ = n_classes
        # The trained weights are numpy arrays, so a fitted extractor pickles without TensorFlow.
        self.weights_ = [np.asarray(w) for w in embedding.get_weights()]
        self.n_features_out_ = int(embedding.output.shape[-1])
        self._net = self._wrap(tf, embedding)

    def _train(self, tf, keras, model, X, onehot, train, val) -> dict:
        """Mini-batch Adam with a cosine-decayed rate; early stopping keeps the best validation epoch.

        A plain loop over NumPy batches (shuffled by a NumPy generator seeded with
        ``seed``) rather than ``model.fit``: no tf.data pipeline, whose ops log
        spurious C++ errors with this TensorFlow build, and one traced step.
        """
        bs = int(self.batch_size)
        epochs = int(self.epochs)
        steps = max(1, int(np.ceil(len(train) / bs)) * epochs)
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(float(self.learning_rate), steps))
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
        s = int(self.input_size)
        spec = [tf.TensorSpec([None, s, s, 1], tf.float32), tf.TensorSpec([None, onehot.shape[1]], tf.float32)]

        @tf.function(input_signature=spec, autograph=False)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                loss = loss_fn(y, p)
                if model.losses:
                    loss = loss + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, 1), tf.argmax(y, 1)), tf.float32))
            return loss * tf.cast(tf.shape(x)[0], tf.float32), correct

        @tf.function(input_signature=spec, autograph=False)
        def eval_step(x, y):
            p = model(x, training=False)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, 1), tf.argmax(y, 1)), tf.float32))
            return loss_fn(y, p) * tf.cast(tf.shape(x)[0], tf.float32), correct

        rng = np.random.default_rng(self.seed)
        hist: dict[str, list[float]] = {"loss": [], "accuracy": []}
        if val is not None:
            hist.update(val_loss=[], val_accuracy=[])
        best_loss, best_weights, waited = np.inf, None, 0
        for _ in range(epochs):
            order = rng.permutation(train)
            total = correct = 0.0
            for i in range(0, len(order), bs):
                idx = np.sort(order[i:i + bs])
                loss, ok = train_step(X[idx], onehot[idx])
                total += float(loss)
                correct += float(ok)
            hist["loss"].append(total / len(order))
            hist["accuracy"].append(correct / len(order))
            if val is None:
                continue
            total = correct = 0.0
            for i in range(0, len(val), bs):
                idx = val[i:i + bs]
                loss, ok = eval_step(X[idx], onehot[idx])
                total += float(loss)
                correct += float(ok)
            hist["val_loss"].append(total / len(val))
            hist["val_accuracy"].append(correct / len(val))
            if hist["val_loss"][-1] < best_loss:
                best_loss, best_weights, waited = hist["val_loss"][-1], model.get_weights(), 0
            else:
                waited += 1
                if waited >= int(self.patience):
                    break
        if best_weights is not None:
            model.set_weights(best_weights)
        return hist

    # -- extraction ----------------------------------------------------------------------------
    def _wrap(self, tf, embedding) -> dict:
        s = int(self.input_size)
        predict = tf.function(lambda x: embedding(x, training=False),
                              input_signature=[tf.TensorSpec([None, s, s, 1], tf.float32)], autograph=False)
        return {"model": embedding, "predict": predict, "n_params": int(embedding.count_params()),
                "gflops": count_gflops(embedding)}

    def _ensure_net(self) -> dict:
        net = self.__dict__.get("_net")
        if net is not None:
            return net
        tf, keras = import_tensorflow()
        with seeded(self.seed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _, embedding = build_network(keras, self.arch, int(self.input_size), self.n_classes_, int(self.seed),
                                         bool(self.augment), int(self.width))
        embedding.set_weights(self.weights_)
        self._net = self._wrap(tf, embedding)
        return self._net

    def _transform_batch(self, images) -> np.ndarray:
        net = self._ensure_net()
        n = len(images)
        out = np.empty((n, self.n_features_out_), dtype=np.float32)
        b = int(self.batch_size)
        for start in range(0, n, b):
            batch = self._pixels(images, start, min(start + b, n))
            m = len(batch)
            if m == 1:  # a batch of one takes another oneDNN kernel; a pair keeps it with the others
                batch = np.concatenate([batch, batch])
            out[start:start + m] = net["predict"](batch).numpy()[:m]
        return out

    def report_info(self) -> dict:
        if not hasattr(self, "weights_"):
            return {}
        net = self._ensure_net()
        return {"n_params": net["n_params"], "gflops_per_image": round(net["gflops"], 6),
                "epochs_trained": self.epochs_trained_,
                "val_accuracy": None if np.isnan(self.val_accuracy_) else round(self.val_accuracy_, 4)}

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_net", None)
        return state
