"""Gains: the std multiplier that keeps activations' second moment constant through a layer.

A layer ``y = W x`` with i.i.d. weights of variance ``g**2 / fan_in`` and inputs ``x = f(z)``,
``z ~ N(0, 1)``, has ``E[y**2] = g**2 * E[f(z)**2]``. The *variance-preserving* gain is
therefore ``g = 1 / sqrt(E[f(z)**2])`` (the second moment, not the variance, because ``f(z)``
need not have zero mean). :func:`calculate_gain` returns PyTorch's table for PyTorch's names
(so ported code reproduces PyTorch exactly) and this computed gain for everything else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from jinit._src.checks import check_int, check_number, is_static_scalar

__all__ = ["calculate_gain", "compute_gain", "GAIN_TABLE_NAMES", "COMPUTED_GAIN_NAMES"]

_ONE = (
    "linear",
    "identity",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
#: Names answered from PyTorch's ``torch.nn.init.calculate_gain`` table.
GAIN_TABLE_NAMES = (*_ONE, "tanh", "relu", "leaky_relu", "selu")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _gelu(x, _=None):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x, _=None):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _silu(x, _=None):
    return x / (1.0 + np.exp(-x))


def _elu(x, alpha=None):
    alpha = 1.0 if alpha is None else alpha
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _celu(x, alpha=None):
    alpha = 1.0 if alpha is None else alpha
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0) / alpha))


def _mish(x, _=None):
    return x * np.tanh(_softplus(x))


def _relu6(x, _=None):
    return np.clip(x, 0.0, 6.0)


def _hard_tanh(x, _=None):
    return np.clip(x, -1.0, 1.0)


def _softsign(x, _=None):
    return x / (1.0 + np.abs(x))


_COMPUTED: dict[str, Callable[..., np.ndarray]] = {
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "swish": _silu,
    "elu": _elu,
    "celu": _celu,
    "softplus": lambda x, _=None: _softplus(x),
    "mish": _mish,
    "relu6": _relu6,
    "hard_tanh": _hard_tanh,
    "softsign": _softsign,
}
# Kinks (discontinuous derivatives): integrated piecewise for full float64 accuracy.
_BREAKPOINTS = {
    "elu": (0.0,),
    "celu": (0.0,),
    "relu6": (0.0, 6.0),
    "hard_tanh": (-1.0, 1.0),
    "softsign": (0.0,),
}
#: Names whose gain is computed by quadrature of ``E[f(z)**2]`` (Gauss-Hermite, or piecewise
#: Gauss-Legendre for activations with kinks).
COMPUTED_GAIN_NAMES = tuple(_COMPUTED)


@functools.cache
def _hermgauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite.hermgauss(n)
    # E[g(z)], z ~ N(0, 1) = (1/sqrt(pi)) sum_i w_i g(sqrt(2) x_i)
    return np.sqrt(2.0) * x, w / np.sqrt(np.pi)


@functools.cache
def _piecewise_legendre(n: int, breakpoints: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/weights with sum(w * g(z)) ~= E[g(z)], Gauss-Legendre on each piece of [-L, L]."""
    edges = sorted({-_TAIL, _TAIL, *(b for b in breakpoints if -_TAIL < b < _TAIL)})
    x, w = np.polynomial.legendre.leggauss(n)
    zs, ws = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        z = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        zs.append(z)
        ws.append(0.5 * (hi - lo) * w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    return np.concatenate(zs), np.concatenate(ws)


_TAIL = 14.0  # P(|z| > 14) ~ 1e-44: negligible for any activation of polynomial growth


def second_moment(
    fn: Callable[[Any], Any],
    num_points: int = 100,
    breakpoints: tuple[float, ...] | None = None,
) -> float:
    r"""``E[f(z)**2]`` for ``z ~ N(0, 1)`` by Gaussian quadrature.

    Default (``breakpoints=None``): Gauss--Hermite,

    .. math:: E[f(z)^2] \approx \frac{1}{\sqrt\pi}\sum_{i=1}^{N} w_i\, f(\sqrt2\, x_i)^2,

    exact for polynomials of degree < 2N and spectrally accurate for smooth activations (GELU,
    SiLU, softplus, tanh); ReLU is exact too (symmetric nodes). For activations whose
    derivatives jump (ELU: second derivative at 0, ~2e-5 relative error with Gauss--Hermite),
    pass the kinks as ``breakpoints``: the integral is then split there and each piece of
    ``[-14, 14]`` is integrated with ``num_points`` Gauss--Legendre nodes (error ~1e-15).

    Args:
      fn: elementwise activation; called once on a float64 NumPy array (JAX functions work).
      num_points: quadrature nodes (per piece), 2..300.
      breakpoints: points where ``fn`` or its derivatives are discontinuous.

    Returns:
      The second moment as a Python float.

    Raises:
      ValueError: if ``num_points`` is out of range or ``fn`` returns non-finite values.
    """
    if not callable(fn):
        raise TypeError(f"second_moment: fn must be a callable activation, got {fn!r}")
    num_points = check_int("second_moment", "num_points", num_points, minimum=2)
    if num_points > 300:
        raise ValueError(f"second_moment: num_points must be in 2..300, got {num_points!r}")
    if breakpoints is None:
        z, w = _hermgauss(num_points)
    else:
        for b in breakpoints:
            check_number("second_moment", "breakpoints", b)
        z, w = _piecewise_legendre(num_points, tuple(float(b) for b in breakpoints))
    y = np.asarray(fn(z), dtype=np.float64)
    if y.shape != z.shape or not np.all(np.isfinite(y)):
        raise ValueError(f"activation {fn!r} must map a float64 array elementwise to finite values")
    return float(np.sum(w * y * y))


def compute_gain(
    fn: Callable[[Any], Any],
    num_points: int = 100,
    breakpoints: tuple[float, ...] | None = None,
) -> float:
    r"""Variance-preserving gain of any activation: :math:`g = 1/\sqrt{E[f(z)^2]}`.

    With weights of variance :math:`g^2/\text{fan\_in}` a layer maps inputs ``f(z)``,
    ``z ~ N(0, 1)``, to pre-activations of unit variance. Examples: ReLU gives
    :math:`\sqrt2` (He), identity 1, ``tanh`` 1.5925 (PyTorch's table uses 5/3), exact GELU
    1.5335, SiLU 1.6765, ELU 1.2452, softplus 1.0419.

    Args:
      fn: elementwise activation, e.g. ``jax.nn.gelu`` or a NumPy function.
      num_points: quadrature nodes (see :func:`second_moment`).
      breakpoints: kinks of ``fn`` (e.g. ``(0.0,)`` for ELU); None uses Gauss--Hermite.

    Returns:
      The gain as a Python float.

    Raises:
      ValueError: if the second moment is zero or not finite.

    References:
      He et al., "Delving Deep into Rectifiers", arXiv:1502.01852, 2015 (the second-moment
      argument, Eq. 7-10). Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)",
      arXiv:1606.08415, 2016.
    """
    m2 = second_moment(fn, num_points, breakpoints)
    if not m2 > 0:
        raise ValueError(f"activation {fn!r} has E[f(z)^2] = {m2}; no finite gain exists")
    return 1.0 / math.sqrt(m2)


def calculate_gain(nonlinearity: str | Callable[[Any], Any], param: float | None = None) -> float:
    r"""Recommended gain for an activation (PyTorch's ``calculate_gain`` plus computed gains).

    ====================================================  ==============================
    nonlinearity                                          gain
    ====================================================  ==============================
    linear, identity, conv{1,2,3}d, conv_transpose*, sigmoid  1
    tanh                                                  5/3
    relu                                                  :math:`\sqrt{2}`
    leaky_relu (``param`` = slope a, default 0.01)        :math:`\sqrt{2/(1+a^2)}`
    selu                                                  3/4
    gelu, gelu_tanh, silu/swish, elu/celu (``param`` =    :math:`1/\sqrt{E[f(z)^2]}`,
    alpha), softplus, mish, relu6, hard_tanh, softsign,    Gauss--Hermite (see
    or any callable                                       :func:`compute_gain`)
    ====================================================  ==============================

    The table rows are PyTorch's values verbatim, so ``torch_*`` presets reproduce PyTorch;
    note they are not all variance-preserving (``tanh``: 5/3 vs the computed 1.5925).

    SELU: PyTorch's 3/4 was chosen empirically for ``kaiming_normal_``-style use; the
    self-normalizing property of Klambauer et al. requires LeCun normal weights, i.e. gain 1
    with ``mode='fan_in'`` (:func:`jinit.lecun_normal`), *not* 3/4.

    Args:
      nonlinearity: a name from the table (case-insensitive) or an elementwise callable.
      param: leaky-ReLU slope for ``'leaky_relu'``, alpha for ``'elu'``/``'celu'``.

    Returns:
      The gain as a Python float.

    Raises:
      ValueError: for an unknown name (lists the valid names) or a ``param`` for a name that
        takes none; ``param`` must be a finite number (bools are rejected, as in PyTorch),
        >= 0 for a leaky-ReLU slope and > 0 for an ELU/CELU alpha.

    References:
      PyTorch ``torch.nn.init.calculate_gain``. He et al., arXiv:1502.01852, 2015.
      Klambauer et al., "Self-Normalizing Neural Networks", arXiv:1706.02515, 2017.
    """
    if callable(nonlinearity):
        if param is not None:
            raise ValueError("param is not used with a callable nonlinearity")
        return compute_gain(nonlinearity)
    if not isinstance(nonlinearity, str):
        raise TypeError(
            f"calculate_gain: nonlinearity must be a str or callable, got {nonlinearity!r}"
        )
    name = nonlinearity.lower()
    if param is not None and (isinstance(param, bool) or not is_static_scalar(param)):
        raise ValueError(f"calculate_gain: param must be a number, got {param!r}")
    if param is not None:
        # A slope may be 0 (ReLU) or > 1 (PyTorch's default sqrt(5)); an ELU alpha must be > 0.
        check_number(
            "calculate_gain", "param", param, nonnegative=True, positive=name in ("elu", "celu")
        )
    if name in _ONE:
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        a = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + a * a))
    if name == "selu":
        return 3.0 / 4.0
    if name in _COMPUTED:
        if param is not None and name not in ("elu", "celu"):
            raise ValueError(f"nonlinearity {name!r} takes no param, got {param!r}")
        f = _COMPUTED[name]
        return compute_gain(lambda x: f(x, param), breakpoints=_BREAKPOINTS.get(name))
    valid = ", ".join(map(repr, GAIN_TABLE_NAMES + COMPUTED_GAIN_NAMES))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid names are {valid}")
