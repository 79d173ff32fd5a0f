"""The CIFAR-10 study's training: the model, its loss and metrics, and the seed sweep over inits.

Conv(32, 3x3, relu) -> MaxPool -> Conv(64, 3x3, relu) -> MaxPool -> Dense(64, relu) ->
Dense(10, softmax), Adam, cross-entropy, as in the Keras seed study. Every (initializer, seed)
pair is one model of ONE program (:func:`experiments.common.run_study`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

import jinit
from experiments import common
from experiments.cifar10 import input_pipeline
from experiments.cifar10.config import INIT_NAMES, Config
from experiments.models import CifarCNN

INITIALIZERS = {
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "random_normal": jinit.normal(0.05),  # Keras RandomNormal(stddev=0.05)
    "orthogonal": jinit.orthogonal(),
    # LSUV arm: orthonormal kernels, then jinit.lsuv on a batch of training images scales every
    # layer to unit output variance in forward order (Mishkin & Matas 2015).
    "lsuv": jinit.lsuv_ready_orthogonal(),
    "zeros": jinit.zeros(),
}
assert tuple(INITIALIZERS) == INIT_NAMES, "config.INIT_NAMES lists the initializers built here"


def conv_impl(cfg) -> str:
    """``cfg.conv_impl``, with ``'auto'`` resolved: im2col on CPU (XLA's CPU convolution is
    several times slower for this CNN, docs/benchmarks), XLA's convolution elsewhere."""
    if cfg.conv_impl != "auto":
        return cfg.conv_impl
    return "im2col" if jax.default_backend() == "cpu" else "xla"


def classification_fns(model):
    """``(loss_fn, metric_fn)``: softmax cross-entropy (mean, with ``{"accuracy"}``) and
    per-example metrics, for a model without state."""

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    def metric_fn(params, batch):
        logits = model.apply(params, batch["x"])
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]),
            "accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32),
        }

    return loss_fn, metric_fn


def train_and_evaluate(args, cfg: Config) -> dict:
    """Loads the data, trains every (initializer, seed) model, writes ``results.json`` and
    ``val_accuracy.png`` to ``args.out`` (with checkpoints: a rerun resumes) and returns the
    results."""
    t_start = time.perf_counter()
    data = input_pipeline.get_datasets(cfg, args.data_dir)
    train = data["train"]
    optimizer = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    impl = conv_impl(cfg)
    loss_fn, metric_fn = classification_fns(CifarCNN(conv_impl=impl))
    lsuv_batch = train["x"][: cfg.lsuv_batch_size]

    def init_state_fn(name, key):
        model = CifarCNN(kernel_init=INITIALIZERS[name], conv_impl=impl)
        params = model.init(key, train["x"][:1])
        if name == "lsuv":  # orthonormal pre-init everywhere, then LSUV on a training batch
            params = jinit.lsuv(model, params, lsuv_batch)[0]
        return jinit.init_state(params, optimizer)

    return common.run_study(
        args,
        cfg,
        train=train,
        val=data["val"],
        test=data["test"],
        source=data["source"],
        t_start=t_start,
        t_data=data["load_s"],
        title="CIFAR-10 CNN: initializers",
        extra={"conv_impl": impl},
        init_state_fn=init_state_fn,
        loss_fn=loss_fn,
        metric_fn=metric_fn,
        optimizer=optimizer,
    )
