"""Re-initialise an existing parameter pytree from "path pattern -> initializer" rules.

Each leaf's key is ``fold_in(base_key, stable_hash(path))``, so a leaf's values depend only on
the base key and its own path: adding, removing or reordering other layers (or dict insertion
order) never changes them (the penzai convention).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from jinit._src.checks import check_patterns
from jinit._src.initializers import Initializer
from jinit._src.paths import path_hash as path_hash
from jinit._src.paths import path_key as path_key
from jinit._src.paths import path_string as path_string

Rule = tuple[str | re.Pattern | Callable[[str, Any], bool], Initializer]

__all__ = ["path_string", "path_hash", "path_key", "reinit"]


def _regex_matcher(rx: re.Pattern) -> Callable[[str, Any], bool]:
    return lambda p, leaf: rx.search(p) is not None


def _compile_rules(rules: Mapping | Sequence[Rule]) -> list[tuple[Callable[[str, Any], bool], Any]]:
    items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"rule {i} must be a (pattern, initializer) pair, got {item!r}")
        pat, init = item
        if not callable(init):
            raise TypeError(f"rule {i} ({pat!r}): initializer must be callable, got {init!r}")
        if isinstance(pat, str):
            check_patterns("reinit", f"rules (rule {i})", pat)  # ValueError, not re.error
            out.append((_regex_matcher(re.compile(pat)), init))
        elif isinstance(pat, re.Pattern):
            out.append((_regex_matcher(pat), init))
        elif callable(pat):
            out.append((pat, init))
        else:
            raise TypeError(f"rule {i}: pattern must be a regex string or a predicate, got {pat!r}")
    return out


def reinit(
    params: Any,
    rules: Mapping | Sequence[Rule],
    key: jax.Array,
    *,
    strict: bool = True,
) -> Any:
    r"""Re-initialises the leaves of a params pytree that match ``rules``; others are kept.

    For every array leaf (linen ``{'params': ...}`` dicts, ``FrozenDict``, Flax NNX ``State``
    or modules, or the ``ShapeDtypeStruct`` tree of ``jax.eval_shape``) with path string ``p``
    (see :func:`path_string`, e.g. ``'params/Dense_0/kernel'`` or ``'layers/0/kernel'``), the
    first rule whose pattern matches wins:

    .. math:: w_p \leftarrow \text{init}(\text{fold\_in}(\text{key}, h(p)),\ w_p.\text{shape},
       \ w_p.\text{dtype})

    with :math:`h` = :func:`path_hash`. A pattern is a regular expression searched in ``p``
    (``r'kernel$'``, ``r'^params/Embed_0/'``) or a predicate ``pred(p, leaf) -> bool``.
    Because keys depend only on the path, results are independent of dict order and of other
    layers; the function is pure and can be ``jax.jit``-ed (rules are static).

    Args:
      params: the pytree to re-initialise.
      rules: a mapping or sequence of ``(pattern, initializer)`` pairs, tried in order.
      key: the base PRNG key.
      strict: if True (default), raise when a rule matches no leaf (catches typos in patterns
        and rules written for another model); False keeps such rules as no-ops.

    Returns:
      A pytree of the same structure (NNX ``State`` stays a ``State``; apply it with
      ``nnx.update``) with the dtype of every leaf preserved.

    Raises:
      TypeError: for malformed rules.
      ValueError: a pattern that is not a valid regular expression.
      ValueError: with ``strict=True``, naming the rules that matched nothing and listing the
        leaf paths that exist.

    References:
      penzai ``penzai/nn/parameters.py`` (path-derived parameter keys).
    """
    from jinit._src.checks import check_key  # local: the module's imports are being moved

    check_key("reinit", "key", key)
    compiled = _compile_rules(rules)
    used = [False] * len(compiled)
    seen: list[str] = []

    def visit(path, leaf):
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            return leaf
        p = path_string(path)
        seen.append(p)
        for i, (match, init) in enumerate(compiled):
            if match(p, leaf):
                used[i] = True
                return init(path_key(key, p), tuple(leaf.shape), leaf.dtype)
        return leaf

    out = jax.tree_util.tree_map_with_path(visit, params)
    if strict and not all(used):
        pats = [
            (list(rules.keys()) if isinstance(rules, Mapping) else [r[0] for r in rules])[i]
            for i, u in enumerate(used)
            if not u
        ]
        shown = ", ".join(seen[:20]) + (f", ... ({len(seen)} in all)" if len(seen) > 20 else "")
        raise ValueError(
            f"reinit: rules matched no leaf: {pats!r}; the params have the leaf paths: "
            f"{shown or '(none)'}. Fix the pattern, or pass strict=False to allow it."
        )
    return out
