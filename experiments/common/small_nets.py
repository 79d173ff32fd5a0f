"""Many small models trained as one vmapped program: the digits data, plain MLPs, seed keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit

INIT_STREAM, DATA_STREAM = 0, 1  # fold_in(key(seed), stream): weights vs data order
LN10 = float(np.log(10.0))


# --------------------------------------------------------------------------------------- data


def digits(test_fraction: float = 0.2, split_seed: int = 0, standardize: bool = True):
    """scikit-learn's ``load_digits`` (1,797 real 8x8 digits, 64 features, 10 classes).

    A fixed stratified split; pixels scaled to [0, 1] and, with ``standardize``, centred and
    scaled per pixel with training-set statistics (the unit-variance input the init papers
    assume). Returns ``(train, test)`` dicts of ``x`` float32 ``(n, 64)`` and ``y`` int32.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=test_fraction, random_state=split_seed, stratify=d.target
    )
    if standardize:
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    as_set = lambda a, b: {"x": jnp.asarray(a, jnp.float32), "y": jnp.asarray(b, jnp.int32)}
    return as_set(xtr, ytr), as_set(xte, yte)


def digits_source() -> dict[str, Any]:
    return {"source": "sklearn.datasets.load_digits", "examples": 1797, "features": 64}


def minibatch_indices(seeds: Sequence[int], steps: int, batch_size: int, n: int) -> jax.Array:
    """``(len(seeds), steps, batch_size)`` example indices; the seed alone fixes the order.

    Arms of one seed get the same minibatches (tile this over arms), so inits are compared
    paired, seed by seed.
    """
    keys = stream_keys(seeds, DATA_STREAM)
    return jax.vmap(lambda k: jax.random.randint(k, (steps, batch_size), 0, n))(keys)


def stream_keys(seeds: Sequence[int], stream: int) -> jax.Array:
    """``fold_in(key(seed), stream)`` per seed: the seed alone fixes every random choice.

    Stream :data:`INIT_STREAM` draws the weights, :data:`DATA_STREAM` the data order, so two
    initializers compared at one seed see the same minibatches (paired comparison).
    """
    return jax.vmap(lambda k: jax.random.fold_in(k, stream))(jinit.seed_keys(seeds))


def init_keys(seeds: Sequence[int]) -> jax.Array:
    """One init key per seed (stream :data:`INIT_STREAM`)."""
    return stream_keys(seeds, INIT_STREAM)


def softmax_loss(apply_fn: Callable) -> Callable:
    """``loss_fn(params, batch) -> (mean cross-entropy, {"accuracy"})`` for integer labels."""

    def loss_fn(params, batch):
        logits = apply_fn(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    return loss_fn


def train_models(
    loss_fn: Callable,
    params: Any,
    train: dict,
    idx: jax.Array,
    optimizer: optax.GradientTransformation,
    test: dict | None = None,
) -> dict[str, np.ndarray]:
    """Trains M models (leading axis of every ``params`` leaf) as ONE jitted, vmapped program.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux dict)`` for one model.
      params: pytree, every leaf ``(M, ...)``.
      train: the whole training set (pytree, example axis first), shared by all models.
      idx: int ``(M, steps, batch_size)`` minibatch indices per model.
      optimizer: an optax transformation (same for all models).
      test: optional held-out set, evaluated once at the end on the whole set.

    Returns numpy arrays: ``loss`` and every aux metric ``(M, steps)`` (per-step training values,
    non-finite where a model diverged), ``params`` (the trained stack, as jax arrays), and with
    ``test`` also ``test_loss`` / ``test_<metric>`` ``(M,)``; ``train_s`` the wall time.
    """
    chunk = jinit.make_train_chunk(loss_fn, optimizer)

    @jax.jit
    def run(params, idx):
        state = jax.vmap(lambda p: jinit.init_state(p, optimizer))(params)
        state, metrics = jax.vmap(chunk, in_axes=(0, None, 0))(state, train, idx)
        out = dict(metrics)
        if test is not None:
            tl, tm = jax.vmap(loss_fn, in_axes=(0, None))(state.params, test)
            out["test_loss"] = tl
            out.update({f"test_{k}": v for k, v in tm.items()})
        return state.params, out

    t0 = time.perf_counter()
    new_params, out = jax.block_until_ready(run(params, idx))
    result = {k: np.asarray(v) for k, v in out.items()}
    result["params"] = new_params
    result["train_s"] = time.perf_counter() - t0
    return result


def init_mlp(key: jax.Array, sizes: Sequence[int], kernel_init: Callable) -> list[dict]:
    """A plain MLP's params: ``[{"w": (sizes[i], sizes[i+1]), "b": zeros}]``, float32.

    One key per layer from ``jax.random.split(key, len(sizes) - 1)``; biases start at 0.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": kernel_init(k, (a, b), jnp.float32), "b": jnp.zeros((b,), jnp.float32)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def stack(trees: Sequence[Any]) -> Any:
    """Concatenates model stacks (leading axis) of the same structure: arms after arms."""
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def smooth(curves: np.ndarray, window: int) -> np.ndarray:
    """Mean over consecutive windows of the last axis (a step curve -> a logged curve)."""
    n = curves.shape[-1] // window * window
    return curves[..., :n].reshape(*curves.shape[:-1], -1, window).mean(-1)
