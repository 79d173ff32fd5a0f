"""The one path-string helper and the one per-layer key derivation of the whole library.

A parameter's or a layer's path is written ``'a/b/0/kernel'`` everywhere (reports, patterns,
``reinit`` rules), and every per-path key is ``fold_in(key, path_hash(path))`` (the penzai
convention: adding a layer never changes another layer's values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax.core import FrozenDict


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def path_string(path: Sequence[Any] | str) -> str:
    """A pytree path (or a module path) as ``'a/b/0/kernel'``.

    ``DictKey``, ``GetAttrKey``, ``SequenceKey`` and ``FlattenedIndexKey`` entries become their
    key, name or index (plain strings and ints, as in a linen scope path, are kept); a trailing
    ``.value`` (the array inside a Flax NNX ``Variable``) is dropped, so an NNX state and the
    equivalent linen dict give the same strings. A string is returned unchanged.

    Args:
      path: a key path from ``jax.tree_util.tree_flatten_with_path``, a tuple of names, or a
        string.

    Returns:
      The path string.
    """
    if isinstance(path, str):
        return path
    parts = list(path)
    if parts and isinstance(parts[-1], jax.tree_util.GetAttrKey) and parts[-1].name == "value":
        parts = parts[:-1]
    return "/".join(_key_str(p) for p in parts)


def path_hash(path: Sequence[Any] | str) -> int:
    """A stable 32-bit hash of a path (BLAKE2s of its UTF-8 string; same on every run/host)."""
    digest = hashlib.blake2s(path_string(path).encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def path_key(key: jax.Array, path: Sequence[Any] | str) -> jax.Array:
    """The per-leaf (or per-layer) key ``jax.random.fold_in(key, path_hash(path))``."""
    return jax.random.fold_in(key, path_hash(path))


def flat(tree: Any) -> tuple[dict[str, Any], dict[str, tuple]]:
    """``{path string: leaf}`` and ``{path string: key tuple}`` of a pytree."""
    leaves, keys = {}, {}
    for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = path_string(kp)
        leaves[name] = leaf
        keys[name] = tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in kp)
    return leaves, keys


def replace_leaves(tree: Any, updates: Mapping[str, Any]) -> Any:
    """``tree`` with the leaves whose path string is in ``updates`` replaced; dicts keep their
    own key order (``tree_map`` would sort them)."""
    if not updates:
        return tree

    def rec(node, prefix):
        if isinstance(node, dict | FrozenDict):
            new = {k: rec(v, prefix + (k,)) for k, v in node.items()}
            return FrozenDict(new) if isinstance(node, FrozenDict) else new
        return jax.tree_util.tree_map_with_path(
            lambda kp, leaf: updates.get(path_string(prefix + tuple(kp)), leaf), node
        )

    return rec(tree, ())


def is_float(x: Any) -> bool:
    """Whether ``x`` is an array of a floating dtype."""
    return hasattr(x, "shape") and jax.numpy.issubdtype(getattr(x, "dtype", None), np.floating)


def set_leaf(tree: Any, keys: tuple, value: Any) -> Any:
    """A copy of nested dict ``tree`` with the leaf at ``keys`` replaced."""
    return value if not keys else {**tree, keys[0]: set_leaf(tree[keys[0]], keys[1:], value)}
