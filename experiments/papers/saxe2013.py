"""Saxe et al. 2013: deep linear nets learn in depth-independent time from orthogonal init only.

Paper: Andrew M. Saxe, James L. McClelland, Surya Ganguli, "Exact solutions to the nonlinear
dynamics of learning in deep linear neural networks", ICLR 2014, arXiv:1312.6120 (2013).
Section 3 and Fig. 6: deep linear networks trained on MNIST with depths N_l = 3 to 100 (N_l
counts the layers of units, so N_l - 1 weight matrices), the learning rate "optimized separately
for each depth" (twenty rates, log-spaced, pick the fastest), learning time = the iteration at
which the training error falls below "a fixed threshold corresponding to nearly complete
learning". With scaled Gaussian weights (std 1/sqrt(N), norm-preserving on average) "the
learning time with depth on linear networks trained on MNIST grows with depth" (Fig. 6A, blue),
while "random orthogonal initialization ... yields depth independent learning times" (red).
The reason (Fig. 6B): the product of the Gaussian matrices is far from an isometry, "most of
the singular values become vanishingly small", while a product of orthogonal matrices is
orthogonal.

Claims:

1. ``orthogonal_depth_independent``: with orthogonal init, learning time does not grow with
   depth.
2. ``gaussian_slows_with_depth``: with scaled Gaussian init N(0, 1/fan_in), learning time grows
   with depth and ends far above orthogonal's.
3. ``gaussian_product_not_isometric``: at the largest depth, most singular values of the
   product of the Gaussian hidden matrices are vanishingly small; orthogonal's are all 1.

Our setup: scikit-learn digits (1437 training images, 64 standardized pixels), one-hot targets,
the paper's squared error ``0.5 mean |y - W_tot^T x|^2``, no biases. Deep linear MLPs of
D = N_l - 1 weight matrices, D in ``depths`` (N_l = 3 to 65), hidden width 64 (= the input
size, so every matrix but the 64 x 10 readout is square, as in the paper's N x N analysis).
Full-batch gradient descent (one step = one epoch), as in the paper's dynamics: the loss of a
linear net depends on the data only through ``Sigma_xx = X^T X / P`` and ``Sigma_xy = X^T Y / P``,
so each step is computed exactly from them (the same gradient as over the 1437 images, ~100x
cheaper; ``details`` records the check at init). The learning rate is picked per depth, init and
seed as the fastest of ``n_lr`` rates log-spaced in [``lr_min``, ``lr_max``]; every depth is ONE
vmapped program over (init, seed, learning rate), ``steps`` steps.

Learning time: first step with training loss <= L* + ``threshold_fraction`` (L(0) - L*), L* the
least-squares optimum (the best any linear net can do), L(0) the loss of the zero map;
"not reached within ``steps`` steps" counts as slower than any reached time.

Criteria (fixed before the run; a claim passes only if it holds for every seed):

1. Orthogonal: every depth reaches the threshold, in at most ``orthogonal_max_ratio`` (2) times
   the learning time of the shallowest net (N_l = 3).
2. Gaussian: at the largest depth, learning time >= ``gaussian_min_ratio`` (3) times its own at
   N_l = 3, and >= 3 times orthogonal's at the largest depth (both of which must be reached).
3. At the largest depth, product of the N_l - 2 hidden 64 x 64 matrices at init: Gaussian: at
   least half of its singular values below 0.01; orthogonal: all within 1e-3 of 1.

Writes ``results.json`` and ``saxe2013_learning_time.png`` to ``--out`` (default
``runs/papers/saxe2013``).

Usage::

    python experiments/papers/saxe2013.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments import common

NAME = "saxe2013"
PAPER = "Saxe et al. 2013"
ARMS = ("orthogonal", "gaussian")
INITS = {
    "orthogonal": jinit.orthogonal(),  # W^T W = I (the 64 x 10 readout: orthonormal columns)
    "gaussian": jinit.variance_scaling(1.0, "fan_in", "normal"),  # N(0, 1/fan_in), untruncated
}
COLORS = {"orthogonal": "C3", "gaussian": "C0"}
FIGURE = "saxe2013_learning_time.png"


@dataclasses.dataclass(frozen=True)
class Config:
    depths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)  # weight matrices D = N_l - 1
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    lr_min: float = 4e-3
    lr_max: float = 0.4
    n_lr: int = 12
    steps: int = 400  # full-batch GD steps (epochs)
    threshold_fraction: float = 0.05
    # Criteria (fixed before the run).
    orthogonal_max_ratio: float = 2.0
    gaussian_min_ratio: float = 3.0
    small_singular_value: float = 1e-2
    small_fraction: float = 0.5
    isometry_tolerance: float = 1e-3


QUICK = Config(depths=(2, 4), seeds=(0, 1), n_lr=4, steps=50)


def moments(train):
    """``Sigma_xx``, ``Sigma_xy``, ``0.5 E|y|^2`` (float64) and the least-squares optimum."""
    x = np.asarray(train["x"], np.float64)
    y = np.eye(10)[np.asarray(train["y"])]
    sxx, sxy, c = x.T @ x / len(x), x.T @ y / len(x), 0.5 * np.mean(np.sum(y**2, 1))
    w_star = np.linalg.pinv(sxx) @ sxy
    l_star = 0.5 * np.sum(w_star * (sxx @ w_star)) - np.sum(w_star * sxy) + c
    return sxx, sxy, c, float(l_star)


def end_to_end(params):
    """``W_tot = H_1 H_2 ... H_{D-1} W_out`` (64 x 10), multiplied from the readout side."""
    v, _ = jax.lax.scan(lambda v, w: (w @ v, None), params["out"], params["hidden"], reverse=True)
    return v


def make_loss(sxx, sxy, c):
    sxx, sxy = jnp.asarray(sxx, jnp.float32), jnp.asarray(sxy, jnp.float32)

    def loss(params):  # 0.5 mean_mu |y_mu - W_tot^T x_mu|^2, from the second moments
        w = end_to_end(params)
        return 0.5 * jnp.sum(w * (sxx @ w)) - jnp.sum(w * sxy) + c

    return loss


def init_nets(seeds, n_hidden):
    """Initial nets ``{"hidden": (arms * seeds, n_hidden, 64, 64), "out": (arms * seeds, 64, 10)}``.

    Hidden matrix i of a seed's net is drawn from ``fold_in(key, i)``, the readout from
    ``fold_in(key, 2**31)``: the net of depth D is the first D - 1 hidden matrices and the
    readout, so deeper nets extend shallower ones. One jitted call (an eager vmapped QR compiles
    op by op and is ~10x slower).
    """

    def one(key, init):
        hidden = jax.vmap(lambda i: init(jax.random.fold_in(key, i), (64, 64), jnp.float32))(
            jnp.arange(n_hidden)
        )
        return {
            "hidden": hidden,
            "out": init(jax.random.fold_in(key, 2**31), (64, 10), jnp.float32),
        }

    init_all = lambda keys: common.stack(
        [jax.vmap(lambda k, a=a: one(k, INITS[a]))(keys) for a in ARMS]
    )
    return jax.jit(init_all)(common.init_keys(seeds))


def train_depth(loss, nets, depth, cfg, lrs):
    """Loss curves ``(arms, seeds, lrs, steps)`` of the depth-D nets cut from ``nets``.

    One jitted program: full-batch GD, vmapped over every (init, seed, learning rate).
    """
    nets = {"hidden": nets["hidden"][:, : depth - 1], "out": nets["out"]}
    n_lr = len(lrs)
    params = jax.tree.map(lambda a: jnp.repeat(a, n_lr, axis=0), nets)  # (arm, seed, lr) order
    lr = jnp.tile(jnp.asarray(lrs, jnp.float32), len(ARMS) * len(cfg.seeds))

    @jax.jit
    def run(params, lr):
        def one(p, lr):
            def step(p, _):
                value, grad = jax.value_and_grad(loss)(p)
                return jax.tree.map(lambda w, g: w - lr * g, p, grad), value

            return jax.lax.scan(step, p, None, length=cfg.steps)[1]

        return jax.vmap(one)(params, lr)

    curves = np.asarray(jax.block_until_ready(run(params, lr)))
    return curves.reshape(len(ARMS), len(cfg.seeds), n_lr, cfg.steps)


def learning_times(curves, threshold):
    """First step at or below ``threshold`` (inf if never; diverged runs never count)."""
    hit = np.isfinite(curves) & (curves <= threshold)
    return np.where(hit.any(-1), hit.argmax(-1), np.inf).astype(float)


def hidden_product_singular_values(nets, depth, arm, n_seeds):
    """Singular values of ``H_1 ... H_{D-1}`` per seed, in float64 (Gaussian ones underflow)."""
    out = []
    for s in range(n_seeds):
        hidden = np.asarray(nets["hidden"][ARMS.index(arm) * n_seeds + s, : depth - 1], np.float64)
        prod = np.eye(hidden.shape[-1])
        for h in hidden:
            prod = prod @ h
        out.append(np.linalg.svd(prod, compute_uv=False))
    return np.stack(out)


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    started = time.perf_counter()
    out = pathlib.Path(args.out)
    lrs = np.geomspace(cfg.lr_min, cfg.lr_max, cfg.n_lr)
    n_l = [d + 1 for d in cfg.depths]
    setup = (
        f"digits, squared error on one-hot targets, deep linear MLPs of N_l = {n_l} layers "
        f"(width 64, no biases); full-batch GD, {cfg.steps} steps, learning rate per depth, init "
        f"and seed the fastest of {cfg.n_lr} log-spaced in [{cfg.lr_min:g}, {cfg.lr_max:g}]; "
        f"learning time = first step with loss <= L* + {cfg.threshold_fraction:g} (L(0) - L*); "
        f"seeds {list(cfg.seeds)}"
    )
    claims = {
        "orthogonal": common.Claim(
            id=f"{NAME}.orthogonal_depth_independent",
            paper=PAPER,
            claim="Random orthogonal initial weights yield depth-independent learning times "
            "(Fig. 6A left, red; section 3).",
            setup=setup + "; orthogonal init",
            criterion=f"every depth reaches the threshold, in at most {cfg.orthogonal_max_ratio:g}"
            f" x the learning time at N_l = {n_l[0]}, for every seed",
            figure=FIGURE,
        ),
        "gaussian": common.Claim(
            id=f"{NAME}.gaussian_slows_with_depth",
            paper=PAPER,
            claim="With scaled random Gaussian initial weights (std 1/sqrt(N)) the learning time "
            "grows with depth (Fig. 6A left, blue), unlike orthogonal.",
            setup=setup + "; Gaussian init N(0, 1/fan_in)",
            criterion=f"at N_l = {n_l[-1]}: learning time >= {cfg.gaussian_min_ratio:g} x its own "
            f"at N_l = {n_l[0]} and >= {cfg.gaussian_min_ratio:g} x orthogonal's at N_l = "
            f"{n_l[-1]} (both references reached; Gaussian not reaching the threshold within "
            f"{cfg.steps} steps counts as slower), for every seed",
            figure=FIGURE,
        ),
        "isometry": common.Claim(
            id=f"{NAME}.gaussian_product_not_isometric",
            paper=PAPER,
            claim="The product of norm-preserving Gaussian matrices is not an isometry: 'most of "
            "the singular values become vanishingly small' (Fig. 6B); a product of orthogonal "
            "matrices has all singular values 1.",
            setup=f"the initial nets of the N_l = {n_l[-1]} run: product of their "
            f"{cfg.depths[-1] - 1} hidden 64 x 64 matrices, float64",
            criterion=f"Gaussian: >= {cfg.small_fraction:.0%} of singular values < "
            f"{cfg.small_singular_value:g}; orthogonal: all within {cfg.isometry_tolerance:g} of "
            "1; for every seed",
            figure=FIGURE,
        ),
    }

    train, _ = common.digits()
    sxx, sxy, c, l_star = moments(train)
    threshold = l_star + cfg.threshold_fraction * (c - l_star)
    loss = make_loss(sxx, sxy, c)
    nets = init_nets(cfg.seeds, max(cfg.depths) - 1)
    curves, times, best_lr, train_s = {}, [], [], {}
    for depth in cfg.depths:
        t0 = time.perf_counter()
        curves[depth] = train_depth(loss, nets, depth, cfg, lrs)
        train_s[depth] = time.perf_counter() - t0
        t = learning_times(curves[depth], threshold)  # (arms, seeds, lrs)
        times.append(t.min(-1))
        best_lr.append(np.where(np.isfinite(t.min(-1)), lrs[t.argmin(-1)], np.nan))
    times, best_lr = np.stack(times, -1), np.stack(best_lr, -1)  # (arms, seeds, depths)

    # The moment form is the data loss: check once, on the deepest initial Gaussian net.
    first = {
        "hidden": nets["hidden"][len(cfg.seeds), : cfg.depths[-1] - 1],
        "out": nets["out"][len(cfg.seeds)],
    }
    direct = 0.5 * jnp.mean(
        jnp.sum((jax.nn.one_hot(train["y"], 10) - train["x"] @ end_to_end(first)) ** 2, -1)
    )
    identity_gap = abs(float(direct) - float(loss(first)))

    o, g = ARMS.index("orthogonal"), ARMS.index("gaussian")
    fmt = lambda row: "[" + ", ".join(f"{v:.0f}" if np.isfinite(v) else "never" for v in row) + "]"
    per_depth = lambda a: {f"N_l={n}": fmt(times[a, :, i]) for i, n in enumerate(n_l)}
    with np.errstate(invalid="ignore"):  # never / never: no ratio, and the claim fails anyway
        ratio_o = np.nan_to_num(times[o] / times[o, :, :1], nan=np.inf)  # (seeds, depths)
    claims["orthogonal"].judge(
        np.isfinite(times[o]).all(-1) & (ratio_o.max(-1) <= cfg.orthogonal_max_ratio),
        f"max over depths of time / time at N_l = {n_l[0]}: "
        + fmt_ratio(ratio_o.max(-1))
        + f"; times at N_l = {n_l[-1]}: {fmt(times[o, :, -1])} vs {fmt(times[o, :, 0])} at "
        f"N_l = {n_l[0]}",
        learning_time_steps=per_depth(o),
        max_ratio_to_shallowest=ratio_o.max(-1).tolist(),
        best_learning_rate=best_lr[o].tolist(),
    )
    g_deep, g_shallow, o_deep = times[g, :, -1], times[g, :, 0], times[o, :, -1]
    g_ok = (
        np.isfinite(g_shallow)  # the references must be reached for a ratio to mean anything
        & np.isfinite(o_deep)
        & (g_deep >= cfg.gaussian_min_ratio * g_shallow)
        & (g_deep >= cfg.gaussian_min_ratio * o_deep)
    )
    claims["gaussian"].judge(
        g_ok,
        f"Gaussian steps at N_l = {n_l[-1]}: {fmt(g_deep)} vs {fmt(g_shallow)} at N_l = "
        f"{n_l[0]}; orthogonal at N_l = {n_l[-1]}: {fmt(o_deep)}",
        learning_time_steps=per_depth(g),
        best_learning_rate=best_lr[g].tolist(),
    )
    sv = {a: hidden_product_singular_values(nets, cfg.depths[-1], a, len(cfg.seeds)) for a in ARMS}
    small = (sv["gaussian"] < cfg.small_singular_value).mean(-1)
    iso = np.abs(sv["orthogonal"] - 1.0).max(-1)
    claims["isometry"].judge(
        (small >= cfg.small_fraction) & (iso < cfg.isometry_tolerance),
        f"Gaussian fraction < {cfg.small_singular_value:g}: {fmt_ratio(small, 2)}; "
        f"orthogonal max |s - 1|: {', '.join(f'{v:.1e}' for v in iso)}",
        gaussian_fraction_small=small.tolist(),
        gaussian_median_singular_value=np.median(sv["gaussian"], -1).tolist(),
        gaussian_max_singular_value=sv["gaussian"].max(-1).tolist(),
        orthogonal_max_deviation=iso.tolist(),
    )
    for key, arm in (("orthogonal", "orthogonal"), ("gaussian", "gaussian")):
        if not claims[key].passed:
            claims[key].details["analysis"] = analysis(arm, times, best_lr, lrs, n_l, cfg)

    figure = plot(curves, times, best_lr, sv, threshold, l_star, c, lrs, cfg, out / FIGURE)
    return common.finish(
        out,
        NAME,
        list(claims.values()),
        cfg,
        started,
        args.quick,
        data=common.digits_source(),
        figures=[figure],
        least_squares_loss=l_star,
        zero_map_loss=c,
        threshold_loss=threshold,
        moment_form_gap_at_init=identity_gap,
        learning_rates=lrs,
        train_s={f"N_l={d + 1}": s for d, s in train_s.items()},
    )


def fmt_ratio(values, digits=1):
    return "[" + ", ".join("inf" if not np.isfinite(v) else f"{v:.{digits}f}" for v in values) + "]"


def analysis(arm, times, best_lr, lrs, n_l, cfg):
    """Why a learning-time claim failed, from the measured numbers."""
    a = ARMS.index(arm)
    edge = np.isin(best_lr[a], [lrs[0], lrs[-1]])
    return (
        f"{arm}: learning time (steps) per depth N_l = {n_l}, per seed: "
        f"{[fmt_ratio(r, 0) for r in times[a]]}. Best learning rates on the grid edge "
        f"(the optimum may lie outside [{cfg.lr_min:g}, {cfg.lr_max:g}]): "
        f"{int(edge.sum())} of {edge.size} (seed, depth) pairs."
    )


def plot(curves, times, best_lr, sv, threshold, l_star, c, lrs, cfg, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    n_l = np.array([d + 1 for d in cfg.depths])
    cap = cfg.steps * 1.25  # where "not reached" is drawn
    ax = axes[0, 0]
    for a, arm in enumerate(ARMS):
        t = times[a]
        shown = np.where(np.isfinite(t), t, cap)
        for s in range(t.shape[0]):
            ax.scatter(n_l, shown[s], color=COLORS[arm], s=14, alpha=0.5, zorder=3)
        reached = np.isfinite(t).all(0)
        med = np.median(shown, 0)
        ax.plot(n_l[reached], med[reached], "-o", color=COLORS[arm], lw=2, label=f"{arm} (median)")
        ax.fill_between(n_l, shown.min(0), shown.max(0), color=COLORS[arm], alpha=0.15)
        never = ~np.isfinite(t).any(0)
        if never.any():
            ax.scatter(n_l[never], np.full(never.sum(), cap), marker="^", s=80, color=COLORS[arm])
    ax.axhline(cap, color="grey", ls=":", lw=1)
    ax.text(n_l[0], cap * 1.05, f"^ : not reached in {cfg.steps} steps", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n_l, [str(v) for v in n_l])
    ax.set_ylim(10, cap * 1.6)
    ax.set_xlabel("number of layers N_l (N_l - 1 weight matrices)")
    ax.set_ylabel("learning time (full-batch GD steps to threshold)")
    ax.set_title("Fig. 6A left: learning time vs depth (dots = seeds, band = min-max)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[0, 1]
    for a, arm in enumerate(ARMS):
        for s in range(best_lr.shape[1]):
            ax.scatter(n_l, best_lr[a, s], color=COLORS[arm], s=14, alpha=0.5)
        reached = np.isfinite(best_lr[a]).any(0)
        ax.plot(
            n_l[reached],
            np.nanmedian(best_lr[a][:, reached], 0),
            "-o",
            color=COLORS[arm],
            label=arm,
        )
    ax.plot(n_l, lrs[-1] * n_l[0] / n_l, "k:", lw=1, label="~ 1/N_l (reference slope)")
    ax.axhspan(lrs[0], lrs[-1], color="grey", alpha=0.08, label="learning-rate grid")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n_l, [str(v) for v in n_l])
    ax.set_ylim(lrs[0] / 2, lrs[-1] * 2)
    ax.set_xlabel("number of layers N_l")
    ax.set_ylabel("fastest learning rate of the grid")
    ax.set_title("Fig. 6A middle: optimal learning rate vs depth (reached runs)", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    deep = cfg.depths[-1]
    for a, arm in enumerate(ARMS):
        for s in range(len(cfg.seeds)):
            t = times[a, s, -1]
            lr_i = int(np.argmin(np.abs(lrs - best_lr[a, s, -1]))) if np.isfinite(t) else None
            if lr_i is None:  # never reached: the rate with the lowest final loss
                final = np.where(
                    np.isfinite(curves[deep][a, s, :, -1]), curves[deep][a, s, :, -1], np.inf
                )
                lr_i = int(np.argmin(final))
            ax.semilogy(
                curves[deep][a, s, lr_i] - l_star,
                color=COLORS[arm],
                lw=1,
                label=f"{arm} (best rate per seed)" if s == 0 else None,
            )
    ax.axhline(threshold - l_star, color="k", ls="--", lw=1, label="threshold")
    ax.set_ylim(1e-3, 20)
    ax.set_xlabel("full-batch GD step")
    ax.set_ylabel("training loss - L* (least-squares optimum)")
    ax.set_title(f"Learning curves at N_l = {deep + 1}", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    for arm in ARMS:
        for s, row in enumerate(sv[arm]):
            ax.semilogy(
                np.arange(1, row.size + 1),
                np.maximum(row, 1e-300),
                color=COLORS[arm],
                lw=1,
                label=arm if s == 0 else None,
            )
    ax.axhline(cfg.small_singular_value, color="k", ls="--", lw=1, label="0.01")
    ax.set_xlabel("index (descending)")
    ax.set_ylabel("singular value (below ~1e-15: float64 round-off)")
    ax.set_title(
        f"Fig. 6B: singular values of the product of the {deep - 1} hidden matrices at init",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.suptitle(
        "Saxe et al. 2013: deep linear nets on digits learn in depth-independent time from "
        f"orthogonal init, not from scaled Gaussian init ({len(cfg.seeds)} seeds)",
        fontsize=11,
    )
    fig.tight_layout()
    return common.save(fig, path)


if __name__ == "__main__":
    main()
