"""Glorot & Bengio 2010: standard init shrinks deep tanh signals, normalized init keeps them level.

Paper: Xavier Glorot and Yoshua Bengio, "Understanding the difficulty of training deep
feedforward neural networks", AISTATS 2010 (PMLR 9:249-256; no arXiv id). Section 4.2 compares,
at initialization, the "standard" init ``W ~ U(-1/sqrt(n), 1/sqrt(n))`` (``n`` = fan-in,
variance ``1/(3n)``) with their "normalized" init ``W ~ U(+-sqrt(6/(n_in + n_out)))`` (variance
``2/(n_in + n_out)``) in a tanh MLP with 5 hidden layers of 1000 units, biases 0.

Claims (section 4.2.2 and the captions of Figs. 6-8):

1. ``jacobian``: the average singular value of the layer Jacobians ``J^i = dz^{i+1}/dz^i`` is
   "around 0.8" with normalized init and "drops down to 0.5" with standard init.
2. ``activations`` (Fig. 6): with standard init the activations shrink toward 0 in higher
   layers; normalized init keeps their spread level across layers.
3. ``backprop_gradients`` (Fig. 7): with standard init the back-propagated gradients
   ``dCost/ds^i`` (``s`` = pre-activations) get smaller going down toward the input; normalized
   init keeps them level.
4. ``weight_gradients`` (Fig. 8): "Even though with standard initialization the back-propagated
   gradients get smaller, the weight gradients do not" (eq. 14: the forward shrink and the
   backward shrink cancel in ``dCost/dW^i``).

Our setup: real data instead of Shapeset: the 64 standardized pixels of scikit-learn's digits
(first ``batch`` = 256 training examples). MLP 64 -> 1000 x 5 (tanh) -> 10 (softmax), biases 0,
both inits drawn from the same key per seed (so the two arms are paired), 5 seeds, all models
measured in two vmapped programs (statistics, then spectra); cost = summed cross-entropy on the
true labels. Statistics, per model: std over examples and units of each hidden layer's
activations ``z^i`` and of ``dCost/ds^i``; std of the entries of each hidden kernel's gradient of
the mean cost; Jacobian spectra of the four square hidden-to-hidden layers (1000 x 1000) at the
first ``jacobian_examples`` = 2 inputs each (the mean is self-averaging at this width: 8 inputs
gave the same means to 0.015). The first layer (64 -> 1000) and the output layer are not square,
so they are left out of the average singular value, as the paper's "consecutive layers have the
same dimension" suggests.

Criteria (fixed before the run; a claim passes only if it holds for every seed):

1. mean singular value (4 layers x inputs pooled): standard in [0.4, 0.6], normalized in
   [0.7, 0.9] (the paper's 0.5 and 0.8, +-0.1).
2. std(z^5)/std(z^1): standard < 0.5 and decreasing layer by layer; normalized in [0.5, 2].
3. std(dCost/ds^1)/std(dCost/ds^5): standard < 0.5; normalized in [0.5, 2].
4. standard init: max/min over the 5 hidden kernels of std(dCost/dW^i) < 2.

Writes ``results.json``, ``glorot2010_jacobian.png``, ``glorot2010_layers.png`` and
``glorot2010_histograms.png`` to ``--out`` (default ``runs/papers/glorot2010``).

Usage::

    python experiments/papers/glorot2010.py [--quick] [--out DIR]
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

NAME = "glorot2010"
PAPER = "Glorot & Bengio 2010"
ARMS = ("standard", "normalized")
INITS = {
    # U(-1/sqrt(n), 1/sqrt(n)): variance 1/(3 n), i.e. variance scale 1/3 over fan-in.
    "standard": jinit.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "normalized": jinit.glorot_uniform(),
}
COLORS = {"standard": "C3", "normalized": "C0"}


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    width: int = 1000
    hidden_layers: int = 5
    batch: int = 256  # training examples the statistics are taken on
    jacobian_examples: int = 2  # inputs per layer at which the Jacobian spectrum is taken
    # Criteria (fixed before the run).
    standard_sv: tuple[float, float] = (0.4, 0.6)
    normalized_sv: tuple[float, float] = (0.7, 0.9)
    shrink_ratio: float = 0.5
    level_band: tuple[float, float] = (0.5, 2.0)
    weight_grad_spread: float = 2.0


QUICK = Config(seeds=(0, 1), width=128, batch=64, jacobian_examples=2)


def layer_singular_values(w, s):
    """Singular values of ``J = dz'/dz = diag(tanh'(s)) W^T`` at each row of ``s`` (W square).

    ``J J^T = D (W^T W) D``: ``W^T W`` is formed once per layer and each input costs one
    ``eigvalsh``, where ``jinit.jacobian_singular_values`` builds each Jacobian by autodiff (a
    width-sized matmul per input) before an SVD. They agree to ~1e-3 (square roots of float32
    eigenvalues near 0).
    """
    d = 1.0 - jnp.tanh(s) ** 2  # (inputs, width)
    gram = d[:, :, None] * (w.T @ w) * d[:, None, :]
    return jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(gram), 0.0))


def measure(params, x, y):
    """Per-layer statistics of one tanh MLP at init (hidden layers only, input side first)."""

    def cost(params, eps):
        # eps (zeros) added to each pre-activation: dCost/deps is dCost/ds, per example.
        z, zs = x, []
        for p, e in zip(params[:-1], eps, strict=True):
            z = jnp.tanh(z @ p["w"] + p["b"] + e)
            zs.append(z)
        logits = z @ params[-1]["w"] + params[-1]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(), zs

    eps = [jnp.zeros((x.shape[0], p["w"].shape[1])) for p in params[:-1]]
    (g_params, g_s), zs = jax.grad(cost, argnums=(0, 1), has_aux=True)(params, eps)
    n = x.shape[0]
    return {
        "act_std": jnp.stack([z.std() for z in zs]),
        "backprop_std": jnp.stack([g.std() for g in g_s]),
        "weight_grad_std": jnp.stack([(g["w"] / n).std() for g in g_params[:-1]]),
        "activations": jnp.stack(zs),
        "backprop": jnp.stack(g_s),
    }


def spectra(params, activations):
    """Singular values of the square hidden-to-hidden Jacobians J^i = dz^{i+1}/dz^i, i >= 1.

    A program of its own: fused into ``measure``'s program, ``eigvalsh`` hung on XLA:CPU
    (jax 0.10.2), while either program alone runs.
    """

    def layer_sv(p, z_in):
        return layer_singular_values(p["w"], z_in @ p["w"] + p["b"])

    pairs = zip(params[1:-1], activations[:-1], strict=True)
    return jnp.stack([layer_sv(p, z) for p, z in pairs])


def run(cfg: Config):
    train, _ = common.digits()
    x, y = train["x"][: cfg.batch], train["y"][: cfg.batch]
    sizes = (x.shape[1],) + (cfg.width,) * cfg.hidden_layers + (10,)
    keys = common.init_keys(cfg.seeds)
    params = common.stack(
        [jax.vmap(lambda k, a=arm: common.init_mlp(k, sizes, INITS[a]))(keys) for arm in ARMS]
    )
    t0 = time.perf_counter()
    out = jax.block_until_ready(jax.jit(jax.vmap(lambda p: measure(p, x, y)))(params))
    k = cfg.jacobian_examples
    sv = jax.jit(jax.vmap(lambda p, a: spectra(p, a[:, :k])))(params, out["activations"])
    out["singular_values"] = jax.block_until_ready(sv)  # (models, layers, examples, width)
    seconds = time.perf_counter() - t0
    # (arms * seeds, ...) -> (arms, seeds, ...)
    shape = (len(ARMS), len(cfg.seeds))
    return {k: np.asarray(v).reshape(*shape, *v.shape[1:]) for k, v in out.items()}, seconds


def in_band(v, band):
    return (v >= band[0]) & (v <= band[1])


def plot_jacobian(m, cfg, path):
    plt = common.pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 2.5, 101)
    for a, arm in enumerate(ARMS):
        sv = m["singular_values"][a]
        ax.hist(
            sv.ravel(),
            bins=bins,
            density=True,
            histtype="step",
            lw=1.8,
            color=COLORS[arm],
            label=f"{arm}: mean {sv.mean():.3f}",
        )
        ax.axvline(sv.mean(), color=COLORS[arm], ls="--")
        per_layer = sv.mean(axis=(2, 3))  # (seeds, layers)
        layers = np.arange(2, per_layer.shape[1] + 2)
        for s in range(per_layer.shape[0]):
            ax2.plot(
                layers,
                per_layer[s],
                "o-",
                color=COLORS[arm],
                alpha=0.6,
                ms=3,
                label=arm if s == 0 else None,
            )
    for arm, band in (("standard", cfg.standard_sv), ("normalized", cfg.normalized_sv)):
        ax2.axhspan(*band, color=COLORS[arm], alpha=0.12)
    ax2.axhline(0.5, color="k", ls=":", lw=1)
    ax2.axhline(0.8, color="k", ls=":", lw=1, label="paper: 0.5 / 0.8")
    ax.set_xlabel("singular value of the layer Jacobian $dz^{i+1}/dz^i$")
    ax.set_ylabel("density")
    ax.set_title(f"Spectra (hidden layers 2-{cfg.hidden_layers}, all seeds and inputs)")
    ax.legend()
    ax2.set_xlabel(f"layer i+1 (Jacobian $dz^{{i+1}}/dz^i$, {cfg.width} x {cfg.width})")
    ax2.set_ylabel("mean singular value")
    ax2.set_xticks(layers)
    ax2.set_ylim(0.3, 1.0)
    ax2.set_title("Per layer, one line per seed (bands: criteria)")
    ax2.legend(fontsize=8)
    fig.suptitle(
        "Glorot & Bengio 2010: mean layer-Jacobian singular value "
        "~0.5 (standard) vs ~0.8 (normalized)"
    )
    fig.tight_layout()
    return common.save(fig, path)


def plot_layers(m, cfg, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("act_std", "std of activations $z^i$", "Fig. 6: activations"),
        ("backprop_std", "std of $dCost/ds^i$ (per example)", "Fig. 7: back-propagated gradients"),
        ("weight_grad_std", "std of $dCost/dW^i$ (batch mean)", "Fig. 8: weight gradients"),
    )
    layers = np.arange(1, cfg.hidden_layers + 1)
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
        for a, arm in enumerate(ARMS):
            v = m[key][a]  # (seeds, layers)
            ax.semilogy(layers, v.mean(0), "o-", color=COLORS[arm], label=arm)
            ax.fill_between(layers, v.min(0), v.max(0), color=COLORS[arm], alpha=0.25)
        ax.set_xlabel("hidden layer i (1 = next to the input)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(layers)
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle(
        f"Glorot & Bengio 2010, tanh MLP 64-{cfg.width}x{cfg.hidden_layers}-10 at init on digits: "
        f"mean and min-max over {len(cfg.seeds)} seeds"
    )
    fig.tight_layout()
    return common.save(fig, path)


def plot_histograms(m, cfg, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    cmap = plt.get_cmap("viridis")
    for a, arm in enumerate(ARMS):
        for row, (key, xlabel) in enumerate(
            (("activations", "activation value $z^i$"), ("backprop", "$dCost/ds^i$"))
        ):
            ax = axes[row, a]
            v = m[key][a]  # (seeds, layers, examples, units)
            lim = np.abs(v).max() if key == "backprop" else 1.0
            bins = np.linspace(-lim, lim, 81)
            for i in range(v.shape[1]):
                ax.hist(
                    v[:, i].ravel(),
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.5,
                    color=cmap(i / max(v.shape[1] - 1, 1)),
                    label=f"layer {i + 1}",
                )
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("density")
            ax.set_title(f"{arm} init")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(
        "Glorot & Bengio 2010, Figs. 6-7: standard init concentrates activations (higher layers) "
        "and gradients (lower layers) at 0"
    )
    fig.tight_layout()
    return common.save(fig, path)


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    started = time.perf_counter()
    out = pathlib.Path(args.out)
    setup = (
        f"digits (first {cfg.batch} standardized training examples), tanh MLP "
        f"64-{cfg.width}x{cfg.hidden_layers}-10, biases 0, at init, seeds {list(cfg.seeds)}"
    )
    lo, hi = cfg.level_band
    claims = {
        "jacobian": common.Claim(
            id=f"{NAME}.jacobian",
            paper=PAPER,
            claim="Average singular value of the layer Jacobians dz^{i+1}/dz^i: around 0.8 with "
            "normalized init, down to 0.5 with standard init (section 4.2.2).",
            setup=setup + f"; 4 square hidden-to-hidden Jacobians at {cfg.jacobian_examples} "
            "inputs each, spectra pooled",
            criterion=f"mean singular value: standard in [{cfg.standard_sv[0]}, "
            f"{cfg.standard_sv[1]}] and normalized in [{cfg.normalized_sv[0]}, "
            f"{cfg.normalized_sv[1]}], for every seed",
            figure="glorot2010_jacobian.png",
        ),
        "activations": common.Claim(
            id=f"{NAME}.activations",
            paper=PAPER,
            claim="With standard init the activations concentrate at 0 in higher layers "
            "(Fig. 6); normalized init keeps them level.",
            setup=setup,
            criterion=f"std(z^{cfg.hidden_layers})/std(z^1): standard < {cfg.shrink_ratio} and "
            f"decreasing layer by layer; normalized in [{lo}, {hi}], for every seed",
            figure="glorot2010_layers.png",
        ),
        "backprop_gradients": common.Claim(
            id=f"{NAME}.backprop_gradients",
            paper=PAPER,
            claim="With standard init the back-propagated gradients dCost/ds get smaller toward "
            "the input (Fig. 7); normalized init keeps them level.",
            setup=setup + "; dCost/ds per example, cost = summed cross-entropy",
            criterion=f"std(dCost/ds^1)/std(dCost/ds^{cfg.hidden_layers}): standard < "
            f"{cfg.shrink_ratio}; normalized in [{lo}, {hi}], for every seed",
            figure="glorot2010_layers.png",
        ),
        "weight_gradients": common.Claim(
            id=f"{NAME}.weight_gradients",
            paper=PAPER,
            claim="Even though with standard init the back-propagated gradients get smaller, "
            "the weight gradients do not (Fig. 8, eq. 14).",
            setup=setup + "; gradient of the mean cost over the batch",
            criterion=f"standard init: max/min over the {cfg.hidden_layers} hidden kernels of "
            f"std(dCost/dW^i) < {cfg.weight_grad_spread}, for every seed",
            figure="glorot2010_layers.png",
        ),
    }

    m, seconds = run(cfg)
    s, n = ARMS.index("standard"), ARMS.index("normalized")
    fmt = lambda v: "[" + ", ".join(f"{x:.3f}" for x in np.atleast_1d(v)) + "]"

    sv = m["singular_values"].mean(axis=(2, 3, 4))  # (arms, seeds)
    claims["jacobian"].judge(
        in_band(sv[s], cfg.standard_sv) & in_band(sv[n], cfg.normalized_sv),
        f"mean singular value: standard {sv[s].mean():.3f} (seeds {sv[s].min():.3f}-"
        f"{sv[s].max():.3f}), normalized {sv[n].mean():.3f} ({sv[n].min():.3f}-{sv[n].max():.3f})",
        standard=sv[s].tolist(),
        normalized=sv[n].tolist(),
        per_layer_mean=m["singular_values"].mean(axis=(3, 4)).mean(1).tolist(),
    )

    act = m["act_std"]  # (arms, seeds, layers)
    act_ratio = act[..., -1] / act[..., 0]
    monotone = np.all(np.diff(act[s], axis=-1) < 0, axis=-1)
    claims["activations"].judge(
        (act_ratio[s] < cfg.shrink_ratio) & monotone & in_band(act_ratio[n], cfg.level_band),
        f"std(z^last)/std(z^1): standard {fmt(act_ratio[s])}, normalized {fmt(act_ratio[n])}",
        standard_ratio=act_ratio[s].tolist(),
        normalized_ratio=act_ratio[n].tolist(),
        standard_monotone=monotone.tolist(),
        act_std_mean={arm: act[a].mean(0).tolist() for a, arm in enumerate(ARMS)},
    )

    bp = m["backprop_std"]
    bp_ratio = bp[..., 0] / bp[..., -1]
    claims["backprop_gradients"].judge(
        (bp_ratio[s] < cfg.shrink_ratio) & in_band(bp_ratio[n], cfg.level_band),
        f"std(dC/ds^1)/std(dC/ds^last): standard {fmt(bp_ratio[s])}, normalized {fmt(bp_ratio[n])}",
        standard_ratio=bp_ratio[s].tolist(),
        normalized_ratio=bp_ratio[n].tolist(),
        backprop_std_mean={arm: bp[a].mean(0).tolist() for a, arm in enumerate(ARMS)},
    )

    wg = m["weight_grad_std"]
    spread = wg.max(-1) / wg.min(-1)
    claims["weight_gradients"].judge(
        spread[s] < cfg.weight_grad_spread,
        f"max/min over layers of std(dC/dW): standard {fmt(spread[s])} "
        f"(normalized, not judged: {fmt(spread[n])})",
        standard_spread=spread[s].tolist(),
        normalized_spread=spread[n].tolist(),
        weight_grad_std_mean={arm: wg[a].mean(0).tolist() for a, arm in enumerate(ARMS)},
    )

    figures = [
        plot_jacobian(m, cfg, out / "glorot2010_jacobian.png"),
        plot_layers(m, cfg, out / "glorot2010_layers.png"),
        plot_histograms(m, cfg, out / "glorot2010_histograms.png"),
    ]
    return common.finish(
        out,
        NAME,
        list(claims.values()),
        cfg,
        started,
        args.quick,
        data=common.digits_source(),
        measure_s=seconds,
        figures=figures,
    )


if __name__ == "__main__":
    main()
