"""Seed sweeps as one program: a leading *model* axis, ``jax.vmap`` over it, sharded over devices.

A sweep trains ``M`` models (seeds x initializers that share shapes) as one compiled program.
Every leaf of the train state carries a leading model axis; :func:`jinit.fit` with
``num_models=M`` runs the vmapped program. On one device that is plain ``vmap``; with several
local devices (GPUs, TPU cores, or ``--xla_force_host_platform_device_count`` CPU devices) the
model axis is sharded over a 1-D ``Mesh`` with ``NamedSharding`` and XLA runs each device's
slice of models in parallel, with identical numbers. Under ``jax.distributed`` the same mesh
spans all hosts' devices.

Keys are never reused: model ``m`` gets ``keys[m]``; the caller derives them, typically
``seed_keys(seeds)`` (one ``jax.random.key(seed)`` each), so model ``m`` of a sweep has exactly
the key a single run with that seed would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jinit._src.checks import check_int

PyTree = Any
MODEL_AXIS = "models"


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """``(len(seeds),)`` typed keys, ``keys[i] == jax.random.key(seeds[i])``.

    Examples:
      >>> keys = seed_keys([0, 1, 2])
      >>> keys.shape
      (3,)
      >>> bool((jax.random.key_data(keys[1]) == jax.random.key_data(jax.random.key(1))).all())
      True

    Raises:
      ValueError: ``seeds`` is empty.
      TypeError: ``seeds`` is not a sequence (e.g. ``3``: pass ``range(3)``) or a seed is not
        an int.
    """
    if not isinstance(seeds, Iterable) or isinstance(seeds, str | bytes):
        raise TypeError(
            f"seed_keys: seeds must be a sequence of ints, e.g. range(3); got "
            f"{type(seeds).__name__} {seeds!r}"
        )
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seed_keys: seeds is empty; give at least one int seed")
    for s in seeds:
        check_int("seed_keys", "seeds", s, minimum=-(2**63))
    # Repeats are allowed: a sweep over (initializer, seed) pairs gives each init the same seeds.
    return jnp.stack([jax.random.key(int(s)) for s in seeds])


def init_models(init_fn: Callable[[jax.Array], PyTree], keys: jax.Array) -> PyTree:
    """``jax.vmap(init_fn)(keys)``: one model per key, stacked on a leading axis.

    Model ``m`` equals ``init_fn(keys[m])`` computed alone (the key is split nowhere else).

    Raises:
      ValueError: ``keys`` is not a 1-D array of PRNG keys (e.g. :func:`seed_keys`).
    """
    if not callable(init_fn):
        raise TypeError(f"init_models: init_fn must be callable, got {type(init_fn).__name__}")
    dtype, shape = getattr(keys, "dtype", None), getattr(keys, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if not ((typed and len(shape) == 1) or (dtype == jnp.uint32 and len(shape or ()) == 2)):
        raise ValueError(
            "init_models: keys must be a 1-D array of PRNG keys (jinit.seed_keys(seeds)), got "
            f"{type(keys).__name__} with dtype {dtype} and shape {shape}"
        )
    return jax.vmap(init_fn)(keys)


def model_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over as many devices as evenly divide ``num_models`` (None for one device).

    Pad the model axis first (:func:`pad_models`) to use every device when the count does not
    divide.

    Args:
      num_models: size of the model axis.
      devices: devices to use; default ``jax.devices()`` (all hosts' devices under
        ``jax.distributed``).

    Raises:
      ValueError: ``num_models < 1`` or no devices.
    """
    check_int("model_mesh", "num_models", num_models, minimum=1)
    devices = list(devices if devices is not None else jax.devices())
    if not devices:
        raise ValueError("model_mesh: devices is empty")
    n = max(d for d in range(1, len(devices) + 1) if num_models % d == 0)
    if n == 1:
        return None
    return Mesh(np.array(devices[:n]), (MODEL_AXIS,))


def padded_size(num_models: int, num_devices: int | None = None) -> int:
    """The smallest multiple of the device count that holds ``num_models`` models.

    Examples:
      >>> padded_size(9, 2), padded_size(8, 4), padded_size(3, 1)
      (10, 8, 3)
    """
    check_int("padded_size", "num_models", num_models, minimum=1)
    d = num_devices if num_devices is not None else jax.device_count()
    check_int("padded_size", "num_devices", d, minimum=1)
    return -(-num_models // d) * d


def pad_models(tree: PyTree, size: int) -> PyTree:
    """Pads the leading model axis to ``size`` by repeating the last model.

    The copies train exactly like the model they copy and are dropped afterwards
    (``jax.tree.map(lambda a: a[:num_models], tree)``); they only keep every device busy.

    Raises:
      ValueError: ``size`` below 1 or smaller than the model axis.
    """
    check_int("pad_models", "size", size, minimum=1)

    def pad(a):
        n = a.shape[0]
        if size < n:
            raise ValueError(f"pad_models: size={size} is smaller than the model axis ({n})")
        return a if size == n else jnp.concatenate([a, jnp.repeat(a[-1:], size - n, axis=0)])

    return jax.tree.map(pad, tree)


def shard_models(tree: PyTree, mesh: Mesh | None) -> PyTree:
    """Places every leaf's leading (model) axis across ``mesh``; a no-op for ``mesh=None``.

    Under ``jax.distributed`` (a mesh over several processes' devices) every process passes
    the same whole tree and puts the slices of its own devices
    (``jax.make_array_from_callback``); read results back with
    ``jax.experimental.multihost_utils.process_allgather``.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: a leaf's model axis is not divisible by the mesh's device count.
    """
    if mesh is None:
        return tree
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"shard_models: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}"
        )
    for p, a in jax.tree_util.tree_leaves_with_path(tree):
        if a.ndim == 0 or a.shape[0] % mesh.size:
            raise ValueError(
                f"shard_models: the model axis of {jax.tree_util.keystr(p)} (shape {a.shape}) "
                f"is not divisible by the mesh's {mesh.size} devices; pad it (jinit.pad_models)"
            )
    sharding = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))
    if sharding.is_fully_addressable:
        return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)

    # Under jax.distributed every process holds the whole (identical) tree and places only the
    # slices of its own devices; the result is one global array over all processes' devices.
    def put(a):
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(put, tree)
