"""Transformer init recipes as ``jinit.reinit`` rules, addressed by role patterns.

A *layout* maps roles (query, key, value, attn_out, mlp_in, mlp_out, embed, gain, bias) to
path regexes; :data:`FLAX_LAYOUT` matches Flax's attention modules, other layouts override
single roles. Each preset returns ``[(pattern, initializer), ...]`` for :func:`jinit.reinit`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jinit._src.checks import check_choice, check_key, check_number, check_patterns
from jinit._src.fans import compute_fans
from jinit._src.initializers import zeros
from jinit._src.reinit import path_key, path_string

__all__ = [
    "FLAX_LAYOUT",
    "deepnorm_constants",
    "deepnorm_init",
    "gpt2_init",
    "mimetic_attention",
    "neox_init",
    "rezero_init",
    "t5_init",
    "tfixup_init",
]

# Roles -> path regexes. Attention: flax.linen.MultiHeadDotProductAttention and
# flax.nnx.MultiHeadAttention name their DenseGeneral kernels query/key/value/out, with shapes
# (d_model, heads, head_dim) and (heads, head_dim, d_model). MLP and embedding names follow
# the common Flax spellings (an ``mlp``/``MlpBlock`` submodule holding Dense_0/Dense_1 or
# fc1/fc2 or wi/wo); pass ``layout={role: regex}`` for other names.
FLAX_LAYOUT: dict[str, str] = {
    "query": r"(^|/)query/kernel$",
    "key": r"(^|/)key/kernel$",
    "value": r"(^|/)value/kernel$",
    "attn_out": r"(^|/)out/kernel$",
    "mlp_in": r"(?i)mlp[^/]*/(Dense_0|fc1|wi|up|linear1)/kernel$",
    "mlp_out": r"(?i)mlp[^/]*/(Dense_1|fc2|wo|down|linear2)/kernel$",
    "embed": r"(?i)(^|/)[^/]*embed[^/]*/embedding$",
    "kernel": r"(kernel|embedding)$",  # every other weight
    "gain": r"(?i)(^|/)(rezero|skipinit|res_gain|residual_gain)[^/]*$",
    "bias": r"(^|/)bias$",
}
ROLES = tuple(FLAX_LAYOUT)


def _layout(fn: str, layout: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(FLAX_LAYOUT)
    for role, rx in (layout or {}).items():
        check_choice(fn, "layout role", role, ROLES)
        if not isinstance(rx, str):
            raise TypeError(f"{fn}: layout[{role!r}] must be a regex string, got {rx!r}")
        out[role] = check_patterns(fn, f"layout[{role!r}]", rx)[0]
    return out


def _axes(role: str, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Fan-in / fan-out axes of a role's kernel (DenseGeneral's multi-axis kernels included)."""
    if ndim == 3 and role in ("query", "key", "value"):
        return (0,), (1, 2)
    if ndim == 3 and role == "attn_out":
        return (0, 1), (2,)
    return tuple(range(ndim - 1)), (ndim - 1,)


def fan_normal(role: str, var: Any, dtype=None):
    """``N(0, var(fan_in, fan_out))`` with the role's fan axes (untruncated, as ``normal_``)."""

    def init(key, shape, dtype=dtype, out_sharding=None):
        del out_sharding
        dtype = jnp.dtype(dtype or jnp.float32)
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"{role} initializer: expected a kernel of rank >= 2, got {shape}")
        i, o = _axes(role, len(shape))
        fan_in, fan_out = compute_fans(shape, i, o)
        v = var(fan_in, fan_out) if callable(var) else var
        return (jax.random.normal(key, shape, jnp.float32) * math.sqrt(v)).astype(dtype)

    return init


def _std(s: float):
    return lambda fi, fo: s * s


def _xavier(gain: float):
    return lambda fi, fo: gain * gain * 2.0 / (fi + fo)


def _rules(lay: dict[str, str], spec: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``[(role, var)] -> [(regex, initializer)]``: ``var(fan_in, fan_out)`` gives the variance,
    None zeros (biases), ``("init", f)`` the initializer ``f`` itself."""
    out = []
    for role, var in spec:
        if var is None or isinstance(var, tuple):  # zeros, or ("init", an initializer)
            out.append((lay[role], zeros if var is None else var[1]))
            continue
        if role == "kernel":  # the catch-all keeps each attention kernel's own fan axes
            done = {r for r, _ in spec}
            attn = [r for r in ("query", "key", "value", "attn_out") if r not in done]
            out += [(lay[r], fan_normal(r, var)) for r in attn]
        out.append((lay[role], fan_normal(role, var)))
    return out


def gpt2_init(
    n_layers: int, *, std: float = 0.02, layout: Mapping[str, str] | None = None
) -> list[tuple[str, Any]]:
    r"""GPT-2: every weight :math:`N(0, 0.02^2)`, residual projections :math:`0.02/\sqrt{2L}`.

    The residual-branch output projections (``attn_out``, ``mlp_out``) get std
    :math:`\text{std}/\sqrt{2 L}` (two residual additions per block, ``L`` = ``n_layers``);
    biases 0; norm gains untouched.

    References:
      A. Radford et al., "Language Models are Unsupervised Multitask Learners", OpenAI 2019
      (Sec. 2.3: "scale the weights of residual layers at initialization by 1/sqrt(N)");
      Hugging Face ``GPT2PreTrainedModel._init_weights`` (``c_proj`` std
      ``initializer_range / sqrt(2 * n_layer)``), nanoGPT ``model.py``.
    """
    check_number("gpt2_init", "n_layers", n_layers, positive=True)
    check_number("gpt2_init", "std", std, positive=True)
    lay = _layout("gpt2_init", layout)
    res = std / math.sqrt(2 * n_layers)
    return _rules(
        lay,
        [("attn_out", _std(res)), ("mlp_out", _std(res)), ("kernel", _std(std)), ("bias", None)],
    )


def neox_init(
    n_layers: int, d_model: int, *, layout: Mapping[str, str] | None = None
) -> list[tuple[str, Any]]:
    r"""GPT-NeoX: ``small_init`` :math:`\sigma=\sqrt{2/(5d)}`, ``wang_init``
    :math:`\sigma = 2/(L\sqrt{d})` on the residual output projections.

    References:
      T. Q. Nguyen, J. Salazar, "Transformers without Tears", arXiv:1910.05895, 2019
      (small_init); B. Wang, Mesh-Transformer-JAX (wang_init); S. Black et al., "GPT-NeoX-20B",
      arXiv:2204.06745, 2022 (Sec. 2.1.3; ``megatron/model/init_functions.py``).
    """
    check_number("neox_init", "n_layers", n_layers, positive=True)
    check_number("neox_init", "d_model", d_model, positive=True)
    lay = _layout("neox_init", layout)
    small = math.sqrt(2.0 / (5.0 * d_model))
    wang = 2.0 / (n_layers * math.sqrt(d_model))
    return _rules(
        lay,
        [
            ("attn_out", _std(wang)),
            ("mlp_out", _std(wang)),
            ("kernel", _std(small)),
            ("bias", None),
        ],
    )


def t5_init(
    *, factor: float = 1.0, layout: Mapping[str, str] | None = None
) -> list[tuple[str, Any]]:
    r"""T5 / Mesh TensorFlow: every kernel :math:`N(0, \text{factor}^2/\text{fan\_in})`, the
    query additionally divided by :math:`\sqrt{d_\text{head}}` (T5 does not scale its
    attention logits), embeddings :math:`N(0, \text{factor}^2)`.

    For a query kernel ``(d_model, heads, d_kv)`` the variance is
    :math:`1/(d_\text{model} d_\text{kv})`; ``attn_out`` ``(heads, d_kv, d_model)`` has fan-in
    ``heads * d_kv``; ``mlp_out`` ``(d_ff, d_model)`` fan-in ``d_ff``.

    References:
      C. Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
      Transformer", JMLR 2020, arXiv:1910.10683; Hugging Face ``T5PreTrainedModel._init_weights``.
    """
    check_number("t5_init", "factor", factor, positive=True)
    lay = _layout("t5_init", layout)
    f2 = factor * factor
    return _rules(
        lay,
        [
            ("query", ("init", _t5_query(f2))),
            ("embed", _std(factor)),
            ("kernel", lambda fi, fo: f2 / fi),
            ("bias", None),
        ],
    )


def _t5_query(f2: float):
    def init(key, shape, dtype=None, out_sharding=None):
        shape = tuple(shape)
        d_kv = shape[-1] if len(shape) == 3 else 1  # 2-D (d, heads*d_kv): pass a layout
        return fan_normal("query", lambda fi, fo: f2 / (fi * d_kv))(key, shape, dtype)

    return init


def deepnorm_constants(
    n_layers: int, *, n_decoder_layers: int | None = None, part: str = "decoder"
) -> tuple[float, float]:
    r"""DeepNorm's residual weight :math:`\alpha` and init gain :math:`\beta` (Wang et al. 2022).

    Encoder-only (``part="encoder"``, N = ``n_layers``): :math:`\alpha=(2N)^{1/4}`,
    :math:`\beta=(8N)^{-1/4}`; decoder-only (``part="decoder"``, M = ``n_layers``):
    :math:`\alpha=(2M)^{1/4}`, :math:`\beta=(8M)^{-1/4}`. Encoder-decoder (``n_decoder_layers``
    = M given): encoder :math:`\alpha=0.81(N^4M)^{1/16}`, :math:`\beta=0.87(N^4M)^{-1/16}`;
    decoder :math:`\alpha=(3M)^{1/4}`, :math:`\beta=(12M)^{-1/4}`. The block is
    ``x = LayerNorm(alpha * x + G(x))``.

    References:
      H. Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", arXiv:2203.00555, 2022
      (Table 1 / Figure 2).
    """
    check_number("deepnorm_constants", "n_layers", n_layers, positive=True)
    check_choice("deepnorm_constants", "part", part, ("encoder", "decoder"))
    n = n_layers
    if n_decoder_layers is None:
        return (2 * n) ** 0.25, (8 * n) ** -0.25
    check_number("deepnorm_constants", "n_decoder_layers", n_decoder_layers, positive=True)
    m = n_decoder_layers
    if part == "encoder":
        return 0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)
    return (3 * m) ** 0.25, (12 * m) ** -0.25


def deepnorm_init(
    n_layers: int,
    *,
    n_decoder_layers: int | None = None,
    part: str = "decoder",
    layout: Mapping[str, str] | None = None,
) -> list[tuple[str, Any]]:
    r"""DeepNorm init: Xavier normal with gain :math:`\beta` on value, attention output and FFN
    kernels, gain 1 on query and key (and every other kernel); biases 0.

    Xavier normal: :math:`\text{Var} = \text{gain}^2 \cdot 2/(\text{fan\_in}+\text{fan\_out})`.
    The model must apply :math:`\alpha` from :func:`deepnorm_constants` on the residual.

    References:
      H. Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", arXiv:2203.00555, 2022
      (Figure 2, ``deepnorm_init``).
    """
    _, beta = deepnorm_constants(n_layers, n_decoder_layers=n_decoder_layers, part=part)
    lay = _layout("deepnorm_init", layout)
    b = _xavier(beta)
    return _rules(
        lay,
        [
            ("value", b),
            ("attn_out", b),
            ("mlp_in", b),
            ("mlp_out", b),
            ("embed", lambda fi, fo: 1.0 / fo),  # the usual d^-1/2 embedding std
            ("kernel", _xavier(1.0)),
            ("bias", None),
        ],
    )


def tfixup_init(
    n_layers: int,
    d_model: int,
    *,
    part: str = "decoder",
    layout: Mapping[str, str] | None = None,
) -> list[tuple[str, Any]]:
    r"""T-Fixup (no LayerNorm, no warmup): Xavier everywhere, embeddings
    :math:`N(0, d^{-1})`, then value, attention output, MLP kernels and embeddings scaled by
    :math:`(9M)^{-1/4}` (decoder, M = ``n_layers``) or :math:`0.67 N^{-1/4}` (encoder).

    Xavier here is the normal version, :math:`2/(\text{fan\_in}+\text{fan\_out})`; the paper
    uses Xavier uniform, which has the same variance.

    References:
      X. S. Huang, F. Perez, J. Ba, M. Volkovs, "Improving Transformer Optimization Through
      Better Initialization", ICML 2020 (Sec. 3.2, Algorithm 1).
    """
    check_number("tfixup_init", "n_layers", n_layers, positive=True)
    check_number("tfixup_init", "d_model", d_model, positive=True)
    check_choice("tfixup_init", "part", part, ("encoder", "decoder"))
    lay = _layout("tfixup_init", layout)
    s = (9 * n_layers) ** -0.25 if part == "decoder" else 0.67 * n_layers**-0.25
    b = _xavier(s)
    return _rules(
        lay,
        [
            ("value", b),
            ("attn_out", b),
            ("mlp_in", b),
            ("mlp_out", b),
            ("embed", _std(s / math.sqrt(d_model))),
            ("kernel", _xavier(1.0)),
            ("bias", None),
        ],
    )


def rezero_init(*, layout: Mapping[str, str] | None = None) -> list[tuple[str, Any]]:
    r"""ReZero / SkipInit: every residual-branch gain :math:`\alpha` (role ``gain``) is 0, so
    each block starts as the identity: :math:`x_{l+1} = x_l + \alpha_l F(x_l)`.

    The model must own the scalar gains (e.g. ``self.param("rezero", zeros, ())``).

    References:
      T. Bachlechner et al., "ReZero is All You Need: Fast Convergence at Large Depth",
      arXiv:2003.04887, 2020; S. De, S. L. Smith, "Batch Normalization Biases Residual Blocks
      Towards the Identity Function in Deep Networks" (SkipInit), arXiv:2002.10444, 2020.
    """
    lay = _layout("rezero_init", layout)
    return [(lay["gain"], zeros)]


def mimetic_attention(
    params: Any,
    key: jax.Array,
    *,
    alpha: tuple[float, float] = (0.7, 0.4),
    beta: tuple[float, float] = (0.7, 0.4),
    layout: Mapping[str, str] | None = None,
) -> Any:
    r"""Mimetic init of every attention layer: :math:`W_qW_k^\top \approx \alpha_1 Z_1 +
    \beta_1 I` per head and :math:`W_vW_o \approx \alpha_2 Z_2 - \beta_2 I`.

    :math:`Z_i` has i.i.d. :math:`N(0, 1/d)` entries. Each target is factorised by its SVD
    :math:`U S V^\top`, truncated to the kernels' rank: :math:`W_q = U\sqrt{S}`,
    :math:`W_k = V\sqrt{S}` (and likewise :math:`W_v`, :math:`W_o`). Works on Flax's
    ``(d, heads, head_dim)`` / ``(heads, head_dim, d)`` kernels and on 2-D ``(d, d_attn)``
    ones (one head). A layer's query/key/value/out kernels are found as siblings sharing a
    prefix; the key of each target is ``path_key(key, prefix + '/qk' or '/vo' + head)``.

    Returns:
      ``params`` with those kernels replaced (other leaves unchanged).

    Raises:
      ValueError: no attention layer found, or mismatched kernel shapes.

    References:
      A. Trockman, J. Z. Kolter, "Mimetic Initialization of Self-Attention Layers",
      arXiv:2305.09828, ICML 2023 (Sec. 3; alpha=beta=0.7 for QK, 0.4 for VO).
    """
    check_key("mimetic_attention", "key", key)
    lay = _layout("mimetic_attention", layout)
    flat = {path_string(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    prefixes = {}
    for p in flat:
        m = re.search(lay["query"], p)
        if m:
            prefixes[p[: m.start()]] = p
    if not prefixes:
        raise ValueError(
            f"mimetic_attention: no leaf matches the query pattern {lay['query']!r}; pass "
            "layout={'query': ..., 'key': ..., 'value': ..., 'attn_out': ...}"
        )
    new: dict[str, jax.Array] = {}
    for prefix in prefixes:

        def find(role, prefix=prefix):
            # siblings only: "<prefix><name>/kernel", not a deeper module's kernels
            hits = [
                p
                for p in flat
                if p.startswith(prefix)
                and p[len(prefix) :].lstrip("/").count("/") == 1
                and re.search(lay[role], p)
            ]
            if len(hits) != 1:
                raise ValueError(
                    f"mimetic_attention: expected one {role} kernel under {prefix!r}, found {hits}"
                )
            return hits[0]

        q, k, v, o = (find(r) for r in ("query", "key", "value", "attn_out"))
        wq, wk, wv, wo = flat[q], flat[k], flat[v], flat[o]
        d = wq.shape[0]
        wq3 = wq.reshape(d, 1, -1) if wq.ndim == 2 else wq
        heads, dh = wq3.shape[1], wq3.shape[2]
        qs, ks = [], []
        for h in range(heads):
            kk = path_key(key, f"{prefix}qk{h}")
            a, b = _factor(kk, d, dh, alpha[0], beta[0])
            qs.append(a)
            ks.append(b)
        new[q] = jnp.stack(qs, 1).reshape(wq.shape).astype(wq.dtype)
        new[k] = jnp.stack(ks, 1).reshape(wk.shape).astype(wk.dtype)
        r = math.prod(wv.shape[1:])
        a, b = _factor(path_key(key, f"{prefix}vo"), d, r, alpha[1], -beta[1])
        new[v] = a.reshape(wv.shape).astype(wv.dtype)
        new[o] = b.T.reshape(wo.shape).astype(wo.dtype)

    def visit(path, x):
        return new.get(path_string(path), x)

    return jax.tree_util.tree_map_with_path(visit, params)


def _factor(key, d: int, rank: int, a: float, b: float):
    """``(A, B)`` of shape ``(d, rank)`` with ``A B^T`` the best rank-``rank`` approximation of
    ``a Z + b I``, ``Z ~ N(0, 1/d)``."""
    z = jax.random.normal(key, (d, d), jnp.float32) / math.sqrt(d)
    u, s, vt = jnp.linalg.svd(a * z + b * jnp.eye(d), full_matrices=False)
    r = min(rank, d)
    root = jnp.sqrt(s[:r])
    ua = jnp.zeros((d, rank)).at[:, :r].set(u[:, :r] * root)
    vb = jnp.zeros((d, rank)).at[:, :r].set(vt[:r].T * root)
    return ua, vb
