"""A deep plain CNN (VGG-like, no normalization) and a small CIFAR-10 subset, shared by the
dynamically scaled init studies (``experiments/dynamic_init.py``, ``experiments/papers/zhu2021.py``).

``PlainCNN``: ``depth`` 3x3 convolutions of ``width`` channels with ReLU, a 2x2 average pool
after every ``depth // 3`` of them, global average pooling and a Dense readout. No BatchNorm,
no residual connections: the kind of net GradInit (Zhu et al. 2021) makes trainable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jinit


class PlainCNN(nn.Module):
    depth: int = 10
    width: int = 16
    classes: int = 10
    kernel_init: Callable = jinit.he_normal()

    @nn.compact
    def __call__(self, x):
        every = max(1, self.depth // 3)
        for i in range(self.depth):
            x = nn.relu(nn.Conv(self.width, (3, 3), kernel_init=self.kernel_init)(x))
            if (i + 1) % every == 0 and x.shape[1] > 2 and i + 1 < self.depth:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.classes, kernel_init=self.kernel_init)(x)


@dataclasses.dataclass(frozen=True)
class Subset:
    train: dict
    test: dict
    source: str


def cifar10_subset(n_train: int, n_test: int, size: int = 16, seed: int = 0) -> Subset:
    """A class-balanced random subset of CIFAR-10, downsampled to ``size`` by average pooling
    and standardized per channel with training statistics. The data folder is
    ``$JINIT_DATA_DIR``, else ``../shared/data`` next to the repository, else the default. ``x`` float32 NHWC, ``y`` int32."""
    from experiments.data import repo_data_dir
    from experiments.data.cifar10 import load_cifar10

    data = load_cifar10(repo_data_dir())
    rng = np.random.default_rng(seed)

    def pick(y, n):
        per = n // 10
        return np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(10)])

    itr, ite = pick(data.y_train, n_train), pick(data.y_test, n_test)

    def down(x):
        f = x.shape[1] // size
        return x.reshape(x.shape[0], size, f, size, f, 3).mean((2, 4))

    xtr, xte = down(data.x_train[itr]), down(data.x_test[ite])
    mu, sd = xtr.mean((0, 1, 2)), xtr.std((0, 1, 2))
    as_set = lambda x, y: {
        "x": jnp.asarray((x - mu) / sd, jnp.float32),
        "y": jnp.asarray(y, jnp.int32),
    }
    return Subset(as_set(xtr, data.y_train[itr]), as_set(xte, data.y_test[ite]), data.source)


def softmax_xent(outputs: jax.Array, batch: dict) -> jax.Array:
    """``loss_fn(outputs, batch)`` for the init passes: mean cross-entropy on integer labels."""
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["y"]).mean()
