r"""Krähenbühl et al.'s between-layer scaling: equal relative update rates for every layer.

Under SGD the relative change of layer :math:`k`'s kernel :math:`W_k` in one step is
proportional to

.. math::  r_k = \sqrt{\operatorname{mean}(G_k^2) / \operatorname{mean}(W_k^2)},
           \qquad G_k = \partial \langle f(x), g \rangle / \partial W_k,

with :math:`f(x)` the network output on the batch, :math:`g \sim \mathcal N(0, 1)` a random
tensor of the output's shape (a random top gradient standing in for a loss on random labels)
and the means taken over every entry of the kernel. Between-layer scaling multiplies each
kernel by a positive factor so that all :math:`r_k` become equal. One iteration, for
:math:`L` layers:

.. math::  t = \exp\Big(\frac1L \sum_k \log r_k\Big)\, \sigma_{\text{out}}^{1/L}, \qquad
           W_k \leftarrow c_k W_k, \quad c_k = \sqrt{r_k / t},

where :math:`\sigma_{\text{out}}` is the mean over output units of the standard deviation over
the batch of the current output. For a positively homogeneous chain (linear layers, ReLU,
max-pooling, no normalisation) scaling :math:`W_j` by :math:`c_j` scales the output by
:math:`P = \prod_j c_j` and :math:`G_k` by :math:`P / c_k`, so after the step every rate is
:math:`r_k P / c_k^2 = P\, t` (the same for all layers), and
:math:`P = \sigma_{\text{out}}^{-1/2}`: the output's standard deviation becomes
:math:`\sigma_{\text{out}}^{1/2}`, i.e. after :math:`n` iterations it is
:math:`\sigma_{\text{out}}^{2^{-n}}`, which tends to 1. The iteration is repeated, each time with
a fresh :math:`g`, because the rates of a real network depend on :math:`g` and are only
approximately homogeneous.

Biases follow the scale of their layer's output: the bias of layer :math:`k` is multiplied by
the cumulative product :math:`c_1 \cdots c_k` of the factors of the layers up to and including
:math:`k` (in the given forward order), which keeps a positively homogeneous network with biases
exactly equal to the old one times :math:`P`. The reference implementation instead multiplies
the bias by :math:`c_k` times the measured change of the mean absolute value of the layer's
input; both coincide for a positively homogeneous chain (the input of layer :math:`k` is then
scaled exactly by :math:`c_1 \cdots c_{k-1}`); they differ for networks with branches
(residual connections) or non-homogeneous activations, where neither rule is exact.

Source: Krähenbühl, Doersch, Donahue & Darrell, "Data-dependent Initializations of
Convolutional Neural Networks", ICLR 2016, arXiv:1511.06856 (the between-layer step of its
Section 3); the authors' reference implementation is ``calibrateGradientRatio`` in
``philkr/magic_init``, which this follows (no damping; stopping rule and iteration bound as
there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.checks import check_key
from jinit._src.datadep.capture import replace_leaves
from jinit._src.datadep.lsuv import _check_batch
from jinit._src.paths import path_string

_FN = "between_layer_scaling"

ARRAY_FIELDS = (
    "ratio_before",
    "ratio_after",
    "scale",
    "iterations",
    "converged",
    "output_std_before",
    "output_std_after",
)


@dataclasses.dataclass(frozen=True)
class BetweenLayerReport:
    """What :func:`jinit.between_layer_scaling` did; per-layer arrays in the given layer order.

    A pytree: the arrays are its leaves (``vmap`` stacks them to ``(n, L)`` and ``(n,)``), the
    paths and settings are static metadata.

    Attributes:
      paths: the kernel paths, ``"/"``-joined, in the given forward order.
      max_iters: the iteration bound the pass ran with.
      tol: the convergence tolerance the pass ran with.
      ratio_before: ``float32[L]`` the rates :math:`r_k` of the initial params (with the top
        gradient drawn from ``fold_in(key, 0)``).
      ratio_after: ``float32[L]`` the rates of the returned params (top gradient from
        ``fold_in(key, iterations)``).
      scale: ``float32[L]`` the total factor each kernel was multiplied by (the product of the
        per-iteration factors). The bias of layer ``k`` was multiplied by
        ``cumprod(scale)[k]``.
      iterations: ``int32[]`` the number of rescaling iterations applied.
      converged: ``bool[]`` every ``|log r_k / log t - 1| < tol`` for the returned params.
      output_std_before: ``float32[]`` mean over output units of the std over the batch, before.
      output_std_after: ``float32[]`` the same for the returned params.
    """

    paths: tuple[str, ...]
    max_iters: int
    tol: float
    ratio_before: Any
    ratio_after: Any
    scale: Any
    iterations: Any
    converged: Any
    output_std_before: Any
    output_std_after: Any

    def __len__(self) -> int:
        return len(self.paths)

    def summary(self) -> str:
        """A fixed-width table, one row per layer (a string; nothing is printed).

        For a stacked (vmapped) report the first member is shown.
        """
        n = len(self.paths)

        def first(name):
            a = np.asarray(getattr(self, name))
            return a.reshape(-1, n)[0] if a.ndim and n else a.reshape(-1)[0]

        rb, ra, sc = first("ratio_before"), first("ratio_after"), first("scale")
        iters = int(np.asarray(self.iterations).reshape(-1)[0])
        conv = bool(np.asarray(self.converged).reshape(-1)[0])
        sb = float(np.asarray(self.output_std_before).reshape(-1)[0])
        sa = float(np.asarray(self.output_std_after).reshape(-1)[0])
        lines = [
            f"between_layer: iterations={iters}/{self.max_iters} converged={conv} "
            f"tol={self.tol:g} output_std {sb:.4g} -> {sa:.4g}",
            f"{'path':<32} {'ratio_before':>12} {'ratio_after':>12} {'scale':>10}",
        ]
        for i, path in enumerate(self.paths):
            lines.append(f"{path:<32} {rb[i]:>12.4g} {ra[i]:>12.4g} {sc[i]:>10.4g}")
        return "\n".join(lines)

    def check(self) -> None:
        """Raises ``ValueError`` if the pass met a degenerate network: a zero or non-finite rate
        (naming the first such layer, e.g. a zero or NaN kernel, or NaN produced inside the
        network) or a zero or non-finite output standard deviation. Called automatically by
        :func:`jinit.between_layer_scaling` unless it is traced; for a stacked (vmapped) report
        every member is checked and the first bad one is named."""
        n = len(self.paths)
        for name in ("ratio_before", "ratio_after"):
            r = np.asarray(getattr(self, name), np.float64).reshape(-1, n)
            bad = ~(np.isfinite(r) & (r > 0))
            if bad.any():
                m, k = (int(i) for i in np.argwhere(bad)[0])
                member = f" (member {m} of the stacked report)" if r.shape[0] > 1 else ""
                raise ValueError(
                    f"{_FN}: layer {self.paths[k]!r} has rate {float(r[m, k])} in {name}{member}: "
                    "its gradient or kernel is zero or not finite (a dead or zero layer, NaN "
                    "parameters, or NaN/inf produced inside the network); nothing was rescaled "
                    "from that point on."
                )
        for name in ("output_std_before", "output_std_after"):
            sd = np.asarray(getattr(self, name), np.float64).reshape(-1)
            bad = ~(np.isfinite(sd) & (sd > 0))
            if bad.any():
                m = int(np.argwhere(bad)[0][0])
                raise ValueError(
                    f"{_FN}: the network output's standard deviation is {float(sd[m])} ({name}): the "
                    "output is constant or not finite on this batch."
                )

    def __repr__(self) -> str:
        return f"BetweenLayerReport(layers={len(self.paths)})"


jax.tree_util.register_dataclass(
    BetweenLayerReport,
    data_fields=list(ARRAY_FIELDS),
    meta_fields=["paths", "max_iters", "tol"],
)


def _check_layers(layers: Any, index: dict[tuple, int], leaves: list) -> list[tuple[int, Any]]:
    """Validates ``layers``; returns ``[(kernel leaf index, bias leaf index or None)]``."""
    if isinstance(layers, str):
        raise ValueError(
            f"{_FN}: layers must be a sequence of (kernel_path, bias_path_or_None) in forward "
            f"execution order, got the string {layers!r} (automatic layer discovery is not "
            "offered: a params tree's key order is sorted, not the execution order)."
        )
    try:
        layers = list(layers)
    except TypeError:
        raise ValueError(
            f"{_FN}: layers must be a sequence of (kernel_path, bias_path_or_None), got "
            f"{type(layers).__name__}."
        ) from None
    if not layers:
        raise ValueError(f"{_FN}: layers is empty; give at least one (kernel_path, bias_path).")

    def find(path: Any, what: str, i: int) -> int:
        if not isinstance(path, tuple | list) or not path:
            raise ValueError(
                f"{_FN}: layers[{i}] {what} path must be a non-empty tuple of keys into params, "
                f"got {path!r}."
            )
        path = path_string(tuple(path))
        if path not in index:
            raise ValueError(
                f"{_FN}: layers[{i}] {what} path {path_string(path)!r} is not a leaf of params."
            )
        return index[path]

    out = []
    used: dict[int, str] = {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, tuple | list) or len(layer) != 2:
            raise ValueError(
                f"{_FN}: layers[{i}] must be a pair (kernel_path, bias_path_or_None), got "
                f"{layer!r}."
            )
        kpath, bpath = layer
        k = find(kpath, "kernel", i)
        kernel = leaves[k]
        dtype = getattr(kernel, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or kernel.ndim < 2:
            raise ValueError(
                f"{_FN}: layers[{i}] kernel {path_string(tuple(kpath))!r} must be a floating array "
                f"with at least 2 dimensions, got dtype {dtype} and shape "
                f"{getattr(kernel, 'shape', None)}."
            )
        b = None
        if bpath is not None:
            b = find(bpath, "bias", i)
            bias = leaves[b]
            bdtype = getattr(bias, "dtype", None)
            if bdtype is None or not jnp.issubdtype(bdtype, jnp.floating):
                raise ValueError(
                    f"{_FN}: layers[{i}] bias {path_string(tuple(bpath))!r} must be a floating "
                    f"array, got dtype {bdtype}."
                )
        for leaf, path in ((k, kpath), (b, bpath)):
            if leaf is None:
                continue
            if leaf in used:
                raise ValueError(
                    f"{_FN}: path {path_string(tuple(path))!r} appears twice in layers "
                    f"(first as {used[leaf]})."
                )
            used[leaf] = f"layers[{i}]"
        out.append((k, b))
    return out


def between_layer_scaling(
    apply_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    key: jax.Array,
    *,
    layers: Sequence[tuple[tuple, tuple | None]],
    max_iters: int = 10,
    tol: float = 0.01,
    samples: int = 16,
) -> tuple[Any, BetweenLayerReport]:
    r"""Krähenbühl et al.'s between-layer scaling: every layer learns at the same relative rate.

    See the module docstring for the derivation. Each iteration measures, with one ``jax.vjp``
    of the output with respect to the listed kernels (a fresh top gradient
    :math:`g \sim \mathcal N(0,1)` drawn from ``jax.random.fold_in(key, iteration)``),

    .. math::  r_k = \sqrt{\operatorname{mean}(G_k^2)/\operatorname{mean}(W_k^2)},\quad
               t = \exp(\operatorname{mean}_k \log r_k)\,\sigma_{\text{out}}^{1/L},

    stops if every :math:`|\log r_k / \log t - 1| <` ``tol``, and otherwise multiplies kernel
    :math:`k` by :math:`c_k = \sqrt{r_k / t}` and its bias by :math:`c_1 \cdots c_k`
    (cumulative over the given order; exact for positively homogeneous chains such as ReLU
    MLPs/CNNs without normalisation, where the output is then multiplied by
    :math:`\prod_k c_k = \sigma_{\text{out}}^{-1/2}`). :math:`\sigma_{\text{out}}` is the mean
    over output units of the standard deviation over the batch, the units being the last axis
    of the output (all leading axes are flattened into the sample axis; a 1-D output is one
    unit). At most ``max_iters`` iterations run, in a ``jax.lax.while_loop``; the function is
    pure and can be wrapped in ``jax.jit`` and ``jax.vmap`` (e.g. over keys).

    Every kernel and bias is recomputed from its original value times its total factor (one
    rounding), in its own dtype (the product is formed in at least float32); statistics are
    float32. Leaves not listed in ``layers`` are returned unchanged. If a rate or the output
    std is zero or non-finite (a dead network, a zero kernel, NaN parameters or NaN produced
    inside the network), the loop stops without applying that iteration and
    :meth:`BetweenLayerReport.check` raises a ``ValueError`` naming the first such layer; it is
    called automatically unless the call is traced (under ``jit``/``vmap``, call
    ``report.check()`` on the result).

    Normalisation layers: with BatchNorm (or LayerNorm) after a layer, rescaling that layer's
    kernel does not rescale the output, so the network is not positively homogeneous: the
    rates are still equalised (approximately), but the output is not just rescaled and its
    standard deviation does not go to 1. For BatchNorm in train mode ``apply_fn`` must handle
    the mutable statistics, e.g. ``lambda v, x: model.apply(v, x, train=True,
    mutable=["batch_stats"])[0]``.

    Unlike the reference, which finds the layers from the Caffe graph, the layers are given
    explicitly in forward execution order: a params tree's keys are sorted (``Dense_10`` before
    ``Dense_2``), so the order cannot be recovered from it reliably.

    Args:
      apply_fn: ``apply_fn(params, batch) -> array``, the network output. For a Flax linen
        model pass ``model.apply`` and the whole variables dict (``{"params": ...}``) as
        ``params``; for other frameworks any function of a params pytree.
      params: a pytree (nested dicts) of arrays; only the listed kernels and biases change.
      batch: the network input passed to ``apply_fn`` (any pytree). Concrete floating leaves
        must be finite (checked unless traced).
      key: a JAX PRNG key (``jax.random.key``, or a legacy ``uint32[2]`` ``PRNGKey``).
      layers: the parameter layers in forward execution order, each a pair
        ``(kernel_path, bias_path_or_None)``; a path is a tuple of keys into ``params``, e.g.
        ``(("params", "Dense_0", "kernel"), ("params", "Dense_0", "bias"))``. Kernels must be
        floating arrays with ``ndim >= 2`` (any layout: Dense ``(in, out)``, Conv
        ``(..., in, out)``); a path may appear only once.
      max_iters: the most rescaling iterations (``>= 0``; the reference's default is 10).
      tol: the reference's relative tolerance on :math:`\log r_k` (1%). It is relative to
        :math:`|\log t|`, which grows with the batch size (:math:`G_k` is a sum over the batch),
        so ``converged`` only bounds the spread to
        :math:`\max_k r_k / \min_k r_k < \exp(2\,\mathrm{tol}\,|\log t|)` and the output std
        to :math:`|\log \sigma_{\text{out}}| < L\,\mathrm{tol}\,|\log t|`. The rates also
        depend on the random :math:`g`; ``samples`` averages that out.
      samples: the number of random top gradients :math:`g` per iteration; :math:`r_k` is
        measured from :math:`\operatorname{mean}(G_k^2)` averaged over them (one forward pass,
        ``samples`` backward passes). The paper's :math:`\mathbb E` over random labels is an
        expectation; the reference uses one draw per iteration (``samples=1``), whose rates
        scatter from draw to draw by more on layers with few outputs (coefficient of variation
        0.14 on a 10-output ReLU layer, 0.03 on a 64-output one, in
        ``tests/test_between_layer.py``), so with 1 sample and ``tol=0.01`` the stopping test
        rarely passes. A mean over 16 draws has 1/4 of that standard deviation.

    Returns:
      ``(new_params, report)``: ``new_params`` has the structure and the dtypes of ``params``;
      ``report`` is a :class:`BetweenLayerReport` (``report.summary()`` gives a table).

    Raises:
      ValueError: ``layers`` is empty or not a sequence of pairs, a path is not a leaf of
        ``params`` (naming it), a kernel is not floating or has fewer than 2 dimensions, a bias
        is not floating, a path is listed twice, ``max_iters < 0`` or ``tol < 0``, ``key`` is
        not a PRNG key, the output is not a floating array with at least 2 samples, or a
        concrete ``batch`` contains NaN/inf.

    References:
      Krähenbühl, Doersch, Donahue & Darrell, "Data-dependent Initializations of Convolutional
      Neural Networks", ICLR 2016, arXiv:1511.06856 (Section 3, the between-layer scale
      adjustment); reference implementation ``calibrateGradientRatio`` in ``philkr/magic_init``.
    """
    if isinstance(max_iters, bool) or not isinstance(max_iters, int | np.integer) or max_iters < 0:
        raise ValueError(f"{_FN}: max_iters must be an integer >= 0, got {max_iters!r}.")
    try:
        tol = float(tol)
    except TypeError:
        raise ValueError(f"{_FN}: tol must be a number >= 0, got {tol!r}.") from None
    if not tol >= 0:
        raise ValueError(f"{_FN}: tol must be a number >= 0, got {tol!r}.")
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"{_FN}: samples must be an integer >= 1, got {samples!r}.")
    check_key(_FN, "key", key)
    _check_batch(_FN, batch)

    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = [leaf for _, leaf in flat]
    index = {path_string(kp): i for i, (kp, _) in enumerate(flat)}
    idx = _check_layers(layers, index, leaves)
    n = len(idx)
    paths = tuple(path_string(tuple(layer[0])) for layer in layers)
    kernels0 = [leaves[k] for k, _ in idx]
    biases0 = [None if b is None else leaves[b] for _, b in idx]

    def rescale(x, s):
        wide = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
        return (x.astype(wide) * s.astype(wide)).astype(x.dtype)

    def build(kernels, scale):
        """Params with the given kernels and the biases for the total kernel ``scale``."""
        new = list(leaves)
        cum = jnp.cumprod(scale)
        for j, (k, b) in enumerate(idx):
            new[k] = kernels[j]
            if b is not None:
                new[b] = rescale(biases0[j], cum[j])
        return jax.tree_util.tree_unflatten(treedef, new)

    def scaled_kernels(scale):
        return [rescale(w, scale[j]) for j, w in enumerate(kernels0)]

    def measure(scale, it):
        """Rates ``r[L]`` and the output std for the params with total kernel ``scale``."""
        kernels = scaled_kernels(scale)
        out, vjp = jax.vjp(lambda ks: apply_fn(build(ks, scale), batch), kernels)
        if not isinstance(out, jax.Array | np.ndarray) or not jnp.issubdtype(
            out.dtype, jnp.floating
        ):
            raise ValueError(
                f"{_FN}: apply_fn must return one floating array, got "
                f"{type(out).__name__} with dtype {getattr(out, 'dtype', None)}."
            )
        rows = out.reshape(-1, 1) if out.ndim <= 1 else out.reshape(-1, out.shape[-1])
        if rows.shape[0] < 2:
            raise ValueError(
                f"{_FN}: the output of apply_fn has shape {out.shape}: fewer than 2 samples per "
                "output unit (the last axis), so its standard deviation is undefined."
            )
        kit = jax.random.fold_in(key, it)

        def add_sample(j, acc):
            # samples=1: g from fold_in(key, it) itself, the reference's single draw
            kj = jax.random.fold_in(kit, j) if samples > 1 else kit
            g = jax.random.normal(kj, out.shape, jnp.float32)
            (grads,) = vjp(g.astype(out.dtype))
            return acc + jnp.stack([jnp.mean(jnp.square(gk.astype(jnp.float32))) for gk in grads])

        gsq = jax.lax.fori_loop(0, samples, add_sample, jnp.zeros((n,), jnp.float32)) / samples
        wsq = jnp.stack([jnp.mean(jnp.square(wk.astype(jnp.float32))) for wk in kernels])
        r = jnp.sqrt(gsq / wsq)
        std = jnp.mean(jnp.std(rows.astype(jnp.float32), axis=0))
        return r, std

    def decide(r, std):
        """``(valid, converged, c)`` for the rates ``r`` and output ``std`` of one iteration."""
        log_r = jnp.log(r)
        log_t = jnp.mean(log_r) + jnp.log(std) / n
        valid = jnp.all(jnp.isfinite(log_r)) & jnp.isfinite(log_t)
        # |log r_k / log t - 1| < tol, without dividing by log t (never true when log t == 0).
        conv = valid & jnp.all(jnp.abs(log_r - log_t) < tol * jnp.abs(log_t))
        c = jnp.exp(0.5 * (log_r - log_t))
        return valid, conv, c

    ones = jnp.ones((n,), jnp.float32)
    r0, std0 = measure(ones, 0)

    def cond(state):
        it, _, r, std = state
        valid, conv, _ = decide(r, std)
        return (it < max_iters) & valid & ~conv

    def body(state):
        it, scale, r, std = state
        _, _, c = decide(r, std)
        scale = scale * c
        it = it + 1
        r, std = measure(scale, it)
        return it, scale, r, std

    it, scale, r, std = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), ones, r0, std0))
    _, converged, _ = decide(r, std)
    new = jax.tree_util.tree_leaves(build(scaled_kernels(scale), scale))
    changed = {i for pair in idx for i in pair if i is not None}
    new_params = replace_leaves(params, {path_string(flat[i][0]): new[i] for i in changed})
    report = BetweenLayerReport(
        paths=paths,
        max_iters=int(max_iters),
        tol=tol,
        ratio_before=r0,
        ratio_after=r,
        scale=scale,
        iterations=it,
        converged=converged,
        output_std_before=std0,
        output_std_after=std,
    )
    if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(report)):
        report.check()
    return new_params, report
