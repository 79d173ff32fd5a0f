"""GradInit: learn one multiplier per parameter block so that the first optimizer step helps most.

Chen Zhu, Renkun Ni, Zheng Xu, Kezhi Kong, W. Ronny Huang, Tom Goldstein, "GradInit: Learning
to Initialize Neural Networks for Stable and Efficient Training", NeurIPS 2021,
arXiv:2102.08098. Defaults follow the reference implementation (github zhuchen03/gradinit,
``gradinit_utils.py``, ``gradinit_optimizers.py`` and ``launch/run_gradinit.sh``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jinit._src.checks import check_choice, check_int, check_number
from jinit._src.dynamic import engine
from jinit._src.dynamic.report import GradInitReport

FN = "gradinit"
OPTIMIZERS = ("sgd", "adam")
BIAS = re.compile(r"(^|/)bias$")


@dataclasses.dataclass(frozen=True)
class _Config:
    """The static settings (hashable: part of the jit cache key)."""

    optimizer: str
    lr: float
    gamma: float
    floors: tuple[float, ...]
    iters: int
    outer_lr: float
    betas: tuple[float, float]
    outer_eps: float
    grad_clip: float
    normalize_grad: bool
    differentiate_step: bool
    outer_optimizer: Any
    name: str = FN

    # ------------------------------------------------------------------ one iteration

    def _grads(self, env, alpha, batch):
        leaves = env.scale(alpha)
        loss, g = jax.value_and_grad(env.loss_at)(leaves, batch)
        return leaves, loss, g

    def _norm(self, g):
        if self.optimizer == "adam":  # the first Adam step is lr * sign(g): its l1 pairing
            return sum(jnp.sum(jnp.abs(x.astype(jnp.float32))) for x in g)
        return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in g))

    def _step(self, g, gnorm):
        if self.optimizer == "adam":
            return [self.lr * jnp.sign(x) for x in g]
        if self.normalize_grad:
            safe = jnp.where(gnorm > 0, gnorm, 1.0)  # zero gradient: no step, not NaN
            return [self.lr * x / safe.astype(x.dtype) for x in g]
        return [self.lr * x for x in g]

    def _lookahead(self, env, alpha, batch_b, step):
        """Loss on the lookahead batch after the simulated step from the scaled params."""
        leaves = env.scale(alpha)
        if step is None:  # differentiate through the step (second order)
            g = jax.grad(env.loss_at)(leaves, env.data[0])
            step = self._step(g, self._norm(g))
        new = [p - s.astype(p.dtype) for p, s in zip(leaves, step, strict=True)]
        return env.loss_at(new, batch_b)

    def init(self, env):
        n = len(env.index)
        zeros = jnp.zeros((n,), jnp.float32)
        alpha = jnp.ones((n,), jnp.float32)
        if self.outer_optimizer is not None:
            return alpha, self.outer_optimizer.init(alpha)
        # RescaleAdam: separate first moments for objective / constraint steps, one second.
        return alpha, (zeros, zeros, zeros, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def step(self, carry, env):
        alpha, opt = carry
        batch_a, batch_b = env.data
        _, loss, g = self._grads(env, alpha, batch_a)
        gnorm = self._norm(g)
        constrained = gnorm > self.gamma

        def gnorm_of(a):
            return self._norm(jax.grad(env.loss_at)(env.scale(a), batch_a))

        def constraint_branch(_):
            look = self._lookahead(env, alpha, batch_b, jax.lax.stop_gradient(self._step(g, gnorm)))
            return jax.grad(gnorm_of)(alpha), look

        def objective_branch(_):
            step = None if self.differentiate_step else jax.lax.stop_gradient(self._step(g, gnorm))
            look, ga = jax.value_and_grad(lambda a: self._lookahead(env, a, batch_b, step))(alpha)
            return ga / self.lr, look  # the reference minimizes lookahead loss / lr

        ga, look = jax.lax.cond(constrained, constraint_branch, objective_branch, None)
        alpha, opt = self._update(alpha, opt, ga, constrained)
        rec = {
            "alpha": alpha,
            "grad": ga,
            "loss": loss,
            "grad_norm": gnorm,
            "lookahead": look,
            "constrained": constrained,
        }
        return (alpha, opt), rec

    def _update(self, alpha, opt, ga, constrained):
        floors = jnp.asarray(self.floors, jnp.float32)
        clipped = jnp.clip(ga, -self.grad_clip, self.grad_clip) if self.grad_clip > 0 else ga
        clipped = jnp.where(jnp.isfinite(ga), clipped, ga)  # a NaN stays visible in the report
        if self.outer_optimizer is not None:
            updates, opt = self.outer_optimizer.update(clipped, opt, alpha)
            return jnp.maximum(optax.apply_updates(alpha, updates), floors), opt
        m_obj, m_cons, v, n_obj, n_cons = opt
        b1, b2 = self.betas
        n_obj = n_obj + jnp.where(constrained, 0, 1)
        n_cons = n_cons + jnp.where(constrained, 1, 0)
        m_obj = jnp.where(constrained, m_obj, b1 * m_obj + (1 - b1) * clipped)
        m_cons = jnp.where(constrained, b1 * m_cons + (1 - b1) * clipped, m_cons)
        v = b2 * v + (1 - b2) * jnp.square(clipped)
        m, n = jnp.where(constrained, m_cons, m_obj), jnp.where(constrained, n_cons, n_obj)
        bc1 = 1 - b1 ** n.astype(jnp.float32)
        bc2 = 1 - b2 ** (n_obj + n_cons).astype(jnp.float32)
        new = alpha - self.outer_lr / bc1 * m / (jnp.sqrt(v / bc2) + self.outer_eps)
        return jnp.maximum(new, floors), (m_obj, m_cons, v, n_obj, n_cons)

    def finish(self, carry, env):
        alpha, _ = carry
        _, _, g = self._grads(env, alpha, env.data[0])
        return self._norm(g)


def gradinit(
    model: Any,
    params: Any,
    batch: Any,
    loss_fn: Any,
    *,
    lookahead_batch: Any = None,
    per_iteration: bool = False,
    input_key: str | int | None = None,
    rngs: Any = None,
    apply_kwargs: Any = None,
    include: str | re.Pattern | None = None,
    optimizer: str = "sgd",
    lr: float = 0.1,
    gamma: float = 1.0,
    normalize_grad: bool = True,
    floor: float = 0.01,
    bias_floor: float = 0.0,
    iters: int = 390,
    outer_lr: float = 1e-2,
    outer_betas: tuple[float, float] = (0.9, 0.999),
    outer_eps: float = 1e-8,
    grad_clip: float = 1.0,
    outer_optimizer: optax.GradientTransformation | None = None,
    differentiate_step: bool = False,
    loop: str | None = None,
    jit: bool = True,
) -> tuple[Any, GradInitReport]:
    r"""GradInit: learns a multiplier :math:`\alpha_i \ge` ``floor`` per parameter block.

    Each iteration takes the parameters :math:`\alpha \odot \theta_0` and the gradient
    :math:`g` of the loss on the step batch :math:`S`. If :math:`\|g\| >` ``gamma`` it takes
    an outer step that lowers :math:`\|g\|` (l2 for SGD, l1 for Adam); otherwise it simulates
    one optimizer step, :math:`\theta' = \alpha\odot\theta_0 - \eta\,A[g]` with
    :math:`A[g] = g/\|g\|_2` (SGD, ``normalize_grad``), :math:`g` (SGD) or
    :math:`\mathrm{sign}(g)` (Adam's first step), and takes an outer step that lowers
    :math:`L(\tilde S;\theta')/\eta` on the lookahead batch :math:`\tilde S`. The outer
    optimizer is the reference's ``RescaleAdam`` (Adam on :math:`\alpha` with the gradient
    clipped to ``[-grad_clip, grad_clip]``, separate first moments for the two kinds of step),
    after which :math:`\alpha` is clamped to its floor. As in the reference, the simulated step
    is a constant for the outer gradient (``differentiate_step=True`` differentiates it too).

    Batches: the reference draws new mini-batches every iteration (its step batch is two
    fresh loader batches :math:`B_0 \cup B_1`, its lookahead batch :math:`B_0 \cup B_2` with a
    third fresh one). By default here one ``batch`` serves every iteration, its first half the
    step batch and its second half the lookahead batch (``lookahead_batch`` gives a separate
    one). With ``per_iteration=True`` every leaf of ``batch`` (and of ``lookahead_batch``)
    carries a leading iteration axis of length ``iters`` and iteration ``t`` uses ``batch[t]``
    (split into halves, or with ``lookahead_batch[t]``), consumed inside the same program; the
    reference's overlap is ``batch[t]`` = :math:`B_0 \cup B_1`, ``lookahead_batch[t]`` =
    :math:`B_0 \cup B_2`. The simulated step updates every trainable leaf, as training would;
    the gradient norm is over all of them.

    Args:
      model: a ``flax.linen.Module``, ``flax.nnx.Module``, ``nnx.GraphDef`` (with its state)
        or ``apply_fn(params, inputs)``; see ``jinit.lsuv``.
      params: the parameters (linen: ``params`` or the full variables; NNX module: ``None``
        or an ``nnx.State`` of its ``nnx.Param``); the initialization to rescale.
      batch: a pytree of arrays with a leading example axis (>= 2 examples without
        ``lookahead_batch``); the model inputs are picked by ``input_key``. With
        ``per_iteration=True``: shape ``(iters, examples, ...)`` per leaf.
      loss_fn: ``loss_fn(outputs, batch) -> float scalar`` (called on one iteration's batch).
      lookahead_batch: the batch :math:`\tilde S`; default: the second half of ``batch``.
        With ``per_iteration=True`` it has the leading iteration axis too.
      per_iteration: ``batch`` (and ``lookahead_batch``) hold one batch per iteration along
        a leading axis of length ``iters`` (default ``False``: one batch for all). The
        reported ``grad_norm_after`` is measured on iteration 0's step batch, like
        ``grad_norm[0]``.
      input_key: which entry of the batch holds the model inputs (see
        ``jinit.layer_statistics``).
      rngs: linen ``rngs`` (``{"dropout": key}``), the same in every iteration.
      apply_kwargs: extra model-call arguments, e.g. ``{"train": True, "mutable":
        ["batch_stats"]}`` for BatchNorm in train mode (updated statistics are dropped).
      include: regex (``re.search`` on ``jinit.path_string`` paths of the trainable params)
        selecting the blocks that get a multiplier. Default ``None``: every block (the
        reference scales every conv/linear/norm weight and bias).
      optimizer: ``"sgd"`` (default, the paper's CIFAR-10 VGG/ResNet runs) or ``"adam"``:
        the optimizer whose first step is simulated.
      lr: :math:`\eta`, the simulated step's learning rate (reference: 0.1).
      gamma: the gradient-norm bound :math:`\gamma` (reference launch scripts: 1).
      normalize_grad: SGD's simulated step is :math:`\eta g/\|g\|_2` (reference launch
        scripts: on).
      floor: the lower bound on a weight block's multiplier (reference: 0.01).
      bias_floor: the lower bound for blocks whose path ends in ``bias`` (reference: 0).
      iters: number of iterations (reference: 390, one CIFAR-10 epoch at batch 128).
      outer_lr: the outer Adam's learning rate :math:`\tau` (reference, VGG without BN: 1e-2).
      outer_betas: the outer Adam's :math:`(\beta_1, \beta_2)` (reference: (0.9, 0.999)).
      outer_eps: the outer Adam's epsilon (reference: 1e-8).
      grad_clip: clip of each multiplier's gradient (reference: 1; 0 disables).
      outer_optimizer: an optax transformation used instead of ``RescaleAdam`` (then the
        clamp to the floors still applies).
      differentiate_step: also differentiate the simulated step (off in the reference).
      loop: ``"scan"`` (one program) or ``"python"`` (a jitted step called per iteration).
        Default ``None``: ``"python"`` for a model with convolution kernels on CPU (where XLA
        convolutions in ``lax.scan`` lose their fast path: docs/dynamic.md), else ``"scan"``;
        always ``"scan"`` under an outer ``jit``/``vmap``.
      jit: compile (default) or run eagerly; same numbers.

    Returns:
      ``(params, report)``: ``params`` with the structure of the input (an NNX module gives
      an ``nnx.State`` of its params), each selected block exactly ``multiplier * block`` and
      every other leaf unchanged; a :class:`jinit.GradInitReport`.

    Raises:
      ValueError: a bad argument, an empty or one-example batch, no block matched, a loss
        that is not a float scalar, all-zero gradients at the start (the loss does not depend
        on the parameters), or non-finite values (naming the first block and iteration; not
        raised under an outer ``jit``/``vmap``: call ``report.check()``).
      TypeError: a bad argument type.

    Warns:
      jinit.InitWarning: a multiplier ended at its floor (the block is named).

    References:
      Zhu et al., "GradInit: Learning to Initialize Neural Networks for Stable and Efficient
      Training", NeurIPS 2021, arXiv:2102.08098.
    """
    check_choice(FN, "optimizer", optimizer, OPTIMIZERS)
    check_number(FN, "lr", lr, positive=True)
    check_number(FN, "gamma", gamma, positive=True)
    check_number(FN, "floor", floor, nonnegative=True)
    check_number(FN, "bias_floor", bias_floor, nonnegative=True)
    iters = check_int(FN, "iters", iters)
    check_number(FN, "outer_lr", outer_lr, positive=True)
    check_number(FN, "outer_eps", outer_eps, positive=True)
    check_number(FN, "grad_clip", grad_clip, nonnegative=True)
    if not (isinstance(outer_betas, tuple | list) and len(outer_betas) == 2) or not all(
        isinstance(b, int | float) and 0 <= b < 1 for b in outer_betas
    ):
        raise ValueError(f"{FN}: outer_betas must be two numbers in [0, 1), got {outer_betas!r}")
    for arg, v in (("normalize_grad", normalize_grad), ("differentiate_step", differentiate_step)):
        if not isinstance(v, bool):
            raise TypeError(f"{FN}: {arg} must be True or False, got {v!r}")
    if not isinstance(jit, bool):
        raise TypeError(f"{FN}: jit must be True or False, got {jit!r}")
    if outer_optimizer is not None and not isinstance(
        outer_optimizer, optax.GradientTransformation
    ):
        raise TypeError(
            f"{FN}: outer_optimizer must be an optax.GradientTransformation or None, got "
            f"{type(outer_optimizer).__name__}"
        )
    pattern = engine.compile_include(FN, include)
    if not isinstance(per_iteration, bool):
        raise TypeError(f"{FN}: per_iteration must be True or False, got {per_iteration!r}")
    batch0 = (
        engine.check_per_iteration(FN, "batch", batch, iters, "iters") if per_iteration else batch
    )
    model, params, nnx_module, frozen, apply, p0, merge, x = engine.prepare(
        FN, model, params, batch0, loss_fn, input_key, rngs, apply_kwargs
    )
    if lookahead_batch is None:
        engine.check_batch(FN, "batch", batch0, input_key, minimum=2)
        batch_a, batch_b = engine.halves(batch, axis=1 if per_iteration else 0)
    else:
        look0 = lookahead_batch
        if per_iteration:
            look0 = engine.check_per_iteration(
                FN, "lookahead_batch", lookahead_batch, iters, "iters"
            )
        engine.check_batch(FN, "batch", batch0, input_key)
        engine.check_batch(FN, "lookahead_batch", look0, input_key)
        batch_a, batch_b = batch, lookahead_batch
    given = [("batch", batch_a)] + [("lookahead_batch", batch_b)] * (lookahead_batch is not None)
    for which, half in given:  # halves of one batch share its shapes: one check
        b0 = engine.first_iteration(half) if per_iteration else half
        engine.check_loss(FN, apply, p0, b0, engine.model_inputs(b0, input_key), loss_fn, which)
    blocks = engine.Blocks(
        FN, apply, p0, x, pattern, lambda p, leaf: True, "the default (every block)"
    )
    floors = tuple(bias_floor if BIAS.search(p) else floor for p in blocks.paths)
    cfg = _Config(
        optimizer,
        float(lr),
        float(gamma),
        floors,
        iters,
        float(outer_lr),
        tuple(map(float, outer_betas)),
        float(outer_eps),
        float(grad_clip),
        normalize_grad,
        differentiate_step,
        outer_optimizer,
    )
    spec = engine.Spec(model, loss_fn, frozen, input_key, tuple(blocks.index), cfg, per_iteration)
    leaves = jax.tree_util.tree_leaves(p0)
    run_loop = engine.choose_loop(loop, leaves, FN)
    (alpha, _), recs, gnorm_after = engine.run_program(
        spec, params, (batch_a, batch_b), rngs, run_loop, jit
    )
    settings = (
        ("optimizer", optimizer),
        ("lr", float(lr)),
        ("gamma", float(gamma)),
        ("normalize_grad", normalize_grad),
        ("iters", iters),
        ("outer_lr", float(outer_lr)),
        ("per_iteration", per_iteration),
        ("loop", run_loop),
    )
    report = GradInitReport(
        method=FN,
        paths=blocks.paths,
        floors=floors,
        settings=settings,
        multiplier=alpha,
        trajectory=recs["alpha"],
        multiplier_grad=recs["grad"],
        loss=recs["loss"],
        grad_norm=recs["grad_norm"],
        lookahead_loss=recs["lookahead"],
        constrained=recs["constrained"],
        grad_norm_after=gnorm_after,
    )
    out = engine.rebuild(p0, merge, nnx_module, blocks.index, alpha)
    if not engine.is_traced((alpha, recs)):
        _check(report)
    return out, report


def _check(report: GradInitReport) -> None:
    engine.check_gradient_at_start(FN, report.grad_norm)
    report.check()
    report.warn(stacklevel=4)  # warn, _check, gradinit, its caller
