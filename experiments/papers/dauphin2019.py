"""Dauphin & Schoenholz 2019: MetaInit rescues a badly initialized deep network.

Paper: Yann N. Dauphin and Samuel S. Schoenholz, "MetaInit: Initializing learning by learning
to initialize", NeurIPS 2019. MetaInit tunes the norm of every weight tensor by signSGD with
momentum on the gradient quotient GQ = mean |(g - Hg)/(g + eps) - 1| (Hg a Hessian-vector
product), which is small where one gradient step does not change the gradient much.

Claims:

1. ``quotient_falls``: MetaInit lowers the gradient quotient (Section 4, Figure 2).
2. ``recovers_bad_init``: from an init whose scale is off by a large factor, in either
   direction, a deep network without normalization trains after MetaInit about as well as from
   a good init (Section 5: badly scaled inits recovered, results close to the good init).
3. ``bad_init_hurts``: the premise: without MetaInit the badly scaled inits train worse.
4. ``cost``: MetaInit's cost as a fraction of the training it prepares (the paper calls it
   small: ~1% of training for its ImageNet runs). Criterion: < 25% of our short training.

Our setup: scikit-learn digits (1,437 train / 360 test 8x8 images, standardized), a plain MLP
of ``depth`` Dense layers (width ``width``, ReLU, zero biases, no normalization). ``he``: He
normal kernels (the good init). ``small`` / ``large``: the same kernels times ``1/bad_factor``
/ ``bad_factor`` per layer (depth 12, factor 4: the logits' scale is off by 4^12 ~ 1.7e7).
``metainit_small`` / ``metainit_large``: those bad kernels after ``jinit.metainit`` (lr 0.1,
momentum 0.9, eps 1e-5: the paper's defaults) for ``metainit_steps`` steps on one batch of
``metainit_batch`` training examples (real data instead of the paper's random inputs; see
docs/dynamic.md). SGD with momentum 0.9, lr 0.01, batch 128, ``steps`` steps; same init keys
and minibatches per seed in every arm; each arm's seeds are one vmapped training program, and
the MetaInit pass is one vmapped program over the seeds.

Criteria (fixed before the run; every seed must pass):

1. GQ after <= 0.5 x GQ before, for both bad scales.
2. each MetaInit arm: test accuracy >= he's - 0.03 and final training loss <= he's + 0.1.
3. each bad arm without MetaInit: test accuracy < he's - 0.1, or its loss is non-finite.
4. the MetaInit pass (both bad scales, all seeds, compile included) < 25% of the wall time of
   training those models (compile included).

Writes ``results.json`` and ``dauphin2019.png`` to ``--out``.

Usage::

    python -m experiments.papers.dauphin2019 [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import optax

import jinit
from experiments import common
from experiments.lsuv_depth import DeepMLP
from experiments.plain_cnn import softmax_xent

NAME = "dauphin2019"
PAPER = "Dauphin & Schoenholz 2019"
ARMS = ("he", "small", "large", "metainit_small", "metainit_large")
COLORS = {"he": "C0", "small": "C7", "large": "C5", "metainit_small": "C2", "metainit_large": "C3"}


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int = 12
    width: int = 64
    bad_factor: float = 4.0
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 600
    batch_size: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    metainit_steps: int = 200
    metainit_batch: int = 128
    log_every: int = 20
    # Criteria (fixed before the run).
    gq_ratio: float = 0.5
    match_accuracy: float = 0.03
    match_loss: float = 0.1
    hurt_accuracy: float = 0.1
    time_fraction: float = 0.25


QUICK = Config(depth=4, width=16, seeds=(0, 1), steps=20, metainit_steps=3, log_every=5)


def scale_kernels(params, factor):
    return jax.tree_util.tree_map_with_path(
        lambda p, v: v * factor if jinit.path_string(p).endswith("kernel") else v, params
    )


def run(cfg: Config) -> dict:
    train, test = common.digits()
    model = DeepMLP(cfg.depth, cfg.width, "relu", jinit.he_normal())
    keys = common.init_keys(cfg.seeds)
    he = jax.jit(jax.vmap(lambda k: model.init(k, train["x"][:1])))(keys)
    params = {
        "he": he,
        "small": scale_kernels(he, 1 / cfg.bad_factor),
        "large": scale_kernels(he, cfg.bad_factor),
    }
    batch = {k: v[: cfg.metainit_batch] for k, v in train.items()}
    pass_ = jax.jit(
        jax.vmap(lambda p: jinit.metainit(model, p, batch, softmax_xent, steps=cfg.metainit_steps))
    )
    reports = {}
    t0 = time.perf_counter()
    for bad in ("small", "large"):
        out, rep = jax.block_until_ready(pass_(params[bad]))
        params[f"metainit_{bad}"] = out
        reports[bad] = rep
    metainit_s = time.perf_counter() - t0
    loss_fn = common.softmax_loss(model.apply)
    opt = optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    idx = common.minibatch_indices(cfg.seeds, cfg.steps, cfg.batch_size, train["x"].shape[0])
    runs = {a: common.train_models(loss_fn, params[a], train, idx, opt, test) for a in ARMS}
    final = {
        a: np.asarray(jax.jit(jax.vmap(lambda p: loss_fn(p, train)[0]))(r["params"]))
        for a, r in runs.items()
    }
    return {
        "arms": {
            a: {
                "curve": common.smooth(r["loss"], cfg.log_every),
                "final_train_loss": final[a],
                "test_accuracy": r["test_accuracy"],
                "train_s": r["train_s"],
            }
            for a, r in runs.items()
        },
        "metainit_s": metainit_s,
        "reports": {
            bad: {
                "paths": list(rep.paths),
                "multiplier": np.asarray(rep.multiplier),
                "quotient": np.asarray(rep.quotient),
                "quotient_after": np.asarray(rep.quotient_after),
            }
            for bad, rep in reports.items()
        },
        "report_errors": [m for rep in reports.values() for m in rep.errors()],
    }


def fmt(v) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in np.atleast_1d(v)) + "]"


def plot(r: dict, cfg: Config, path) -> str:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    ax = axes[0]
    for arm in ARMS:
        a = r["arms"][arm]
        c = np.where(np.isfinite(a["curve"]), a["curve"], np.nan)
        t = (np.arange(c.shape[1]) + 1) * cfg.log_every
        acc = a["test_accuracy"]
        ax.plot(
            t,
            np.nanmean(c, 0),
            color=COLORS[arm],
            label=f"{arm}: test acc {acc.mean():.3f} ± {acc.std():.3f}",
        )
    ax.axhline(common.LN10, color="k", ls=":", lw=0.8, label="ln 10")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (minibatch)")
    ax.set_title(f"{cfg.depth}-layer ReLU MLP, kernels x{cfg.bad_factor:g}^±1")
    ax.legend(fontsize=7)
    ax = axes[1]
    for bad, color in (("small", "C2"), ("large", "C3")):
        q = r["reports"][bad]["quotient"]
        for s in range(q.shape[0]):
            ax.semilogy(q[s], color=color, alpha=0.7, label=f"start x{bad}" if s == 0 else None)
    ax.set_xlabel("MetaInit step")
    ax.set_ylabel("gradient quotient")
    ax.set_title("gradient quotient during the pass")
    ax.legend(fontsize=8)
    ax = axes[2]
    layers = np.arange(cfg.depth)
    for bad, color in (("small", "C2"), ("large", "C3")):
        m = r["reports"][bad]["multiplier"]
        start = cfg.bad_factor ** (-1 if bad == "small" else 1)
        for s in range(m.shape[0]):
            ax.semilogy(
                layers,
                m[s] * start,
                "o-",
                ms=3,
                color=color,
                alpha=0.7,
                label=f"from x{bad}" if s == 0 else None,
            )
    ax.axhline(1.0, color="C0", ls="--", label="He scale")
    ax.set_xlabel("Dense layer")
    ax.set_ylabel("kernel scale after MetaInit / He")
    ax.set_title("learned scale relative to He")
    ax.legend(fontsize=8)
    fig.suptitle(f"{PAPER}: MetaInit on digits ({len(cfg.seeds)} seeds)")
    fig.tight_layout()
    return common.save(fig, path)


def analyses(r: dict, cfg: Config) -> list[str]:
    """Per claim, what the measurements say about a failure (written from the numbers)."""
    rel = {}
    for bad in ("small", "large"):
        m = r["reports"][bad]["multiplier"]  # (seeds, layers)
        start = cfg.bad_factor ** (-1 if bad == "small" else 1)
        rel[bad] = (
            f"from x{start:g}: learned kernel scale / He per layer, mean over seeds "
            f"{fmt(np.abs(m).mean(0) * start)}; multipliers <= 0 in "
            f"{int((m <= 0).sum())} of {m.size} (seed, layer) pairs"
        )
    q = {b: r["reports"][b] for b in ("small", "large")}
    ratio = {b: q[b]["quotient_after"] / q[b]["quotient"][:, 0] for b in q}
    gq = (
        f"GQ after / before: x small {fmt(ratio['small'])}, x large {fmt(ratio['large'])}. "
        f"{rel['small']}. {rel['large']}. In the exploded regime (logits ~{cfg.bad_factor:g}^"
        f"{cfg.depth} too large, softmax saturated) the sign of dGQ/d||w|| does not point back "
        "to the He scale, so signSGD moves the norms the wrong way or not at all; the "
        "reference's absolute norm step (lr added to ||w||) also drives small-norm tensors "
        "through zero."
    )
    cost = (
        "a MetaInit step needs the gradient of a Hessian-vector product (third-order autodiff), "
        f"several training steps of compute; {cfg.metainit_steps} steps against a "
        f"{cfg.steps}-step training is not small at this scale (the paper's ratio is for "
        "ImageNet-length training)."
    )
    return [gq, gq, "the badly scaled inits trained as well as He here", cost]


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    started = time.perf_counter()
    setup = (
        f"digits, {cfg.depth}-layer ReLU MLP width {cfg.width} without normalization; He "
        f"kernels x{cfg.bad_factor:g} or /{cfg.bad_factor:g}; MetaInit {cfg.metainit_steps} "
        f"steps on {cfg.metainit_batch} examples; SGD+momentum lr {cfg.learning_rate}, "
        f"{cfg.steps} steps; {len(cfg.seeds)} seeds"
    )
    claims = [
        common.Claim(
            f"{NAME}.quotient_falls",
            PAPER,
            "MetaInit lowers the gradient quotient (Section 4).",
            setup,
            f"GQ after <= {cfg.gq_ratio} x GQ before, both bad scales, every seed",
        ),
        common.Claim(
            f"{NAME}.recovers_bad_init",
            PAPER,
            "From a badly scaled init, a deep net without normalization trains after "
            "MetaInit about as well as from a good init (Section 5).",
            setup,
            f"each MetaInit arm: test acc >= he - {cfg.match_accuracy} and final train "
            f"loss <= he + {cfg.match_loss}, every seed",
        ),
        common.Claim(
            f"{NAME}.bad_init_hurts",
            PAPER,
            "(premise) Without MetaInit the badly scaled inits train worse.",
            setup,
            f"each bad arm: test acc < he - {cfg.hurt_accuracy} or non-finite loss",
        ),
        common.Claim(
            f"{NAME}.cost",
            PAPER,
            "MetaInit's cost is small next to training.",
            setup,
            f"MetaInit pass (all seeds, both scales, compile included) < "
            f"{cfg.time_fraction:.0%} of training those models",
        ),
    ]
    r = run(cfg)
    fig = plot(r, cfg, f"{args.out}/dauphin2019.png")
    for c in claims:
        c.figure = fig
    reps = r["reports"]
    ok = np.concatenate(
        [
            reps[b]["quotient_after"] <= cfg.gq_ratio * reps[b]["quotient"][:, 0]
            for b in ("small", "large")
        ]
    )
    claims[0].judge(
        ok,
        "; ".join(
            f"x{b}: GQ {fmt(reps[b]['quotient'][:, 0])} -> {fmt(reps[b]['quotient_after'])}"
            for b in ("small", "large")
        ),
    )
    a = r["arms"]
    he = a["he"]
    rec = np.concatenate(
        [
            (a[m]["test_accuracy"] >= he["test_accuracy"] - cfg.match_accuracy)
            & (a[m]["final_train_loss"] <= he["final_train_loss"] + cfg.match_loss)
            for m in ("metainit_small", "metainit_large")
        ]
    )
    claims[1].judge(
        rec,
        "; ".join(
            f"{m}: test acc {fmt(a[m]['test_accuracy'])}, train loss {fmt(a[m]['final_train_loss'])}"
            for m in ("he", "metainit_small", "metainit_large")
        ),
    )
    hurt = np.concatenate(
        [
            (a[b]["test_accuracy"] < he["test_accuracy"] - cfg.hurt_accuracy)
            | ~np.isfinite(a[b]["final_train_loss"])
            for b in ("small", "large")
        ]
    )
    claims[2].judge(
        hurt,
        "; ".join(
            f"{b}: test acc {fmt(a[b]['test_accuracy'])}, train loss {fmt(a[b]['final_train_loss'])}"
            for b in ("small", "large")
        ),
    )
    train_s = a["metainit_small"]["train_s"] + a["metainit_large"]["train_s"]
    frac = r["metainit_s"] / train_s
    claims[3].judge(
        [frac < cfg.time_fraction],
        f"MetaInit {r['metainit_s']:.1f} s vs training {train_s:.1f} s ({frac:.0%})",
        metainit_s=r["metainit_s"],
        train_s=train_s,
    )
    for c, text in zip(claims, analyses(r, cfg), strict=True):
        if not c.passed:
            c.details["analysis"] = text
    return common.finish(
        args.out,
        NAME,
        claims,
        cfg,
        started,
        args.quick,
        reports=r["reports"],
        report_errors=r["report_errors"],
    )


if __name__ == "__main__":
    main()
