"""Mishkin & Matas 2015: LSUV makes a deep thin net train, as well as the standard inits, cheaply.

Paper: Dmytro Mishkin and Jiri Matas, "All you need is a good init", ICLR 2016,
arXiv:1511.06422 (2015). LSUV (Algorithm 1): fill every conv/dense kernel with an orthonormal
matrix, then, from the first layer to the last, rescale each kernel until the variance of the
layer's output on one minibatch is 1 (tolerance 0.1, at most 10 rescalings per layer).

Claims:

1. ``converges``: the variance normalization "needs 1-5 iterations" per layer to reach unit
   output variance (Section 2).
2. ``trains_where_gaussian_fails``: LSUV trains very deep thin nets (FitNets, Section 3.1)
   that a naive Gaussian init (N(0, 0.01^2), Caffe's default "gaussian" filler) does not.
3. ``matches_standard_inits``: LSUV reaches a test accuracy "better or equal to standard
   methods" (abstract; Tables 2-3: Xavier/Glorot, MSRA/He, orthonormal) and trains at least
   as fast.
4. ``cheap``: its cost is negligible next to training (Section 5, Timings: 3.5 minutes for
   CaffeNet, the slowest case, against days of training).

Our setup: scikit-learn's digits (1,437 training / 360 test real 8x8 images, standardized per
pixel). A deep thin plain MLP standing in for the thin FitNets: ``depth`` = 20 Dense layers
(19 hidden of width 32, then 10 logits), zero biases, ReLU and, separately, tanh (two of the
paper's activations). Five arms, the same init key per seed for every arm: ``gaussian``
N(0, 0.01^2); ``glorot`` (Glorot uniform, "Xavier"); ``he`` (He normal, "MSRA");
``orthonormal`` (LSUV's pre-init alone, unscaled); ``lsuv`` (the same orthonormal kernels, then
``jinit.lsuv`` with tol 0.1 and at most 10 iterations on the first 256 training examples; the
paper measures each layer's output before its nonlinearity, so does ``jinit.lsuv``). SGD with
momentum 0.9, learning rate 0.01 (the paper's FitNet setting), batch 128, 600 steps (~53
epochs), 5 seeds; the minibatch order depends on the seed only, so arms are paired. Per
activation, the LSUV models (all seeds) are one vmapped training program and the other four
arms another (``common.train_models``), so LSUV's training wall time is for exactly its own
models, compilation included. Final training loss = cross-entropy of the final weights on the
whole training set. LSUV is timed as a user runs it by default, seed by seed: an eager
``init`` with ``jinit.lsuv_ready_orthogonal`` kernels (these are the ``orthonormal`` arm's
kernels too), then ``jinit.lsuv`` with its automatic eager/jit choice (eager here); until
2026-12 it was timed as one ``jit(vmap(...))`` draw and one jitted, vmapped pass, whose
compilation cost more than the eager route (docs/lsuv.md, "The automatic choice").

Criteria (fixed before the run; a claim passes only if it holds for every seed and activation):

1. every layer converged (``|var - 1| < 0.1`` on the LSUV batch) with at most 5 rescalings.
2. ``gaussian``: final training loss > ln 10 - 0.05 and test accuracy < 0.2 (chance is 0.1);
   ``lsuv``: final training loss < 0.5 and test accuracy > 0.85.
3. per seed, LSUV's final training loss <= the best of glorot/he/orthonormal on that seed
   + 0.05; and LSUV's mean test accuracy over seeds >= the best other arm's mean - 0.02 (a
   paired per-seed accuracy test against the best of three arms would fail on test-set noise
   alone: the sd of one arm's accuracy on 360 images is ~0.011).
4. LSUV's wall time (orthonormal draw + LSUV pass for all seeds, compilation included) < 10%
   of the wall time of training those same models (compilation included).

Writes ``results.json``, ``mishkin2015_loss_curves.png``, ``mishkin2015_lsuv_layers.png`` and
``mishkin2015_timing.png`` to ``--out`` (default ``runs/papers/mishkin2015``).

Usage::

    python experiments/papers/mishkin2015.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments import common
from experiments.lsuv_depth import DeepMLP  # same plain deep MLP as that study

NAME = "mishkin2015"
PAPER = "Mishkin & Matas 2015"
ARMS = ("gaussian", "glorot", "he", "orthonormal", "lsuv")
STANDARD = ("glorot", "he", "orthonormal")  # the arms LSUV must match (claim 3)
COLORS = {"gaussian": "C7", "glorot": "C1", "he": "C0", "orthonormal": "C2", "lsuv": "C3"}


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int = 20  # Dense layers, the last one the 10-way readout
    width: int = 32
    activations: tuple[str, ...] = ("relu", "tanh")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 600
    batch_size: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    gaussian_std: float = 0.01
    lsuv_batch_size: int = 256
    lsuv_tol: float = 0.1
    lsuv_max_iters: int = 10
    log_every: int = 20
    # Criteria (fixed before the run).
    max_iterations: int = 5
    stuck_margin: float = 0.05  # a stuck net's training loss stays within this of ln 10
    chance_accuracy: float = 0.2
    trains_loss: float = 0.5
    trains_accuracy: float = 0.85
    match_loss: float = 0.05
    match_accuracy: float = 0.02
    time_fraction: float = 0.10


QUICK = Config(depth=5, activations=("relu",), seeds=(0, 1), steps=40, log_every=10)


def kernel_inits(cfg: Config) -> dict:
    return {
        "gaussian": jinit.normal(cfg.gaussian_std),
        "glorot": jinit.glorot_uniform(),
        "he": jinit.he_normal(),
        "orthonormal": jinit.lsuv_ready_orthogonal(),
        "lsuv": jinit.lsuv_ready_orthogonal(),
    }


def layer_variances(model: DeepMLP, params, x) -> jax.Array:
    """Variance of every Dense output (before its activation) on ``x``, in forward order."""
    _, st = model.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
    it = st["intermediates"]
    return jnp.stack([jnp.var(it[f"Dense_{i}"]["__call__"][0]) for i in range(model.depth)])


def init_arms(cfg: Config, act: str, arms, keys, x1) -> dict:
    """``{arm: params stacked over seeds}`` for ``arms``, drawn in one jitted program."""
    inits = kernel_inits(cfg)
    models = {a: DeepMLP(cfg.depth, cfg.width, act, inits[a]) for a in arms}
    draw = jax.jit(
        lambda keys: {a: jax.vmap(lambda k, m=m: m.init(k, x1))(keys) for a, m in models.items()}
    )
    return jax.block_until_ready(draw(keys))


def run_activation(cfg: Config, act: str, train, test) -> dict:
    """All arms of one activation; LSUV's models are initialized and trained on their own.

    LSUV starts from the ``orthonormal`` arm's kernels (same key), so its init time is that
    draw plus the LSUV pass; its training program holds exactly the LSUV models, so the two
    wall times of claim 4 are for the same models, each with its compilation.
    """
    model = DeepMLP(cfg.depth, cfg.width, act)
    keys = common.init_keys(cfg.seeds)
    xb = train["x"][: cfg.lsuv_batch_size]
    ortho = DeepMLP(cfg.depth, cfg.width, act, kernel_inits(cfg)["lsuv"])

    def lsuv_init():
        # What a user runs by default, seed by seed: an eager ``init`` (jinit's orthogonal is one
        # program compiled per kernel shape, so the compile cost grows with the distinct shapes,
        # not with depth x seeds) and ``jinit.lsuv`` with its automatic choice (eager on a first
        # call: on the MLP it is several times cheaper than compiling the jitted pass; docs/lsuv.md).
        t0 = time.perf_counter()
        drawn = jax.block_until_ready([ortho.init(k, xb[:1]) for k in keys])
        t1 = time.perf_counter()
        out = [
            jinit.lsuv(model, p, xb, tol=cfg.lsuv_tol, max_iters=cfg.lsuv_max_iters) for p in drawn
        ]
        jax.block_until_ready([p for p, _ in out])
        return drawn, out, t1 - t0, time.perf_counter() - t0

    drawn, out, draw_s, lsuv_s = lsuv_init()  # the eager pass raises on a failing layer
    _, _, _, lsuv_second_s = lsuv_init()  # programs and caches now warm: the work alone
    stacked = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # (seeds, ...)
    params = {"orthonormal": stacked(drawn)}  # the orthonormal arm: the very same kernels
    lsuv_params = stacked([p for p, _ in out])
    report = {
        "paths": list(out[0][1].paths),
        "execution": out[0][1].execution,
        **{
            f: np.stack([np.asarray(getattr(r, f)) for _, r in out])  # (seeds, layers)
            for f in ("iterations", "var_before", "var_after", "converged")
        },
    }
    params.update(init_arms(cfg, act, ("gaussian", "glorot", "he"), keys, xb[:1]))

    loss_fn = common.softmax_loss(model.apply)
    optimizer = optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    idx = common.minibatch_indices(cfg.seeds, cfg.steps, cfg.batch_size, train["x"].shape[0])
    others = ARMS[:-1]
    r_lsuv = common.train_models(loss_fn, lsuv_params, train, idx, optimizer, test)
    r_rest = common.train_models(
        loss_fn,
        common.stack([params[a] for a in others]),
        train,
        jnp.tile(idx, (len(others), 1, 1)),
        optimizer,
        test,
    )
    final = common.stack([r_rest["params"], r_lsuv["params"]])  # ARMS order
    final_loss = np.asarray(jax.jit(jax.vmap(lambda p: loss_fn(p, train)[0]))(final))
    n = len(cfg.seeds)
    arms = {}
    for i, arm in enumerate(ARMS):
        r, j = (r_lsuv, 0) if arm == "lsuv" else (r_rest, i)
        arms[arm] = {
            "curve": common.smooth(r["loss"][j * n : (j + 1) * n], cfg.log_every),
            "final_train_loss": final_loss[i * n : (i + 1) * n],
            "test_accuracy": r["test_accuracy"][j * n : (j + 1) * n],
        }
    rest = train["x"][cfg.lsuv_batch_size :]  # training examples LSUV did not see
    var_rest = jax.jit(jax.vmap(lambda p: layer_variances(model, p, rest)))(lsuv_params)
    return {
        "arms": arms,
        "lsuv_s": lsuv_s,
        "orthonormal_draw_s": draw_s,
        "lsuv_second_call_s": lsuv_second_s,
        "train_s": {"lsuv": r_lsuv["train_s"], "other four arms": r_rest["train_s"]},
        "report": {**report, "var_after_rest": np.asarray(var_rest)},
    }


def fmt(v) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in np.atleast_1d(v)) + "]"


def plot_loss_curves(runs: dict, cfg: Config, path) -> str:
    plt = common.pyplot()
    acts = list(runs)
    fig, axes = plt.subplots(1, len(acts), figsize=(6.2 * len(acts), 4.4), squeeze=False)
    for ax, act in zip(axes[0], acts, strict=True):
        for arm in ARMS:
            a = runs[act]["arms"][arm]
            c = a["curve"]
            t = (np.arange(c.shape[1]) + 1) * cfg.log_every
            acc = a["test_accuracy"]
            label = f"{arm}: test acc {acc.mean():.3f} ± {acc.std():.3f}"
            lw = 2.2 if arm in ("lsuv", "gaussian") else 1.3
            ax.plot(t, c.mean(0), color=COLORS[arm], lw=lw, label=label)
            ax.fill_between(t, c.min(0), c.max(0), color=COLORS[arm], alpha=0.2)
        ax.axhline(common.LN10, color="k", ls=":", lw=0.8, label="ln 10 (chance)")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_ylabel(f"training loss (minibatch, mean of {cfg.log_every} steps)")
        ax.set_title(f"{act}, {cfg.depth} layers of width {cfg.width}")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "Mishkin & Matas 2015: LSUV trains a deep thin net that N(0, 0.01²) cannot, as well as "
        f"Glorot/He/orthonormal\n(digits; mean and min-max over {len(cfg.seeds)} seeds)"
    )
    fig.tight_layout()
    return common.save(fig, path)


def plot_lsuv_layers(runs: dict, cfg: Config, path) -> str:
    plt = common.pyplot()
    acts = list(runs)
    fig, axes = plt.subplots(2, len(acts), figsize=(6.2 * len(acts), 7), squeeze=False)
    layers = np.arange(1, cfg.depth + 1)
    for j, act in enumerate(acts):
        rep = runs[act]["report"]
        ax = axes[0, j]
        lines = (
            ("var_before", "before its rescaling (earlier layers done)", {"color": "0.5"}),
            ("var_after", "after, on the LSUV batch", {"color": COLORS["lsuv"], "marker": "o"}),
            (
                "var_after_rest",
                "after, on the other training examples",
                {"color": "C4", "ls": "--"},
            ),
        )
        for key, label, style in lines:
            for s, v in enumerate(rep[key]):
                ax.semilogy(layers, v, lw=1, ms=3, label=label if s == 0 else None, **style)
        ax.axhspan(1 - cfg.lsuv_tol, 1 + cfg.lsuv_tol, color=COLORS["lsuv"], alpha=0.12)
        ax.set_xlabel("Dense layer (output before the activation)")
        ax.set_xticks(layers[:: max(1, cfg.depth // 10)])
        ax.set_ylabel("output variance")
        ax.set_title(f"{act}: per-layer output variance, one line per seed")
        ax.legend(fontsize=8)
        ax = axes[1, j]
        it = rep["iterations"]
        ax.bar(layers, it.mean(0), color=COLORS["lsuv"], alpha=0.6, label="mean over seeds")
        ax.plot(layers, it.max(0), "k_", ms=12, mew=2, label="max over seeds")
        ax.axhline(cfg.max_iterations, color="k", ls=":", label="criterion: <= 5")
        ax.set_ylim(0, cfg.max_iterations + 1)
        ax.set_xlabel("Dense layer")
        ax.set_ylabel("LSUV rescalings")
        ax.set_xticks(layers[:: max(1, cfg.depth // 10)])
        ax.set_title(f"{act}: iterations per layer")
        ax.legend(fontsize=8)
    fig.suptitle(
        "Mishkin & Matas 2015: LSUV reaches unit output variance in 1-5 iterations per layer "
        f"(tol {cfg.lsuv_tol})"
    )
    fig.tight_layout()
    return common.save(fig, path)


def plot_timing(runs: dict, cfg: Config, path) -> str:
    plt = common.pyplot()
    acts = list(runs)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = np.arange(len(acts))
    bars = (
        ("LSUV init, compile included", [runs[a]["lsuv_s"] for a in acts], COLORS["lsuv"]),
        ("LSUV init, second call", [runs[a]["lsuv_second_call_s"] for a in acts], "C4"),
        ("training, compile included", [runs[a]["train_s"]["lsuv"] for a in acts], "C0"),
    )
    for k, (label, v, color) in enumerate(bars):
        ax.bar(x + (k - 1) * 0.27, v, 0.27, color=color, label=label)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the legend above the bars
    ax.set_xticks(x, acts)
    ax.set_ylabel("wall time (s), all seeds at once")
    ax.set_title(
        f"Mishkin & Matas 2015: LSUV's cost next to training\n"
        f"({len(cfg.seeds)} seeds, {cfg.steps} SGD steps, criterion: LSUV < "
        f"{cfg.time_fraction:.0%} of training)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    fig.tight_layout()
    return common.save(fig, path)


def judge_converges(claim: common.Claim, runs: dict, cfg: Config) -> None:
    ok, bad = [], []
    for act, r in runs.items():
        rep = r["report"]
        good = rep["converged"] & (rep["iterations"] <= cfg.max_iterations)  # (seeds, layers)
        ok += list(good.all(1))
        bad += [
            f"{act} seed {cfg.seeds[s]} layer {rep['paths'][i]}"
            for s, i in zip(*np.nonzero(~good), strict=True)
        ]
    its = np.concatenate([r["report"]["iterations"] for r in runs.values()])
    dev = ", ".join(
        f"{a} {np.abs(r['report']['var_after'] - 1).max():.3g}" for a, r in runs.items()
    )
    claim.judge(
        ok,
        f"rescalings per layer: max {its.max()}, mean {its.mean():.2f}; max |var_after - 1|: {dev}",
        **{
            act: {
                "paths": r["report"]["paths"],
                "iterations": r["report"]["iterations"],
                "var_before": r["report"]["var_before"],
                "var_after": r["report"]["var_after"],
                "var_after_other_training_examples": r["report"]["var_after_rest"],
            }
            for act, r in runs.items()
        },
    )
    if not claim.passed:
        claim.details["analysis"] = "not converged within the bound: " + "; ".join(bad)


def judge_training(claims: dict, runs: dict, cfg: Config) -> None:
    """Claims 2 and 3, from the final training losses and test accuracies."""
    ok_b, ok_c, measured_b, measured_c, why_b, why_c, details = [], [], [], [], [], [], {}
    for act, r in runs.items():
        loss = {a: r["arms"][a]["final_train_loss"] for a in ARMS}
        acc = {a: r["arms"][a]["test_accuracy"] for a in ARMS}
        details[act] = {"final_train_loss": loss, "test_accuracy": acc}

        stuck = (loss["gaussian"] > common.LN10 - cfg.stuck_margin) & (
            acc["gaussian"] < cfg.chance_accuracy
        )
        trains = (loss["lsuv"] < cfg.trains_loss) & (acc["lsuv"] > cfg.trains_accuracy)
        ok_b += list(stuck & trains)
        measured_b.append(
            f"{act}: gaussian loss {fmt(loss['gaussian'])} acc {fmt(acc['gaussian'])}; "
            f"lsuv loss {fmt(loss['lsuv'])} acc {fmt(acc['lsuv'])}"
        )
        if not stuck.all():
            why_b.append(f"{act}: the N(0, {cfg.gaussian_std}^2) net learned on some seed")
        if not trains.all():
            why_b.append(f"{act}: LSUV did not reach the loss/accuracy bar on some seed")

        best_loss = np.min([loss[a] for a in STANDARD], axis=0)
        loss_ok = loss["lsuv"] <= best_loss + cfg.match_loss
        best_arm = max(STANDARD, key=lambda a: acc[a].mean())
        gap = acc[best_arm].mean() - acc["lsuv"].mean()
        ok_c += list(loss_ok & (gap <= cfg.match_accuracy))
        measured_c.append(
            f"{act}: mean test acc "
            + ", ".join(f"{a} {acc[a].mean():.3f}" for a in ARMS[1:])
            + f"; lsuv loss - best other, per seed {fmt(loss['lsuv'] - best_loss)}"
        )
        if gap > cfg.match_accuracy:
            fastest = bool((loss["lsuv"] < best_loss).all())
            why_c.append(
                f"{act}: {best_arm}'s mean test accuracy {acc[best_arm].mean():.3f} exceeds "
                f"LSUV's {acc['lsuv'].mean():.3f} by {gap:.3f} (> {cfg.match_accuracy})"
                + (
                    ", although LSUV has the lowest final training loss on every seed: a "
                    "generalization gap, not an optimization failure (no weight decay or data "
                    "augmentation here, unlike the paper's CIFAR runs)"
                    if fastest
                    else ""
                )
            )
        if not loss_ok.all():
            why_c.append(
                f"{act}: LSUV's final training loss is above the best other arm's "
                f"+ {cfg.match_loss} on some seed"
            )
    for key, ok, measured, why in (
        ("trains_where_gaussian_fails", ok_b, measured_b, why_b),
        ("matches_standard_inits", ok_c, measured_c, why_c),
    ):
        claims[key].judge(ok, "; ".join(measured), **details)
        if not claims[key].passed:
            claims[key].details["analysis"] = "; ".join(why)


def judge_cheap(claim: common.Claim, runs: dict, cfg: Config) -> None:
    ok, measured, why, details = [], [], [], {}
    for act, r in runs.items():
        t_lsuv, t_warm, t_train = r["lsuv_s"], r["lsuv_second_call_s"], r["train_s"]["lsuv"]
        ok.append(t_lsuv < cfg.time_fraction * t_train)
        measured.append(
            f"{act}: LSUV {t_lsuv:.2f} s / training {t_train:.2f} s = {t_lsuv / t_train:.1%}"
        )
        details[act] = {
            "lsuv_s": t_lsuv,
            "orthonormal_draw_s": r["orthonormal_draw_s"],
            "lsuv_pass_first_call_s": t_lsuv - r["orthonormal_draw_s"],
            "lsuv_pass_execution": r["report"]["execution"],
            "lsuv_second_call_s": t_warm,
            "train_s": r["train_s"],
            "ratio": t_lsuv / t_train,
            "second_call_ratio": t_warm / t_train,
        }
        why.append(
            f"{act}: a second call (draw + pass, everything compiled and cached) takes "
            f"{t_warm * 1e3:.0f} ms ({t_warm / t_train:.2%} of training); the first call's "
            f"orthonormal draw takes {r['orthonormal_draw_s']:.2f} s and its "
            f"{r['report']['execution']} pass {t_lsuv - r['orthonormal_draw_s']:.2f} s; the "
            f"difference, {t_lsuv - t_warm:.2f} s, is compilation (one program per kernel shape "
            "for the draw, one per operation and shape for the eager pass) and the rest is the "
            "eager pass's op-by-op dispatch"
        )
    claim.judge(ok, "; ".join(measured), **details)
    if not claim.passed:
        claim.details["analysis"] = (
            "; ".join(why)
            + f". A fixed compile of seconds is negligible next to days of training (the "
            f"paper's scale) but not next to {cfg.steps} SGD steps on digits, whose whole "
            "training program, compilation included, takes a few seconds."
        )


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    started = time.perf_counter()
    out = pathlib.Path(args.out)
    acts = " and ".join(cfg.activations)
    setup = (
        f"digits (standardized), plain MLP of {cfg.depth} Dense layers ({cfg.depth - 1} hidden "
        f"of width {cfg.width}, {acts}, zero biases); SGD momentum {cfg.momentum}, lr "
        f"{cfg.learning_rate}, batch {cfg.batch_size}, {cfg.steps} steps; seeds "
        f"{list(cfg.seeds)}; LSUV on {cfg.lsuv_batch_size} training examples, tol "
        f"{cfg.lsuv_tol}, at most {cfg.lsuv_max_iters} iterations"
    )
    others = "/".join(STANDARD)
    claims = {
        "converges": common.Claim(
            id=f"{NAME}.converges",
            paper=PAPER,
            claim="The variance normalization needs 1-5 iterations per layer to bring every "
            "layer's output variance to 1 (Section 2, Algorithm 1).",
            setup=setup,
            criterion=f"every layer converged (|var - 1| < {cfg.lsuv_tol} on the LSUV batch) "
            f"with at most {cfg.max_iterations} rescalings, for every seed and activation",
            figure=f"{NAME}_lsuv_layers.png",
        ),
        "trains_where_gaussian_fails": common.Claim(
            id=f"{NAME}.trains_where_gaussian_fails",
            paper=PAPER,
            claim="LSUV trains very deep thin nets that the naive N(0, 0.01^2) Gaussian init "
            "cannot train (Section 3.1).",
            setup=setup,
            criterion=f"gaussian: final training loss > ln 10 - {cfg.stuck_margin} and test "
            f"accuracy < {cfg.chance_accuracy}; lsuv: final training loss < {cfg.trains_loss} "
            f"and test accuracy > {cfg.trains_accuracy}; for every seed and activation",
            figure=f"{NAME}_loss_curves.png",
        ),
        "matches_standard_inits": common.Claim(
            id=f"{NAME}.matches_standard_inits",
            paper=PAPER,
            claim="LSUV gives a test accuracy better or equal to the standard inits (Glorot, "
            "He, orthonormal) and trains at least as fast (abstract, Tables 2-3).",
            setup=setup,
            criterion=f"per seed: LSUV's final training loss <= best of {others} on that seed "
            f"+ {cfg.match_loss}; per activation: LSUV's mean test accuracy >= the best other "
            f"arm's mean - {cfg.match_accuracy}",
            figure=f"{NAME}_loss_curves.png",
        ),
        "cheap": common.Claim(
            id=f"{NAME}.cheap",
            paper=PAPER,
            claim="LSUV's computational cost is negligible next to training (Section 5, Timings).",
            setup=setup + "; timed on this machine's CPU",
            criterion="LSUV init (orthonormal draw + LSUV pass, all seeds, compilation "
            f"included) < {cfg.time_fraction:.0%} of the wall time of training the same models "
            "(compilation included), per activation",
            figure=f"{NAME}_timing.png",
        ),
    }

    train, test = common.digits()
    runs = {act: run_activation(cfg, act, train, test) for act in cfg.activations}

    judge_converges(claims["converges"], runs, cfg)
    judge_training(claims, runs, cfg)
    judge_cheap(claims["cheap"], runs, cfg)

    figures = [
        plot_loss_curves(runs, cfg, out / f"{NAME}_loss_curves.png"),
        plot_lsuv_layers(runs, cfg, out / f"{NAME}_lsuv_layers.png"),
        plot_timing(runs, cfg, out / f"{NAME}_timing.png"),
    ]
    return common.finish(
        out,
        NAME,
        list(claims.values()),
        cfg,
        started,
        args.quick,
        data=common.digits_source(),
        figures=figures,
    )


if __name__ == "__main__":
    main()
