"""MetaInit: tune each weight tensor's norm by signSGD on the gradient quotient.

Yann N. Dauphin and Samuel S. Schoenholz, "MetaInit: Initializing learning by learning to
initialize", NeurIPS 2019. Defaults follow the paper's reference (Algorithm 1 and its PyTorch
listing; also github google/init2winit ``meta_init``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.checks import check_choice, check_int, check_number
from jinit._src.dynamic import engine
from jinit._src.dynamic.report import MetaInitReport

FN = "metainit"


HVPS = ("forward", "reverse")


def gradient_quotient(loss_at, leaves, batch, eps, hvp="forward"):
    r"""The gradient quotient :math:`GQ = \frac1N\sum_i |(g - Hg)_i/(g_i + \epsilon_i) - 1|`.

    :math:`g` the gradient, :math:`Hg` the Hessian-vector product (``jax.jvp`` of
    ``jax.grad``, or with ``hvp="reverse"`` the gradient of :math:`\|g\|^2/2`, for models
    with ``jax.custom_vjp`` parts, which forward mode cannot differentiate),
    :math:`\epsilon_i = \epsilon\,\mathrm{sign}(g_i)` (held constant),
    :math:`N` the number of parameters (every trainable leaf). Returns ``(GQ, loss, |g|_2)``.
    """
    grad = jax.grad(loss_at)
    loss = loss_at(leaves, batch)
    g = grad(leaves, batch)
    if hvp == "forward":
        hg = jax.jvp(lambda ls: grad(ls, batch), (leaves,), (g,))[1]
    else:
        half_sq = lambda ls: 0.5 * sum(jnp.sum(jnp.square(x)) for x in grad(ls, batch))
        hg = jax.grad(half_sq)(leaves)
    total, n = 0.0, 0
    for gi, hi in zip(g, hg, strict=True):
        gi, hi = gi.astype(jnp.float32), hi.astype(jnp.float32)
        e = jax.lax.stop_gradient(eps * jnp.where(gi >= 0, 1.0, -1.0))
        total = total + jnp.sum(jnp.abs((gi - hi) / (gi + e) - 1.0))
        n += gi.size
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in g))
    return total / n, (loss, gnorm)


@dataclasses.dataclass(frozen=True)
class _Config:
    lr: float
    momentum: float
    eps: float
    iters: int
    hvp: str = "forward"
    name: str = FN

    def _gq(self, env, alpha):
        return gradient_quotient(env.loss_at, env.scale(alpha), env.data, self.eps, self.hvp)

    def init(self, env):
        n = len(env.index)
        return jnp.ones((n,), jnp.float32), jnp.zeros((n,), jnp.float32)

    def step(self, carry, env):
        alpha, memory = carry
        (gq, (loss, gnorm)), ga = jax.value_and_grad(lambda a: self._gq(env, a), has_aux=True)(
            alpha
        )
        # signSGD with momentum on each tensor's norm ||w|| = alpha * ||w0||; the sign of
        # d GQ / d||w|| is the sign of d GQ / d alpha.
        memory = self.momentum * memory - self.lr * jnp.sign(ga)
        norms = env.norms
        safe = jnp.where(norms > 0, norms, 1.0)
        alpha = jnp.where(norms > 0, alpha + memory / safe, alpha)
        rec = {"alpha": alpha, "grad": ga, "loss": loss, "grad_norm": gnorm, "quotient": gq}
        return (alpha, memory), rec

    def finish(self, carry, env):
        alpha, _ = carry
        return self._gq(env, alpha)[0]


def _is_weight(path: str, leaf: Any) -> bool:
    return np.ndim(leaf) >= 2


def metainit(
    model: Any,
    params: Any,
    batch: Any,
    loss_fn: Any,
    *,
    per_iteration: bool = False,
    input_key: str | int | None = None,
    rngs: Any = None,
    apply_kwargs: Any = None,
    include: str | re.Pattern | None = None,
    steps: int = 500,
    lr: float = 0.1,
    momentum: float = 0.9,
    eps: float = 1e-5,
    hvp: str = "forward",
    loop: str | None = None,
    jit: bool = True,
) -> tuple[Any, MetaInitReport]:
    r"""MetaInit: rescales each weight tensor to lower the gradient quotient on ``batch``.

    The gradient quotient :math:`GQ(\theta) = \frac1N \| (g - Hg)/(g + \epsilon) - 1 \|_1`
    (:math:`g` the gradient, :math:`H` the Hessian, :math:`\epsilon` signed like :math:`g`)
    is 0 when one gradient step would leave the gradient unchanged: the loss is locally
    linear, neither curving the step away nor exploding. Each step takes the sign of
    :math:`\partial GQ / \partial \|w_j\|` for every selected tensor :math:`w_j`, and moves its
    norm by signSGD with momentum: :math:`m \leftarrow \mu m - \eta\,\mathrm{sign}(\cdot)`,
    :math:`\|w_j\| \leftarrow \|w_j\| + m` (the direction of :math:`w_j` is kept). GQ needs a
    Hessian-vector product (``jax.jvp`` of ``jax.grad``), so a step costs about 4 forward
    passes plus their backward passes. :math:`GQ` averages over every trainable parameter.

    The paper's listing draws a new batch of random Gaussian inputs and random labels at
    every step ("without data"; init2winit's ``meta_init`` likewise folds the step into its
    batch key, and the GradInit repository's ``metainit`` takes the next loader batch). Here
    the batch is whatever you pass (real data, or ``jax.random.normal`` inputs): by default
    one batch for every step; with ``per_iteration=True`` a leading axis of length ``steps``
    gives step ``t`` its own ``batch[t]``, as the references do. The norm update is the reference's, in absolute units (``lr`` is added to a
    norm), so the multiplier can reach 0 or below for a tensor of small norm: that is warned.

    Args:
      model: as in :func:`jinit.gradinit` (linen, NNX module or GraphDef, or apply_fn).
      params: the parameters whose tensors are rescaled (as in :func:`jinit.gradinit`).
      batch: a pytree of arrays with a leading example axis (>= 1 example), the same for
        every step; with ``per_iteration=True`` shape ``(steps, examples, ...)`` per leaf.
      per_iteration: ``batch`` holds one batch per step along a leading axis of length
        ``steps`` (default ``False``). ``quotient_after`` is then measured on ``batch[0]``,
        like ``quotient[0]``.
      loss_fn: ``loss_fn(outputs, batch) -> float scalar``.
      input_key: which entry of the batch holds the model inputs.
      rngs: linen ``rngs`` (``{"dropout": key}``), the same in every step.
      apply_kwargs: extra model-call arguments (``{"train": True, "mutable":
        ["batch_stats"]}`` for BatchNorm in train mode).
      include: regex on ``jinit.path_string`` paths selecting the tensors whose norm is
        tuned. Default ``None``: every parameter with >= 2 dimensions (the reference tunes
        weight matrices and conv kernels, not biases or norm scales).
      steps: number of signSGD steps (reference: 500).
      lr: the norm's step size :math:`\eta` (reference: 0.1).
      momentum: :math:`\mu` (reference: 0.9).
      eps: :math:`\epsilon` of the quotient (reference: 1e-5).
      loop: ``"scan"``, ``"python"`` or ``None`` (the rule of :func:`jinit.gradinit`).
      jit: compile (default) or run eagerly; same numbers.
      hvp: how :math:`Hg` is computed: ``"forward"`` (default; ``jax.jvp`` of ``jax.grad``,
        the cheaper) or ``"reverse"`` (``jax.grad`` of :math:`\|g\|^2/2`, the reference's
        way; needed when the model has ``jax.custom_vjp`` functions). Same values.

    Returns:
      ``(params, report)``: each selected tensor exactly ``multiplier * tensor``, every other
      leaf unchanged; a :class:`jinit.MetaInitReport`.

    Raises:
      ValueError: a bad argument, an empty batch, no block matched, a loss that is not a float
        scalar, all-zero gradients at the start, or non-finite values (the first block and
        step named; under an outer ``jit``/``vmap`` call ``report.check()``).
      TypeError: a bad argument type.

    Warns:
      jinit.InitWarning: the gradient quotient did not decrease, or a multiplier reached 0 or
        below (the tensor is named).

    References:
      Dauphin & Schoenholz, "MetaInit: Initializing learning by learning to initialize",
      NeurIPS 2019.
    """
    steps = check_int(FN, "steps", steps)
    check_number(FN, "lr", lr, positive=True)
    check_number(FN, "momentum", momentum, nonnegative=True)
    if isinstance(momentum, int | float) and not momentum < 1:
        raise ValueError(f"{FN}: momentum must be in [0, 1), got {momentum!r}")
    check_number(FN, "eps", eps, positive=True)
    check_choice(FN, "hvp", hvp, HVPS)
    if not isinstance(jit, bool):
        raise TypeError(f"{FN}: jit must be True or False, got {jit!r}")
    pattern = engine.compile_include(FN, include)
    if not isinstance(per_iteration, bool):
        raise TypeError(f"{FN}: per_iteration must be True or False, got {per_iteration!r}")
    batch0 = (
        engine.check_per_iteration(FN, "batch", batch, steps, "steps") if per_iteration else batch
    )
    model, params, nnx_module, frozen, apply, p0, merge, x = engine.prepare(
        FN, model, params, batch0, loss_fn, input_key, rngs, apply_kwargs
    )
    engine.check_batch(FN, "batch", batch0, input_key)
    engine.check_loss(FN, apply, p0, batch0, x, loss_fn)
    blocks = engine.Blocks(
        FN, apply, p0, x, pattern, _is_weight, "the default (every parameter with ndim >= 2)"
    )
    cfg = _Config(float(lr), float(momentum), float(eps), steps, hvp)
    spec = engine.Spec(model, loss_fn, frozen, input_key, tuple(blocks.index), cfg, per_iteration)
    leaves = jax.tree_util.tree_leaves(p0)
    run_loop = engine.choose_loop(loop, leaves, FN)
    (alpha, _), recs, gq_after = engine.run_program(spec, params, batch, rngs, run_loop, jit)
    settings = (
        ("lr", float(lr)),
        ("momentum", float(momentum)),
        ("eps", float(eps)),
        ("steps", steps),
        ("hvp", hvp),
        ("per_iteration", per_iteration),
        ("loop", run_loop),
    )
    report = MetaInitReport(
        method=FN,
        paths=blocks.paths,
        settings=settings,
        multiplier=alpha,
        trajectory=recs["alpha"],
        multiplier_grad=recs["grad"],
        loss=recs["loss"],
        grad_norm=recs["grad_norm"],
        quotient=recs["quotient"],
        quotient_after=gq_after,
    )
    out = engine.rebuild(p0, merge, nnx_module, blocks.index, alpha)
    if not engine.is_traced((alpha, recs)):
        _check(report)
    return out, report


def _check(report: MetaInitReport) -> None:
    engine.check_gradient_at_start(FN, report.grad_norm)
    report.check()
    report.warn(stacklevel=4)  # warn, _check, metainit, its caller
