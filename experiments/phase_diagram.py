"""Order-to-chaos phase diagram of tanh networks, with their measured trainable depth overlaid.

Left: mean-field theory (``jinit.theory.phase_diagram``) on a (sigma_w**2, sigma_b**2) grid:
the correlation depth scale xi_c and the critical line chi_1 = 1. Right: tanh MLPs of width
32 and depth L, weights ``N(0, sigma_w**2 / fan_in)`` and biases ``N(0, sigma_b**2)`` with
sigma_b**2 = 0.05, trained with SGD (momentum 0.9, lr 0.01, batch 128) on scikit-learn's
``load_digits``; colour is the training accuracy after a fixed number of steps, the curve is
6 xi_c, up to which Schoenholz et al. (2017) found networks trainable. All sigma_w of one
depth train as one vmapped program.

    python experiments/phase_diagram.py            # full run (a few minutes on 2 cores)
    python experiments/phase_diagram.py --quick    # smoke run

Writes ``results.json`` and ``phase_diagram.png`` to ``--out`` (default
``runs/phase_diagram``).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common
from experiments.models import random_mlp
from jinit import theory


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=common.writable_dir, default="runs/phase_diagram")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny grid")
    p.add_argument("--seed", type=common.nonnegative_int, default=0)
    p.add_argument(
        "--sigma-b2",
        type=common.nonnegative_float,
        default=0.05,
        help="bias variance of the trained nets",
    )
    p.add_argument(
        "--steps", type=common.positive_int, default=None, help="SGD steps (default 300, quick 20)"
    )
    p.add_argument(
        "--threshold", type=common.fraction, default=0.5, help="'trainable' training accuracy"
    )
    return p.parse_args(argv)


def load_digits_standardized():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def train_accuracy(depth, sigma_ws, sigma_b, x, y, *, width, steps, key, batch=128):
    """Training accuracy after `steps` SGD steps, one tanh MLP per sigma_w (vmapped)."""
    opt = optax.sgd(1e-2, momentum=0.9)

    def logits(p, xb):
        h = random_mlp.apply(p["body"], xb, jnp.tanh)
        return jnp.tanh(h) @ p["out"]

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb).mean()

    def one(sigma_w):
        body = random_mlp.init_mlp(key, x.shape[1], width, depth, sigma_w=sigma_w, sigma_b=sigma_b)
        out = jax.random.normal(jax.random.fold_in(key, 10_000), (width, 10)) / np.sqrt(width)
        params = {"body": body, "out": out}

        def step(carry, k):
            params, state = carry
            idx = jax.random.choice(k, x.shape[0], (batch,), replace=False)
            updates, state = opt.update(jax.grad(loss)(params, x[idx], y[idx]), state, params)
            return (optax.apply_updates(params, updates), state), None

        keys = jax.random.split(jax.random.fold_in(key, 20_000), steps)
        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
        acc = jnp.mean(jnp.argmax(logits(params, x), -1) == y)
        return jnp.where(jnp.isfinite(acc), acc, 0.0)

    return jax.jit(jax.vmap(one))(sigma_ws)


def main(argv=None):
    args = parse(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        width, depths, sw2 = 8, (4, 8), np.geomspace(0.25, 16, 3)
        grid_w2, grid_b2 = np.geomspace(0.25, 16, 6), np.linspace(0.0, 0.2, 3)
    else:
        width, depths, sw2 = 32, (4, 8, 16, 32, 48, 64), np.geomspace(0.25, 16, 13)
        grid_w2, grid_b2 = np.geomspace(0.25, 16, 60), np.linspace(0.0, 0.2, 41)
    steps = args.steps or (20 if args.quick else 300)
    sigma_b = float(np.sqrt(args.sigma_b2))
    t0 = time.time()

    pd = theory.phase_diagram("tanh", jnp.sqrt(grid_w2), jnp.sqrt(grid_b2))
    line = jax.vmap(lambda s: theory.mean_field("tanh", s, sigma_b))(jnp.sqrt(jnp.asarray(sw2)))
    crit_w = float(theory.critical_sigma_w("tanh", sigma_b))

    x, y = load_digits_standardized()
    key = jax.random.key(args.seed)
    acc = np.stack(
        [
            np.asarray(
                train_accuracy(
                    d, jnp.sqrt(jnp.asarray(sw2)), sigma_b, x, y, width=width, steps=steps, key=key
                )
            )
            for d in depths
        ]
    )  # (depths, sigma_w)
    trainable = [
        max([d for d, a in zip(depths, acc[:, j], strict=True) if a >= args.threshold], default=0)
        for j in range(len(sw2))
    ]
    xi_c = np.asarray(line["xi_c"])
    results = {
        "config": {
            "width": width,
            "depths": depths,
            "sigma_w2": sw2,
            "sigma_b2": args.sigma_b2,
            "steps": steps,
            "threshold": args.threshold,
            "quick": args.quick,
            "optimizer": "sgd(lr=0.01, momentum=0.9), batch 128",
        },
        "theory": {
            "grid_sigma_w2": grid_w2,
            "grid_sigma_b2": grid_b2,
            "xi_c": np.asarray(pd["xi_c"]),
            "chi_1": np.asarray(pd["chi_1"]),
            "critical_sigma_w2": np.asarray(pd["critical_sigma_w"]) ** 2,
            "critical_sigma_w2_at_sigma_b2": crit_w**2,
            "xi_c_at_sigma_b2": xi_c,
            "six_xi_c": 6 * xi_c,
        },
        "train_accuracy": acc,
        "measured_trainable_depth": trainable,
        "seconds": None,
        "environment": common.environment(),
    }
    results["seconds"] = time.time() - t0
    common.write_json_atomic(out / "results.json", results)
    plot(results, out)
    return results


def plot(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    th, cfg = results["theory"], results["config"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    xi = np.clip(np.asarray(th["xi_c"], float), 0.5, 1e3)
    mesh = ax.pcolormesh(
        th["grid_sigma_w2"], th["grid_sigma_b2"], xi, norm=LogNorm(), shading="auto"
    )
    fig.colorbar(mesh, ax=ax, label="xi_c (layers)")
    ax.plot(th["critical_sigma_w2"], th["grid_sigma_b2"], "w-", lw=2, label="chi_1 = 1")
    ax.set_xscale("log")
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("sigma_b^2")
    ax.text(0.3, 0.1, "ordered", color="w")
    ax.text(6, 0.1, "chaotic", color="w")
    ax.set_title("tanh: correlation depth scale xi_c")
    ax.legend(loc="upper left")

    ax = axes[1]
    sw2, depths = np.asarray(cfg["sigma_w2"]), np.asarray(cfg["depths"])
    mesh = ax.pcolormesh(
        sw2, depths, np.asarray(results["train_accuracy"]), vmin=0, vmax=1, shading="nearest"
    )
    fig.colorbar(mesh, ax=ax, label="training accuracy")
    fine = np.geomspace(sw2.min(), sw2.max(), 200)
    six_xi = 6 * np.asarray(
        jax.vmap(lambda s: theory.mean_field("tanh", s, np.sqrt(cfg["sigma_b2"]))["xi_c"])(
            jnp.sqrt(jnp.asarray(fine))
        )
    )
    ax.plot(fine, np.minimum(six_xi, depths.max() * 1.2), "w-", lw=2, label="6 xi_c (theory)")
    ax.plot(
        sw2,
        results["measured_trainable_depth"],
        "r^",
        label=f"deepest with acc >= {cfg['threshold']}",
    )
    ax.axvline(th["critical_sigma_w2_at_sigma_b2"], color="w", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, depths.max() * 1.1)
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("depth L")
    ax.set_title(
        f"load_digits, width {cfg['width']}, sigma_b^2 = {cfg['sigma_b2']}, "
        f"{cfg['steps']} SGD steps"
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "phase_diagram.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
