"""The IMDB study's training: the model, its loss and metrics, and the seed sweep over inits.

Embedding(10000, 32) -> SimpleRNN(32) -> Dense(1, sigmoid), Adam, binary cross-entropy, as in
the Keras seed study. Every (initializer, seed) pair is one model of ONE program
(:func:`experiments.common.run_study`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

import jinit
from experiments import common
from experiments.imdb import input_pipeline
from experiments.imdb.config import INIT_NAMES, Config
from experiments.models import ImdbRNN

# The fans of the (10000, 32) embedding matrix are fan_in=10000, fan_out=32 as in Keras.
INITIALIZERS = {
    "uniform": jinit.uniform_symmetric(0.05),
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "orthogonal": jinit.orthogonal(),
    # LSUV arm: orthonormal embedding (the RNN's own kernels are already orthogonal/glorot),
    # then jinit.lsuv on a batch of training reviews scales every layer to unit output
    # variance in forward order (Mishkin & Matas 2015).
    "lsuv": jinit.lsuv_ready_orthogonal(),
}
assert tuple(INITIALIZERS) == INIT_NAMES, "config.INIT_NAMES lists the initializers built here"


def make_functions(cfg: Config):
    """``(loss_fn, metric_fn, init_params)`` of one model: ``loss_fn(params, batch) -> (loss,
    {"accuracy"})`` (mean), ``metric_fn`` per example, ``init_params(init_name, key)``."""
    model = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden)

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
        return loss, {"accuracy": jnp.mean((logits > 0) == (y > 0.5))}

    def metric_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        return {
            "loss": optax.sigmoid_binary_cross_entropy(logits, y),
            "accuracy": ((logits > 0) == (y > 0.5)).astype(jnp.float32),
        }

    def init_params(name: str, key: jax.Array):
        m = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden, embedding_init=INITIALIZERS[name])
        return m.init(key, jnp.zeros((1, cfg.maxlen), jnp.int32))

    return loss_fn, metric_fn, init_params


def train_and_evaluate(args, cfg: Config) -> dict:
    """Loads the data, trains every (initializer, seed) model, writes ``results.json`` and
    ``val_accuracy.png`` to ``args.out`` (with checkpoints: a rerun resumes) and returns the
    results."""
    t_start = time.perf_counter()
    data = input_pipeline.get_datasets(cfg, args.data_dir, args.cache_dir)
    train = data["train"]
    optimizer = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    loss_fn, metric_fn, init_params = make_functions(cfg)

    def init_state_fn(name, key):
        params = init_params(name, key)
        if name == "lsuv":  # orthonormal pre-init everywhere, then LSUV on a training batch
            lsuv_batch = train["x"][: cfg.lsuv_batch_size]  # here: no slice for other arms
            params = jinit.lsuv(
                ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden), params, lsuv_batch
            )[0]
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
        title="IMDB SimpleRNN: embedding init",
        extra=None,
        init_state_fn=init_state_fn,
        eager_inits=("lsuv",),  # jinit.lsuv iterates on the host
        loss_fn=loss_fn,
        metric_fn=metric_fn,
        optimizer=optimizer,
    )
