"""Initializer recommendations computed from the activation, and the edge-of-chaos initializer.

The usual advice (He for ReLU, Glorot for tanh, LeCun for SELU, orthogonal or LSUV when very
deep) follows from two computed quantities: the variance-preserving gain
``1 / sqrt(E[phi(z)**2])`` and the critical point ``chi_1 = 1`` of mean-field theory
(:mod:`jinit.theory`). :func:`recommend` computes both and says which one it picked and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import gains, theory
from jinit._src import initializers as inits
from jinit._src.checks import check_int, check_number

#: Klambauer et al. (2017) SELU constants (the self-normalizing fixed point mean 0, var 1).
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
#: Schoenholz et al. (2017): random networks train up to about this many xi_c layers.
TRAINABLE_DEPTH_PER_XI_C = 6.0
#: From this depth on, :func:`recommend` adds the notes on orthogonal weights and LSUV.
DEEP = 30
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "orthogonal")
_NORMALIZATIONS = (None, "batch", "layer")


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """An initializer and the reasons for it.

    Attributes:
      activation: the activation's name.
      name: the kernel initializer in words, e.g. ``"variance_scaling(2, 'fan_in', 'normal')
        (He)"``.
      kernel_init: the kernel initializer (``init(key, shape, dtype=None)``).
      bias_init: the bias initializer.
      sigma_w: kernel std times sqrt(fan_in) (the mean-field sigma_w).
      sigma_b: bias std.
      variance_preserving_gain: ``1 / sqrt(E[phi(z)**2])``, z ~ N(0, 1).
      critical_sigma_w: sigma_w with chi_1 = 1 at this sigma_b, or None if there is none.
      chi_1: chi_1 at the recommended point (1 at the edge of chaos).
      xi_c: the correlation depth scale there (inf at the edge of chaos).
      rationale: why, with the numbers.
      notes: advice on depth and normalization.
    """

    activation: str
    name: str
    kernel_init: Callable[..., jax.Array]
    bias_init: Callable[..., jax.Array]
    sigma_w: float
    sigma_b: float
    variance_preserving_gain: float
    critical_sigma_w: float | None
    chi_1: float
    xi_c: float
    rationale: str
    notes: tuple[str, ...] = ()


def _kernel_init(sigma_w: float, distribution: str):
    if distribution == "orthogonal":
        return inits.orthogonal(scale=sigma_w)
    return inits.variance_scaling(sigma_w**2, "fan_in", distribution)


def _bias_init(sigma_b: float):
    return inits.normal(stddev=sigma_b) if sigma_b > 0 else inits.zeros()


def _init_name(sigma_w: float, distribution: str) -> str:
    if distribution == "orthogonal":
        return f"orthogonal(scale={sigma_w:.4g})"
    scale = sigma_w**2
    family = {2.0: "he", 1.0: "lecun"}.get(round(scale, 4))
    if family and distribution == "truncated_normal":
        return f"{family}_normal"
    label = {"he": " (He)", "lecun": " (LeCun)"}.get(family, "")
    return f"variance_scaling({scale:.4g}, 'fan_in', '{distribution}'){label}"


def _activation_name(activation) -> str:
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None) or getattr(
        getattr(activation, "func", None), "__name__", "activation"
    )


def _is_selu(activation) -> bool:
    return activation == "selu" or activation is jax.nn.selu


def _positively_homogeneous(phi) -> bool:
    z = np.array([-2.3, -0.7, -0.1, 0.2, 0.9, 3.1], np.float32)
    return bool(
        np.allclose(
            np.asarray(phi(jnp.asarray(2.0 * z))),
            2.0 * np.asarray(phi(jnp.asarray(z))),
            rtol=1e-5,
            atol=1e-6,
        )
    )


def _check_choice(arg, value, choices):
    if value not in choices:
        raise ValueError(f"{arg} must be one of {choices}, got {value!r}")  # names arg and value


def edge_of_chaos(
    activation: theory.Activation,
    sigma_b: float = 0.0,
    *,
    distribution: str = "normal",
    **activation_kwargs: Any,
):
    """Kernel and bias initializers at the critical point chi_1 = 1 for a given sigma_b.

    ``W ~ N(0, sigma_w*^2 / fan_in)`` with ``sigma_w* = critical_sigma_w(activation, sigma_b)``
    and ``b ~ N(0, sigma_b**2)``. At this point the correlation depth scale xi_c diverges and
    gradients neither vanish nor explode geometrically with depth. tanh at sigma_b = 0 gives
    sigma_w* = 1 (LeCun); ReLU gives sqrt(2) (He) for every sigma_b, with an infinite q* when
    sigma_b > 0 (so prefer sigma_b = 0 for ReLU).

    Args:
      activation: name (see :func:`jinit.theory.activation_fn`) or elementwise callable.
      sigma_b: bias standard deviation (>= 0).
      distribution: ``"normal"`` (the theory's assumption), ``"truncated_normal"``,
        ``"uniform"`` (same variance) or ``"orthogonal"`` (``sigma_w*`` times an orthogonal
        matrix: dynamical isometry for sigmoidal activations, Pennington et al. 2017).
      **activation_kwargs: bound to the activation (e.g. ``negative_slope=0.2``).

    Returns:
      ``(kernel_init, bias_init)``.

    Raises:
      ValueError: for a negative sigma_b, an unknown distribution, or an activation without a
        critical point at this sigma_b.

    References:
      Schoenholz, Gilmer, Ganguli, Sohl-Dickstein. Deep information propagation.
      arXiv:1611.01232, 2017.
      Pennington, Schoenholz, Ganguli. Resurrecting the sigmoid in deep learning through
      dynamical isometry: theory and practice. arXiv:1711.04735, 2017.
    """
    check_number("edge_of_chaos", "sigma_b", sigma_b, nonnegative=True)
    _check_choice("distribution", distribution, _DISTRIBUTIONS)
    phi = theory.activation_fn(activation, **activation_kwargs)
    sigma_w = _critical(phi, sigma_b)
    if sigma_w is None:
        raise ValueError(
            f"{_activation_name(activation)} has no critical point (chi_1 = 1 with a finite q*) "
            f"at sigma_b = {sigma_b}"
        )
    return _kernel_init(sigma_w, distribution), _bias_init(sigma_b)


def _critical(phi, sigma_b: float) -> float | None:
    point = theory.critical_point(phi, sigma_b)
    sigma_w, q = float(point["sigma_w"]), float(point["q_star"])
    if not (math.isfinite(sigma_w) and sigma_w > 0):
        return None
    if q > 0.5e6 and not _positively_homogeneous(phi):  # hit the bracket: no finite q*
        return None
    return sigma_w


def recommend(
    activation: theory.Activation,
    *,
    sigma_b: float = 0.0,
    depth: int | None = None,
    normalization: str | None = None,
    distribution: str = "normal",
    **activation_kwargs: Any,
) -> Recommendation:
    """Recommends a kernel/bias initializer for an activation, with its rationale.

    Rules, in order:

    1. SELU: LeCun (sigma_w = 1, no bias). With mean-0, variance-1 inputs the SELU constants
       lambda ~= 1.0507, alpha ~= 1.6733 make (mean 0, variance 1) an attracting fixed point
       of every layer (Klambauer et al. 2017).
    2. Positively homogeneous activations (ReLU, leaky ReLU, linear): the variance-preserving
       gain ``1 / sqrt(E[phi(z)**2])`` (He: sqrt(2) for ReLU, sqrt(2 / (1 + a**2)) for leaky
       ReLU). For these it is also the critical point: ``E[phi'(z)**2] = E[phi(z)**2]``.
    3. Otherwise the edge of chaos at ``sigma_b`` (chi_1 = 1, where trainable depth diverges),
       when it exists; else the variance-preserving gain. For tanh at sigma_b = 0 this is
       sigma_w = 1, i.e. LeCun, which equals Glorot for square layers; the variance-preserving
       gain (1.59) would be chaotic (chi_1 = 1.18).

    Args:
      activation: name (see :func:`jinit.theory.activation_fn`) or elementwise callable.
      sigma_b: bias standard deviation for rule 3 (rules 1 and 2 use zero biases).
      depth: number of layers, for the depth notes.
      normalization: ``None``, ``"batch"`` or ``"layer"``, for the normalization note.
      distribution: ``"normal"``, ``"truncated_normal"``, ``"uniform"`` or ``"orthogonal"``.
      **activation_kwargs: bound to the activation (e.g. ``negative_slope=0.2``).

    Returns:
      A :class:`Recommendation`.

    Raises:
      ValueError: for a negative sigma_b, a depth < 1, or an unknown distribution or
        normalization.

    References:
      He, Zhang, Ren, Sun. Delving deep into rectifiers. arXiv:1502.01852, 2015.
      Klambauer, Unterthiner, Mayr, Hochreiter. Self-normalizing neural networks.
      arXiv:1706.02515, 2017.
      Schoenholz, Gilmer, Ganguli, Sohl-Dickstein. Deep information propagation.
      arXiv:1611.01232, 2017.
      Pennington, Schoenholz, Ganguli. Resurrecting the sigmoid in deep learning through
      dynamical isometry. arXiv:1711.04735, 2017.
      Mishkin, Matas. All you need is a good init (LSUV). arXiv:1511.06422, 2015.
    """
    check_number("recommend", "sigma_b", sigma_b, nonnegative=True)
    if depth is not None:
        check_int("recommend", "depth", depth, minimum=1)
    _check_choice("distribution", distribution, _DISTRIBUTIONS)
    _check_choice("normalization", normalization, _NORMALIZATIONS)
    name = _activation_name(activation)
    phi = theory.activation_fn(activation, **activation_kwargs)
    m2 = float(theory.second_moment(phi))
    gain = gains.compute_gain(phi)
    critical = _critical(phi, sigma_b)

    if _is_selu(activation):
        sigma_w, bias = 1.0, 0.0
        moments = theory.post_activation_moments(phi, 1.0)
        rationale = (
            f"LeCun normal for SELU: with sigma_w = 1 and unit-variance inputs, "
            f"E[selu(z)] = {float(moments['mean']):.2g} and E[selu(z)**2] = {m2:.4f}, so mean 0 "
            f"and variance 1 is the layer's fixed point (lambda = {SELU_LAMBDA:.4f}, alpha = "
            f"{SELU_ALPHA:.4f}), and it attracts nearby means and variances. Inputs must be "
            "standardized; use alpha-dropout, not dropout."
        )
    elif _positively_homogeneous(phi):
        sigma_w, bias = gain, 0.0
        rationale = (
            f"variance-preserving gain for {name}: sigma_w**2 = 1/E[phi(z)**2] = {gain**2:.4g} "
            "keeps E[h**2] constant through every layer; for a positively homogeneous "
            "activation this is also the critical point chi_1 = 1, so gradients keep their "
            "norm too."
        )
    elif critical is not None:
        sigma_w, bias = critical, sigma_b
        chi_gain = float(theory.chi_1(phi, gain, sigma_b))
        q_crit = float(theory.critical_point(phi, sigma_b)["q_star"])
        q_text = "q* -> 0" if q_crit < 1e-6 else f"q* = {q_crit:.3g}"
        rationale = (
            f"edge of chaos for {name} at sigma_b = {sigma_b:g}: sigma_w = {critical:.4g} gives "
            f"chi_1 = 1 ({q_text}), where the correlation depth scale diverges and "
            f"gradients neither vanish nor explode with depth. The variance-preserving gain "
            f"{gain:.4g} would give chi_1 = {chi_gain:.3g}."
        )
        if abs(critical - 1.0) < 1e-3:
            rationale += " sigma_w = 1 is LeCun normal, and equals glorot_normal for square layers."
    else:
        sigma_w, bias = gain, 0.0
        rationale = (
            f"variance-preserving gain for {name}: sigma_w**2 = 1/E[phi(z)**2] = {gain**2:.4g}; "
            f"{name} has no critical point at sigma_b = {sigma_b:g}."
        )

    if critical is not None and abs(sigma_w - critical) < 1e-6:
        chi, xi_c = 1.0, math.inf  # on the critical line (the iterated q* converges slowly there)
    else:
        point = theory.mean_field(phi, sigma_w, bias)
        chi, xi_c = float(point["chi_1"]), float(point["xi_c"])
    notes = []
    if depth is not None:
        if math.isfinite(xi_c) and depth > TRAINABLE_DEPTH_PER_XI_C * xi_c:
            notes.append(
                f"depth {depth} exceeds ~{TRAINABLE_DEPTH_PER_XI_C:g} xi_c = "
                f"{TRAINABLE_DEPTH_PER_XI_C * xi_c:.3g} layers (chi_1 = {chi:.3g}), beyond which "
                "Schoenholz et al. find random networks untrainable; move to the critical line."
            )
        if depth >= DEEP:
            notes.append(
                f"at depth {depth}, criticality fixes the mean squared singular value of the "
                "input-output Jacobian but not its spread: orthogonal kernels at the critical "
                "point give dynamical isometry for tanh-like activations (Pennington et al. "
                "2017; distribution='orthogonal'); ReLU cannot be isometric with any weights. "
                "LSUV (jinit.lsuv) rescales each layer to unit output variance on real data."
            )
    if normalization == "batch":
        notes.append(
            "BatchNorm re-standardizes every pre-activation, so the forward scale of the init "
            "is reset at each layer; gradients at init still explode with depth in plain deep "
            "BatchNorm networks (Yang et al. 2019, arXiv:1902.08129): add residual connections "
            "and zero-initialize the last BatchNorm scale of each residual branch."
        )
    elif normalization == "layer":
        notes.append(
            "LayerNorm fixes each example's scale, so the init matters less for the forward "
            "signal; it still sets the relative size of residual branches (scale the last "
            "kernel of each branch down with depth, e.g. by 1/sqrt(depth))."
        )
    return Recommendation(
        activation=name,
        name=_init_name(sigma_w, distribution),
        kernel_init=_kernel_init(sigma_w, distribution),
        bias_init=_bias_init(bias),
        sigma_w=float(sigma_w),
        sigma_b=float(bias),
        variance_preserving_gain=float(gain),
        critical_sigma_w=critical,
        chi_1=chi,
        xi_c=xi_c,
        rationale=rationale,
        notes=tuple(notes),
    )
