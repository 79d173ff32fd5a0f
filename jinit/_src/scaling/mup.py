"""muP: per-leaf init variances and learning rates relative to a base width (TP-V, Table 3).

Which dimensions grow is inferred by comparing a params tree with the same model at base
width, as ``mup.set_base_shapes`` does; each leaf is then classified and gets its init
variance factor, learning-rate multiplier and (multiplier formulation) forward multiplier.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jinit._src.checks import InitWarning, check_choice, check_key, check_number, check_patterns
from jinit._src.reinit import path_key, path_string

__all__ = [
    "LeafScaling",
    "Parametrization",
    "attention_fn",
    "attention_scale",
    "mup",
    "standard_parametrization",
]

CLASSES = ("input", "hidden", "output", "vector", "fixed")
OPTIMIZERS = ("adam", "sgd")
FORMULATIONS = ("table3", "multipliers")

# Flax's multi-axis attention kernels (linen MultiHeadDotProductAttention, nnx
# MultiHeadAttention): query/key/value (in, heads, head_dim) -> fan-in axis 0;
# out (heads, head_dim, out) -> fan-in axes 0 and 1. Every other kernel: all axes but the last
# are fan-in (Dense (in, out), Embed (vocab, d), conv HWIO).
DEFAULT_FAN_IN_AXES: tuple[tuple[str, tuple[int, ...]], ...] = (
    (r"(^|/)(query|key|value)/kernel$", (0,)),
    (r"(^|/)out/kernel$", (0, 1)),
)
DEFAULT_VECTOR = r"(^|/)(bias|scale|embedding_bias)$"


@dataclasses.dataclass(frozen=True)
class LeafScaling:
    """How one leaf scales with width.

    Attributes:
      path: the leaf's path string (a leading ``params/`` removed).
      cls: ``input`` (only fan-out grows), ``hidden`` (both grow), ``output`` (readout: only
        fan-in grows), ``vector`` (biases, norm gains, any leaf of rank <= 1) or ``fixed``
        (nothing grows).
      shape, base_shape: the leaf's shape and its shape at base width.
      fan_in_axes: the axes counted as fan-in (the others are fan-out).
      m_in, m_out: width multipliers ``fan / base fan`` of the fan-in and fan-out axes (for a
        vector leaf both are ``size / base size``).
      init_var: factor on the base-width init variance.
      lr: learning-rate multiplier.
      forward: output multiplier the model must apply (multiplier formulation's readout, or
        Depth-muP's residual branches; 1 otherwise).
    """

    path: str
    cls: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    fan_in_axes: tuple[int, ...]
    m_in: float
    m_out: float
    init_var: float
    lr: float
    forward: float


def _strip(path: str) -> str:
    return path[len("params/") :] if path.startswith("params/") else path


def _leaves(tree: Any) -> dict[str, Any]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        _strip(path_string(p)): x for p, x in flat if hasattr(x, "shape") and hasattr(x, "dtype")
    }


def _fan_in_axes(path: str, ndim: int, rules) -> tuple[int, ...]:
    for rx, axes in rules:
        if rx.search(path) and max(axes) < ndim - 1:
            return tuple(axes)
    return tuple(range(ndim - 1))


def _mult(shape, base, axes) -> float:
    return float(math.prod(shape[a] / base[a] for a in axes))


def _rules(sp: bool, optimizer: str, formulation: str) -> dict[str, Callable]:
    """(m_in, m_out) -> (init variance factor, lr multiplier, forward multiplier) per class.

    TP-V (arXiv:2203.03466) Table 3, with fan_in / fan_out replaced by the width multipliers
    relative to base shapes (as the ``mup`` package does), so every factor is 1 at base width.
    """
    one = lambda mi, mo: (1.0, 1.0, 1.0)
    if sp:
        kernel = lambda mi, mo: (1.0 / mi, 1.0, 1.0)  # init var 1/fan_in everywhere, one lr
        return {"input": kernel, "hidden": kernel, "output": kernel, "vector": one, "fixed": one}
    adam = optimizer == "adam"
    if formulation == "table3":
        out = lambda mi, mo: (1.0 / mi**2, 1.0 / mi, 1.0)
    else:  # readout init 1/fan_in, forward multiplier 1/m_in: mup's MuReadout (vector-like)
        out = lambda mi, mo: (1.0 / mi, 1.0 if adam else mi, 1.0 / mi)
    return {
        "input": lambda mi, mo: (1.0, 1.0 if adam else mo, 1.0),
        "hidden": lambda mi, mo: (1.0 / mi, 1.0 / mi if adam else mo / mi, 1.0),
        "output": out,
        "vector": lambda mi, mo: (1.0, 1.0 if adam else mo, 1.0),
        "fixed": one,
    }


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """A width (and optionally depth) parametrization of one params tree.

    Build it with :func:`mup` or :func:`standard_parametrization`. ``leaves`` maps each path
    (without a leading ``params/``) to its :class:`LeafScaling`; ``str(p)`` prints the
    classification as a table.
    """

    leaves: Mapping[str, LeafScaling]
    name: str
    optimizer_kind: str
    formulation: str
    readout_zero_init: bool
    init_std: float | Mapping[str, float] | None
    residual_multiplier: float = 1.0

    def __str__(self) -> str:
        rows = [f"{self.name} ({self.optimizer_kind}, {self.formulation})"]
        rows.append(
            f"{'path':40s} {'class':7s} {'shape':>16s} {'m_in':>6s} {'m_out':>6s} "
            f"{'var x':>8s} {'lr x':>8s} {'fwd x':>6s}"
        )
        for s in self.leaves.values():
            rows.append(
                f"{s.path:40s} {s.cls:7s} {str(s.shape):>16s} {s.m_in:6.3g} {s.m_out:6.3g} "
                f"{s.init_var:8.3g} {s.lr:8.3g} {s.forward:6.3g}"
            )
        return "\n".join(rows)

    def classes(self) -> dict[str, str]:
        """``{path: class}`` for every leaf."""
        return {p: s.cls for p, s in self.leaves.items()}

    def _get(self, path) -> LeafScaling:
        p = _strip(path_string(path))
        if p not in self.leaves:
            raise KeyError(
                f"leaf {p!r} is not in this parametrization (it knows {len(self.leaves)} "
                f"leaves, e.g. {next(iter(self.leaves), None)!r}); build it from the same model"
            )
        return self.leaves[p]

    def _map(self, params: Any, fn: Callable[[LeafScaling, Any], Any], where: str) -> Any:
        def visit(path, x):
            if not (hasattr(x, "shape") and hasattr(x, "dtype")):
                return x
            s = self._get(path)
            if tuple(x.shape) != s.shape:
                # e.g. params of another width: the variances would be the wrong width's
                raise ValueError(
                    f"{where}: params leaf {s.path!r} has shape {tuple(x.shape)}, but this "
                    f"{self.name} parametrization was built for shape {s.shape} (base "
                    f"{s.base_shape}); build it from these params: mup(base_params, params)"
                )
            return fn(s, x)

        return jax.tree_util.tree_map_with_path(visit, params)

    def lr_multipliers(self, params: Any) -> Any:
        """The learning-rate multipliers as a pytree shaped like ``params`` (Python floats)."""
        return self._map(params, lambda s, x: s.lr, "Parametrization.lr_multipliers")

    def readout_multiplier(self) -> float:
        """The forward multiplier on the readout's output (``1/m_in`` in the multiplier
        formulation, 1 otherwise); the model multiplies its logits by it."""
        fw = {s.forward for s in self.leaves.values() if s.cls == "output"}
        return fw.pop() if len(fw) == 1 else 1.0

    def init_std_of(self, s: LeafScaling) -> float:
        """The standard deviation :meth:`init` draws leaf ``s`` with."""
        base_fan_in = math.prod(s.base_shape[a] for a in s.fan_in_axes)
        std = self.init_std
        if isinstance(std, Mapping):
            std = next((v for k, v in std.items() if re.search(k, s.path)), None)
        base_var = 1.0 / base_fan_in if std is None else float(std) ** 2
        return math.sqrt(base_var * s.init_var)

    def init(self, key: jax.Array, params: Any) -> Any:
        r"""Re-draws every weight with its variance: :math:`N(0, \sigma_0^2 \cdot v)`.

        :math:`\sigma_0^2` is the base-width variance (``init_std**2``, or ``1/base fan_in``
        when ``init_std`` is None) and :math:`v` the leaf's ``init_var`` factor (muP: 1 for
        input, ``1/m_in`` hidden, ``1/m_in**2`` output; SP: ``1/m_in``). The readout is zero
        with ``readout_zero_init``. Vector leaves (biases, norm gains) are kept: their init
        does not depend on width. Each leaf's key is ``jinit.path_key(key, path)``.

        Args:
          key: a PRNG key.
          params: a pytree with the leaves this parametrization was built from.

        Returns:
          ``params`` with the weights re-drawn, dtypes kept.

        Raises:
          ValueError: a leaf whose shape differs from the one the parametrization was built
            for (params of another width), naming the leaf and both shapes.
          KeyError: a leaf the parametrization does not know.
        """
        check_key("Parametrization.init", "key", key)

        def draw(s: LeafScaling, x):
            if s.cls == "vector":
                return x
            if s.cls == "output" and self.readout_zero_init:
                return jnp.zeros(x.shape, x.dtype)
            z = jax.random.normal(path_key(key, s.path), x.shape, jnp.float32)
            return (z * self.init_std_of(s)).astype(x.dtype)

        return self._map(params, draw, "Parametrization.init")

    def optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        """``tx`` followed by a per-leaf scaling of its updates by the lr multipliers.

        Exact for any optimizer whose update is proportional to its learning rate (SGD, Adam,
        Adafactor...). Coupled weight decay inside ``tx`` is scaled with the learning rate.
        Matches leaves by path, so the updates tree may be the linen ``params`` dict with or
        without its ``params`` level, or an NNX ``State``.
        """

        def init_fn(params):
            del params
            return optax.EmptyState()

        def update_fn(updates, state, params=None):
            scaled = self._map(
                updates, lambda s, u: u * jnp.asarray(s.lr, u.dtype), "Parametrization.optimizer"
            )
            return scaled, state

        return optax.chain(tx, optax.GradientTransformation(init_fn, update_fn))


def _check_tree(fn: str, name: str, tree: Any) -> dict[str, Any]:
    leaves = _leaves(tree)
    if not leaves:
        raise ValueError(f"{fn}: {name} holds no array leaves (got {type(tree).__name__})")
    return leaves


def _check_init_std(fn: str, init_std: Any, leaves: Mapping[str, Any]) -> None:
    """``init_std``: None, a std > 0, or ``{pattern: std > 0}`` whose every pattern matches a
    leaf (a typo would silently keep the default std, as ``reinit``'s strict rules catch)."""
    if init_std is None:
        return
    if not isinstance(init_std, Mapping):
        check_number(fn, "init_std", init_std, positive=True)
        return
    for pattern, std in init_std.items():
        (pattern,) = check_patterns(fn, "init_std", pattern)
        check_number(fn, f"init_std[{pattern!r}]", std, positive=True)
        if not any(re.search(pattern, p) for p in leaves):
            shown = ", ".join(list(leaves)[:20]) + (" ..." if len(leaves) > 20 else "")
            raise ValueError(
                f"{fn}: init_std pattern {pattern!r} matches no leaf of params; the leaf paths "
                f"are: {shown}"
            )


def mup(
    base_params: Any,
    params: Any,
    *,
    delta_params: Any = None,
    optimizer: str = "adam",
    readout: str | None = None,
    formulation: str = "table3",
    readout_zero_init: bool = False,
    init_std: float | Mapping[str, float] | None = None,
    fan_in_axes: Mapping[str, tuple[int, ...]] | None = None,
    vector: str = DEFAULT_VECTOR,
    depth: int | None = None,
    base_depth: int | None = None,
    residual_branch: str | None = None,
    sp: bool = False,
) -> Parametrization:
    r"""The maximal-update parametrization (muP) of ``params`` relative to ``base_params``.

    A dimension is *infinite* (grows with width) where ``delta_params`` (default ``params``)
    and ``base_params`` differ, as ``mup.set_base_shapes(model, base, delta=...)`` decides.
    The width multiplier of a group of axes is :math:`m = \prod \text{size}/\text{base size}`
    (of ``params``). A multiplier below 1 (``base_params`` wider than ``params``, e.g. a
    narrow proxy model against a wider base, as ``mup.set_base_shapes(proxy, base)`` allows)
    is legal: muP is defined relative to any base. The parametrization is for the shapes of
    ``params``; :meth:`Parametrization.init` raises for params of another shape (e.g. the
    arguments swapped). Each leaf is classified by whether its fan-in and fan-out axes grow:

    ========  ===============================  ==========  ==============  =============
    class     which fans grow                  init var    Adam lr         SGD lr
    ========  ===============================  ==========  ==============  =============
    input     fan-out only (embedding, 1st)    1           1               m_out
    hidden    both                             1/m_in      1/m_in          m_out/m_in
    output    fan-in only (readout)            1/m_in^2    1/m_in          1/m_in
    vector    rank <= 1, bias, norm gain       kept        1               m (its size)
    fixed     none                             1           1               1
    ========  ===============================  ==========  ==============  =============

    (TP-V Table 3, factors relative to the base-width variance and learning rate.) With
    ``formulation="multipliers"`` the readout is drawn with ``1/m_in`` and its output must be
    multiplied by :meth:`Parametrization.readout_multiplier` ``= 1/m_in``; its lr is then 1
    (Adam) or ``m_in`` (SGD), as ``mup.MuReadout`` with ``MuAdam``/``MuSGD``. Attention logits
    must use :func:`attention_scale` (``1/d_head``) in both formulations.

    Fan-in axes: Flax's ``query/key/value`` kernels ``(in, heads, head_dim)`` have fan-in axis
    0, an ``out`` kernel ``(heads, head_dim, out)`` axes 0 and 1; every other leaf all axes but
    the last. Override with ``fan_in_axes={pattern: axes}``.

    Depth-muP (Yang et al. 2023, arXiv:2310.02244; Bordelon et al. 2023, arXiv:2309.16620):
    with ``depth``, ``base_depth`` and ``residual_branch`` (a pattern of the leaves inside the
    residual blocks), :attr:`Parametrization.residual_multiplier` ``= sqrt(base_depth/depth)``
    is the multiplier the model applies to every residual branch, and the Adam learning rate
    of the matching leaves is multiplied by it as well (SGD: unchanged). u-muP (Blake et al.
    2024, arXiv:2407.17465) is not implemented.

    Args:
      base_params: the same model's params (or ``jax.eval_shape`` of them) at base width.
      params: the params to parametrize (shapes are enough).
      delta_params: optional params at a third width, to tell the growing dims when
        ``params`` is at base width (as ``mup``'s ``delta``).
      optimizer: ``"adam"`` (any entrywise-normalized optimizer) or ``"sgd"``.
      readout: regex of the readout leaves; they must have a growing fan-in and a fixed
        fan-out. None: every such leaf is a readout.
      formulation: ``"table3"`` (init and lr only, default) or ``"multipliers"``.
      readout_zero_init: draw the readout as zeros (TP-V's recommendation).
      init_std: base-width std of the weights (> 0), a float or ``{pattern: std}`` (every
        pattern must match a leaf); None (or a leaf no pattern matches):
        ``1/sqrt(base fan_in)``.
      fan_in_axes: ``{pattern: axes}`` tried before the Flax defaults.
      vector: regex of vector-like leaves beyond those of rank <= 1.
      depth: Depth-muP: the number of residual blocks (give all three or none).
      base_depth: Depth-muP: the number of blocks at base depth.
      residual_branch: Depth-muP: regex of the leaves inside the residual branches.
      sp: the standard parametrization instead (all lr multipliers 1, init ``1/fan_in``).

    Returns:
      A :class:`Parametrization`.

    Raises:
      ValueError: unknown ``optimizer``/``formulation``; ``init_std`` not > 0 or a pattern of
        it that matches no leaf (or is not a valid regex); a leaf missing in ``base_params``;
        a rank or size that does not match; a ``readout`` leaf whose fan-out grows (at base
        width, where nothing grows, a readout leaf is accepted and every factor is 1); an
        incomplete Depth-muP triple.

    References:
      G. Yang, E. J. Hu et al., "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
      Hyperparameter Transfer", arXiv:2203.03466, 2022 (Table 3); microsoft/mup
      (``set_base_shapes``, ``MuReadout``, ``MuAdam``, ``MuSGD``).
    """
    fn = "standard_parametrization" if sp else "mup"
    check_choice(fn, "optimizer", optimizer, OPTIMIZERS)
    check_choice(fn, "formulation", formulation, FORMULATIONS)
    cur = _check_tree(fn, "params", params)
    base = _check_tree(fn, "base_params", base_params)
    delta = cur if delta_params is None else _check_tree(fn, "delta_params", delta_params)
    depth_args = (depth, base_depth, residual_branch)
    if any(a is not None for a in depth_args) and not all(a is not None for a in depth_args):
        raise ValueError(
            f"{fn}: Depth-muP needs depth, base_depth and residual_branch together; got "
            f"depth={depth!r}, base_depth={base_depth!r}, residual_branch={residual_branch!r}"
        )
    _check_init_std(fn, init_std, cur)
    res_mult = 1.0
    if depth is not None:
        check_number(fn, "depth", depth, positive=True)
        check_number(fn, "base_depth", base_depth, positive=True)
        res_mult = 1.0 if sp else math.sqrt(base_depth / depth)
    rules = [(re.compile(k), tuple(v)) for k, v in (fan_in_axes or {}).items()]
    rules += [(re.compile(k), v) for k, v in DEFAULT_FAN_IN_AXES]
    vector_rx = re.compile(vector)
    readout_rx = None if readout is None else re.compile(readout)
    per_class = _rules(sp, optimizer, formulation)
    out: dict[str, LeafScaling] = {}
    for path, x in cur.items():
        shape = tuple(x.shape)
        for name, other in (("base_params", base), ("delta_params", delta)):
            if path not in other:
                raise ValueError(f"{fn}: leaf {path!r} of params is missing from {name}")
            if len(other[path].shape) != len(shape):
                raise ValueError(
                    f"{fn}: leaf {path!r} has rank {len(shape)} in params but shape "
                    f"{tuple(other[path].shape)} in {name}"
                )
        bshape, dshape = tuple(base[path].shape), tuple(delta[path].shape)
        grows = [b != d or b != s for b, d, s in zip(bshape, dshape, shape, strict=True)]
        if x.ndim <= 1 or vector_rx.search(path):
            axes = tuple(range(x.ndim))
            m = _mult(shape, bshape, axes)
            cls, mi, mo = "vector", m, m
        else:
            axes = _fan_in_axes(path, x.ndim, rules)
            out_axes = tuple(a for a in range(x.ndim) if a not in axes)
            mi, mo = _mult(shape, bshape, axes), _mult(shape, bshape, out_axes)
            gin, gout = any(grows[a] for a in axes), any(grows[a] for a in out_axes)
            cls = {(True, True): "hidden", (False, True): "input", (True, False): "output"}.get(
                (gin, gout), "fixed"
            )
            if readout_rx is not None and readout_rx.search(path):
                # "fixed" is a readout at base width (nothing grows: every factor is 1).
                if cls not in ("output", "fixed"):
                    raise ValueError(
                        f"{fn}: readout={readout!r} matches {path!r} (shape {shape}, base "
                        f"{bshape}), whose fan-out grows; a readout maps the growing width to "
                        "a fixed output size"
                    )
            elif readout_rx is not None and cls == "output":
                warnings.warn(
                    f"{fn}: {path!r} has a growing fan-in and a fixed fan-out but does not match "
                    f"readout={readout!r}; it is treated as an output (readout) layer",
                    InitWarning,
                    stacklevel=2,
                )
        var, lr, fwd = per_class[cls](mi, mo)
        if residual_branch is not None and re.search(residual_branch, path) and not sp:
            lr *= res_mult if optimizer == "adam" else 1.0
        out[path] = LeafScaling(path, cls, shape, bshape, axes, mi, mo, var, lr, fwd)
    return Parametrization(
        leaves=out,
        name="SP" if sp else ("Depth-muP" if depth is not None else "muP"),
        optimizer_kind=optimizer,
        formulation=formulation,
        readout_zero_init=bool(readout_zero_init) and not sp,
        init_std=init_std,
        residual_multiplier=res_mult,
    )


def standard_parametrization(base_params: Any, params: Any, **kwargs: Any) -> Parametrization:
    """The standard parametrization with the same API: ``mup(..., sp=True)``.

    Init variance ``sigma_0^2 / m_in`` for every weight (``1/fan_in`` by default), every
    learning-rate and forward multiplier 1. At base width it equals :func:`mup`.
    """
    return mup(base_params, params, sp=True, **kwargs)


def attention_scale(head_dim: int, base_head_dim: int | None = None) -> float:
    r"""muP's attention-logit scale: :math:`1/d` instead of :math:`1/\sqrt{d}` (TP-V, Sec. 4).

    With ``base_head_dim`` the scale is :math:`\sqrt{d_0}/d`, which equals the standard
    :math:`1/\sqrt{d_0}` at base width. ``head_dim`` is the per-head query/key dimension.

    Raises:
      ValueError: a non-positive ``head_dim`` or ``base_head_dim``.
    """
    check_number("attention_scale", "head_dim", head_dim, positive=True)
    if base_head_dim is None:
        return 1.0 / head_dim
    check_number("attention_scale", "base_head_dim", base_head_dim, positive=True)
    return math.sqrt(base_head_dim) / head_dim


def attention_fn(base_head_dim: int | None = None, attention: Callable | None = None) -> Callable:
    """An ``attention_fn`` for Flax's attention modules with the muP logit scale.

    Flax's ``dot_product_attention`` divides the query by ``sqrt(head_dim)``; this wrapper
    first multiplies it by ``attention_scale(head_dim, base_head_dim) * sqrt(head_dim)``, so
    the logits are ``q.k * attention_scale``. Pass it as ``attention_fn=`` to
    ``flax.linen.MultiHeadDotProductAttention`` or ``flax.nnx.MultiHeadAttention``; the
    wrapped function is ``attention`` (default: Flax's ``dot_product_attention`` of the
    calling API).
    """
    import flax.linen as nn
    from flax import nnx

    def fn(query, key, value, *args, **kwargs):
        d = query.shape[-1]
        c = attention_scale(d, base_head_dim) * math.sqrt(d)
        # NNX's module passes NNX-only arguments (is_causal, promote_dtype)
        nnx_call = "is_causal" in kwargs or "promote_dtype" in kwargs
        inner = attention or (nnx.dot_product_attention if nnx_call else nn.dot_product_attention)
        return inner(query * jnp.asarray(c, query.dtype), key, value, *args, **kwargs)

    # linen's attention passes only the keyword arguments (mask, dropout...) that appear in the
    # attention_fn's signature: advertise the wrapped function's, or the mask is dropped.
    fn.__signature__ = inspect.signature(attention or nn.dot_product_attention)
    return fn
