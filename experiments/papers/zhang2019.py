"""Zhang et al. 2019 (Fixup): an unnormalized ResNet explodes at He init and trains with Fixup.

Paper: Hongyi Zhang, Yann N. Dauphin, Tengyu Ma, "Fixup Initialization: Residual Learning
Without Normalization", ICLR 2019, arXiv:1901.09321.

Claims (paraphrased):

* Section 2: in a residual network without normalization, a standard initialization (He)
  makes every block add a branch whose variance is comparable to its input's, so the variance
  of the activations -- and of the logits -- grows exponentially with the number of blocks; Fixup
  (zero last layer in every branch, zero classifier) keeps the forward signal O(1) at init.
* Sections 3-4 (Figure 2, CIFAR-10): without normalization, a deep ResNet with the standard
  initialization fails to train at the learning rate used with batch normalization, while the
  same network with Fixup trains at that rate.

Setup (digits, ``common.digits()``: 1,437 train / 360 test real 8x8 digits, standardised): an
MLP ResNet, stem ``Dense(64 -> 64)`` + ReLU, then ``L = 32`` residual blocks
``x <- relu(x + branch(x))`` with ``branch = Dense -> ReLU -> Dense`` (``m = 2``, width 64),
then ``Dense(64 -> 10)`` logits. The ReLU comes *after* the addition, as in the paper's Fixup
CIFAR ResNets (and the original ResNet); with Fixup such a block is exactly the identity at init
(its input is already non-negative). Every arm has the Fixup architecture: scalar biases (init 0)
before each Dense and ReLU, a scalar multiplier (init 1) at the end of every branch, bias-free
Dense layers except the classifier; these scalars are the identity at init, so the arms differ
only in their initialization and all arms x seeds train as ONE vmapped program. Arms:

* ``he``: ``jinit.he_normal()`` for every kernel (stem, both branch layers, classifier);
* ``fixup``: He stem; first branch layers ``jinit.fixup(L, 2)`` (He x ``L^(-1/2)``); last
  branch layers and classifier ``jinit.zeros()``;
* ``zero_last`` (ablation, no claim): as ``fixup`` without the ``L^(-1/2)`` rescaling.

Training follows the reference CIFAR script (hongyi-zhang/Fixup ``cifar_train.py``): SGD,
momentum 0.9, lr 0.1 (the BN learning rate; 0.01 for the scalar biases and multipliers), weight
decay 1e-4, batch 128; here 500 steps (~45 epochs), constant lr, no mixup (a regularizer, not
part of the claims). Seeds 0-4; one init key per seed, shared by the arms (paired).

Criteria (fixed before the run; a claim passes only if it holds for every seed):

* ``zhang2019.he_variance_explodes``: at init, on the whole training set, He's logit variance
  is >= 1e3 x the input variance, and the activation variance grows by a factor >= 1.25 per
  block on average (``(var_L / var_0)^(1/L)``; no growth is 1, and a He branch adds about twice
  its input's second moment, so the pre-ReLU sum has ~3x it and the post-addition ReLU keeps
  between half and all of that: 1.5-3).
* ``zhang2019.fixup_variance_flat``: at init, Fixup's activation variance after every block is
  within a factor 2 of its value after the stem, and its logit variance is <= the input's.
* ``zhang2019.he_fails_to_train``: the He arm diverges (a non-finite training loss) or ends
  at test accuracy < 0.2 (chance is 0.1).
* ``zhang2019.fixup_trains``: the Fixup arm's training loss stays finite and its test
  accuracy after 500 steps is >= 0.9.

Writes ``results.json``, ``init_variance.png`` and ``training.png`` to ``--out``.

Usage::

    python experiments/papers/zhang2019.py [--quick] [--out runs/papers/zhang2019]
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

NAME = "zhang2019"
PAPER = "Zhang et al. 2019"
ARMS = ("he", "fixup", "zero_last")
COLORS = {"he": "C3", "fixup": "C0", "zero_last": "C2"}
SCALARS = ("bias", "bias1a", "bias1b", "bias2a", "bias2b", "bias_in", "scale")


@dataclasses.dataclass(frozen=True)
class Config:
    blocks: int = 32
    width: int = 64
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 500
    batch_size: int = 128
    learning_rate: float = 0.1
    scalar_lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    log_every: int = 10
    he_logit_var_ratio: float = 1e3
    he_growth_per_block: float = 1.25
    fixup_var_band: float = 2.0
    he_fail_accuracy: float = 0.2
    fixup_accuracy: float = 0.9


QUICK = Config(blocks=8, seeds=(0, 1), steps=30, log_every=5)


def init_params(key: jax.Array, arm: str, cfg: Config) -> dict:
    """One model's params; the same key gives every arm the same stem and branch directions."""
    L, w = cfg.blocks, cfg.width
    k_stem, k1, k2, k_head = jax.random.split(key, 4)
    he, zeros = jinit.he_normal(), jinit.zeros()
    he_stack = jinit.he_normal(batch_axis=0)  # (L, in, out): fans per block, not over L
    first = jinit.fixup(L, 2, he_stack) if arm == "fixup" else he_stack
    last, head = (he_stack, he) if arm == "he" else (zeros, zeros)
    full = lambda v: jnp.full((L,), v, jnp.float32)
    return {
        "stem": {"kernel": he(k_stem, (64, w)), "bias": jnp.zeros(())},
        "blocks": {
            "kernel1": first(k1, (L, w, w)),
            "kernel2": last(k2, (L, w, w)),
            **{b: full(0.0) for b in ("bias1a", "bias1b", "bias2a", "bias2b")},
            "scale": full(1.0),
        },
        "head": {"bias_in": jnp.zeros(()), "kernel": head(k_head, (w, 10)), "bias": jnp.zeros(10)},
    }


def forward(params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Logits and the activation variance after the stem and after every block ``(L + 1,)``."""
    h = jax.nn.relu(x @ params["stem"]["kernel"] + params["stem"]["bias"])

    def block(h, p):
        r = jax.nn.relu((h + p["bias1a"]) @ p["kernel1"] + p["bias1b"])
        r = ((r + p["bias2a"]) @ p["kernel2"]) * p["scale"] + p["bias2b"]
        h = jax.nn.relu(h + r)  # post-addition ReLU, as the paper's ResNets
        return h, jnp.var(h)

    h0 = h
    h, var = jax.lax.scan(block, h, params["blocks"])
    head = params["head"]
    logits = (h + head["bias_in"]) @ head["kernel"] + head["bias"]
    return logits, jnp.concatenate([jnp.var(h0)[None], var])


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """SGD + momentum + weight decay; scalar biases/multipliers at lr/10 (reference code)."""

    def sgd(lr):
        return optax.chain(
            optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr, momentum=cfg.momentum)
        )

    def labels(params):
        leaf = lambda path, _: "scalar" if path[-1].key in SCALARS else "weight"
        return jax.tree_util.tree_map_with_path(leaf, params)

    lr = cfg.learning_rate
    return optax.multi_transform(
        {"weight": sgd(lr), "scalar": sgd(lr * cfg.scalar_lr_factor)}, labels
    )


def measure_init(params: dict, x: jax.Array) -> dict[str, np.ndarray]:
    """Per-model activation variances ``(M, L + 1)`` and logit variance ``(M,)`` on ``x``."""
    logits, var = jax.jit(jax.vmap(forward, in_axes=(0, None)))(params, x)
    return {"block_var": np.asarray(var), "logit_var": np.asarray(jnp.var(logits, axis=(1, 2)))}


def build_claims(cfg: Config) -> dict[str, common.Claim]:
    setup = (
        f"digits; MLP ResNet, stem Dense(64->{cfg.width}), {cfg.blocks} blocks "
        f"x <- relu(x + Dense(relu(Dense(x)))) (m = 2, post-addition ReLU, Fixup scalar biases and "
        f"multipliers in every arm), Dense -> 10; SGD lr {cfg.learning_rate} momentum "
        f"{cfg.momentum}, wd {cfg.weight_decay}, batch {cfg.batch_size}, {cfg.steps} steps; "
        f"seeds {list(cfg.seeds)}"
    )
    return {
        "he_var": common.Claim(
            id=f"{NAME}.he_variance_explodes",
            paper=PAPER,
            claim="Without normalization, a ResNet at He init has activation and output "
            "variance growing exponentially with depth (Section 2).",
            setup=setup + "; variances at init on the whole training set",
            criterion=f"He: logit var >= {cfg.he_logit_var_ratio:g} x input var AND mean growth "
            f"per block (var_L/var_0)^(1/L) >= {cfg.he_growth_per_block}, every seed",
            figure="init_variance.png",
        ),
        "fixup_var": common.Claim(
            id=f"{NAME}.fixup_variance_flat",
            paper=PAPER,
            claim="Fixup (zero last branch layers and classifier) keeps the forward signal O(1) "
            "at init, whatever the depth (Section 3). Holds by construction (every branch and "
            "the classifier output exactly 0 at init): a check of the implementation, not of "
            "the L^(-1/(2m-2)) rescaling, which the training claims test.",
            setup=setup + "; variances at init on the whole training set",
            criterion=f"Fixup: every block's activation var within a factor {cfg.fixup_var_band:g}"
            " of the stem's AND logit var <= input var, every seed",
            figure="init_variance.png",
        ),
        "he_fails": common.Claim(
            id=f"{NAME}.he_fails_to_train",
            paper=PAPER,
            claim="Without normalization, a deep ResNet with the standard init fails to train at "
            "the learning rate used with batch normalization (Figure 2, CIFAR-10).",
            setup=setup,
            criterion="He: a non-finite training loss at some step OR test accuracy < "
            f"{cfg.he_fail_accuracy} after {cfg.steps} steps, every seed",
            figure="training.png",
        ),
        "fixup_trains": common.Claim(
            id=f"{NAME}.fixup_trains",
            paper=PAPER,
            claim="With Fixup the same unnormalized ResNet trains stably at that learning rate "
            "(Figure 2, Sections 4-5).",
            setup=setup,
            criterion=f"Fixup: finite training loss at every step AND test accuracy >= "
            f"{cfg.fixup_accuracy} after {cfg.steps} steps, every seed",
            figure="training.png",
        ),
    }


def plot(cfg: Config, init: dict, trained: dict, runs: dict, out: pathlib.Path) -> list[str]:
    plt = common.pyplot()
    blocks = np.arange(cfg.blocks + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, stats, when in ((axes[0], init, "at init"), (axes[1], trained, "after training")):
        for arm in ARMS:
            style = "--" if arm == "zero_last" else "-"
            for s, v in enumerate(stats[arm]["block_var"]):
                if np.all(np.isfinite(v)):
                    ax.semilogy(
                        blocks,
                        v,
                        style,
                        color=COLORS[arm],
                        lw=1.2,
                        alpha=0.8,
                        label=arm if s == 0 else None,
                    )
        ax.set_xlabel("residual block (0 = stem output)")
        ax.set_title(
            when + (" (zero_last = fixup)" if when == "at init" else " (non-finite not drawn)")
        )
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("activation variance (training set)")
    axes[0].legend(title=f"{len(cfg.seeds)} seeds each")
    fig.suptitle(
        f"Zhang et al. 2019 claim: at He init an unnormalized ResNet's variance explodes with "
        f"depth, Fixup keeps it flat ({cfg.blocks} blocks, width {cfg.width})",
        fontsize=10,
    )
    fig.tight_layout()
    names = [common.save(fig, out / "init_variance.png")]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    t = np.arange(1, cfg.steps + 1)
    for arm in ARMS:
        for s, c in enumerate(runs[arm]["loss"]):
            n = int(np.argmin(np.isfinite(c))) if not np.isfinite(c).all() else c.size
            ax.loglog(
                t[:n], c[:n], color=COLORS[arm], lw=0.8, alpha=0.7, label=arm if s == 0 else None
            )
            if 0 < n < c.size:  # the last finite loss before the run went non-finite
                ax.loglog(t[n - 1], c[n - 1], "x", color=COLORS[arm], ms=9, mew=2)
    ax.axhline(common.LN10, color="grey", ls=":", lw=1, label="ln 10 (chance)")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (per step)")
    ax.set_title("training loss, every seed (x: last finite value before NaN/inf)")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    for i, arm in enumerate(ARMS):
        acc = runs[arm]["test_accuracy"]
        ax2.scatter(np.full(acc.size, i) + np.linspace(-0.1, 0.1, acc.size), acc, color=COLORS[arm])
    ax2.axhline(cfg.fixup_accuracy, color=COLORS["fixup"], ls="--", lw=1, label="fixup criterion")
    ax2.axhline(cfg.he_fail_accuracy, color=COLORS["he"], ls="--", lw=1, label="he-fails criterion")
    ax2.set_xticks(range(len(ARMS)), ARMS)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel(f"test accuracy after {cfg.steps} steps")
    ax2.set_title("test accuracy, one dot per seed")
    ax2.legend(loc="center right", fontsize=8)
    fig.suptitle(
        f"Zhang et al. 2019 claim: at SGD lr {cfg.learning_rate} an unnormalized "
        f"{cfg.blocks}-block ResNet diverges from He init and trains from Fixup",
        fontsize=10,
    )
    fig.tight_layout()
    names.append(common.save(fig, out / "training.png"))
    return names


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    out = pathlib.Path(args.out)
    claims = build_claims(cfg)
    started = time.perf_counter()

    train, test = common.digits()
    keys = common.init_keys(cfg.seeds)
    params = common.stack(
        [jax.vmap(lambda k, a=arm: init_params(k, a, cfg))(keys) for arm in ARMS]
    )  # (arms * seeds, ...)
    n_seeds = len(cfg.seeds)
    split = lambda a: {arm: a[i * n_seeds : (i + 1) * n_seeds] for i, arm in enumerate(ARMS)}

    input_var = float(jnp.var(train["x"]))
    at_init = measure_init(params, train["x"])
    init = {arm: {k: split(v)[arm] for k, v in at_init.items()} for arm in ARMS}

    apply_fn = lambda p, x: forward(p, x)[0]
    idx = common.minibatch_indices(cfg.seeds, cfg.steps, cfg.batch_size, train["x"].shape[0])
    res = common.train_models(
        common.softmax_loss(apply_fn),
        params,
        train,
        jnp.tile(idx, (len(ARMS), 1, 1)),
        optimizer(cfg),
        test,
    )
    after = measure_init(res["params"], train["x"])
    trained = {arm: {k: split(v)[arm] for k, v in after.items()} for arm in ARMS}
    runs = {arm: {k: split(res[k])[arm] for k in ("loss", "test_accuracy")} for arm in ARMS}

    # (a) the forward signal at init.
    he, fx = init["he"], init["fixup"]
    he_ratio = he["logit_var"] / input_var
    he_growth = (he["block_var"][:, -1] / he["block_var"][:, 0]) ** (1.0 / cfg.blocks)
    claims["he_var"].judge(
        (he_ratio >= cfg.he_logit_var_ratio) & (he_growth >= cfg.he_growth_per_block),
        f"logit var / input var {he_ratio.min():.3g}..{he_ratio.max():.3g}; growth per block "
        f"{he_growth.min():.3f}..{he_growth.max():.3f}",
        input_var=input_var,
        logit_var_ratio=he_ratio.tolist(),
        growth_per_block=he_growth.tolist(),
    )
    band = fx["block_var"] / fx["block_var"][:, :1]
    fx_ok = np.all((band <= cfg.fixup_var_band) & (band >= 1 / cfg.fixup_var_band), axis=1)
    claims["fixup_var"].judge(
        fx_ok & (fx["logit_var"] <= input_var),
        f"block var / stem var in [{band.min():.3g}, {band.max():.3g}]; logit var "
        f"max {fx['logit_var'].max():.3g} (input var {input_var:.3g})",
        block_var_over_stem_min=band.min(1).tolist(),
        block_var_over_stem_max=band.max(1).tolist(),
        logit_var=fx["logit_var"].tolist(),
    )

    # (b) training at the BN learning rate.
    finite = {arm: np.isfinite(runs[arm]["loss"]).all(1) for arm in ARMS}
    first_bad = {
        arm: [
            int(np.argmin(np.isfinite(r))) + 1 if not f else None  # steps count from 1
            for r, f in zip(runs[arm]["loss"], finite[arm], strict=True)
        ]
        for arm in ARMS
    }
    acc = {arm: runs[arm]["test_accuracy"] for arm in ARMS}
    claims["he_fails"].judge(
        ~finite["he"] | (acc["he"] < cfg.he_fail_accuracy),
        f"non-finite loss in {int((~finite['he']).sum())}/{n_seeds} seeds (first bad step "
        f"{first_bad['he']}); test acc {acc['he'].min():.3f}..{acc['he'].max():.3f}",
        first_nonfinite_step=first_bad["he"],
        test_accuracy=acc["he"].tolist(),
    )
    claims["fixup_trains"].judge(
        finite["fixup"] & (acc["fixup"] >= cfg.fixup_accuracy),
        f"test acc {acc['fixup'].mean():.3f} (min {acc['fixup'].min():.3f}, max "
        f"{acc['fixup'].max():.3f}); finite loss in {int(finite['fixup'].sum())}/{n_seeds} seeds",
        test_accuracy=acc["fixup"].tolist(),
        final_train_loss=common.smooth(runs["fixup"]["loss"], cfg.log_every)[:, -1].tolist(),
    )

    figures = plot(cfg, init, trained, runs, out)
    arms = {
        arm: {
            "init_block_var": init[arm]["block_var"].tolist(),
            "init_logit_var": init[arm]["logit_var"].tolist(),
            "trained_block_var": np.asarray(trained[arm]["block_var"]),
            "test_accuracy": acc[arm].tolist(),
            "finite_loss": finite[arm].tolist(),
            "first_nonfinite_step": first_bad[arm],
            "initial_loss": np.asarray(runs[arm]["loss"][:, 0]),
            "loss_curve": np.asarray(common.smooth(runs[arm]["loss"], cfg.log_every)),
        }
        for arm in ARMS
    }
    return common.finish(
        out,
        NAME,
        list(claims.values()),
        cfg,
        started,
        args.quick,
        data=common.digits_source(),
        arms=arms,
        figures=figures,
        fixup_scale=jinit.fixup_scale(cfg.blocks, 2),
        train_s=res["train_s"],
    )


if __name__ == "__main__":
    main()
