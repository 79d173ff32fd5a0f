"""Signal propagation: a 10-layer MLP fed Gaussian input, final-layer activation statistics
against the initial weight scale, with the mean-field prediction overlaid.

Weights are ``N(0, std**2)`` with ``std`` on a log grid from 1e-4 to 10 (no fan scaling, as in
the classic demonstration), biases 0, input ``x ~ N(0, I)`` of the layer width. The whole grid
times all seeds is one ``vmap``. Mean-field theory (``jinit.theory.propagate``) predicts the
pre-activation second moment q_l with ``sigma_w = std * sqrt(width)``, hence the final
activation's mean and std; float64 is used because ReLU nets at std = 10 reach 1e40.

    python experiments/signal_propagation.py            # full run
    python experiments/signal_propagation.py --quick    # smoke run

Writes ``results.json`` and ``signal_propagation.png`` to ``--out`` (default
``runs/signal_propagation``).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from jinit import theory

ACTIVATIONS = ("relu", "tanh")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=common.writable_dir, default="runs/signal_propagation")
    p.add_argument("--quick", action="store_true", help="smoke run: coarse grid, narrow net")
    p.add_argument("--seed", type=common.nonnegative_int, default=0)
    p.add_argument("--depth", type=common.positive_int, default=10)
    return p.parse_args(argv)


def measure(activation, stds, keys, x, depth, width):
    """Final-layer activation mean/std for every (seed, std): shape (seeds, len(stds))."""

    def one(key, std):
        sim = theory.simulate(key, x, activation, std * np.sqrt(width), depth=depth, width=width)
        return sim["act_mean"][-1], sim["act_std"][-1]

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))(keys, stds)


def predict(activation, stds, depth, width, q_in):
    def one(std):
        q = theory.propagate(activation, std * np.sqrt(width), 0.0, depth=depth, q_in=q_in)["q"]
        m = theory.post_activation_moments(activation, q[-1])
        return m["mean"], m["std"], q[-1]

    return jax.jit(jax.vmap(one))(stds)


def main(argv=None):
    with jax.enable_x64(True):  # float64 for this study only (the library never sets it)
        return run(parse(argv))


def run(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, batch, n_std, n_seeds = (32, 32, 6, 2) if args.quick else (256, 256, 41, 4)
    stds = jnp.logspace(-4, 1, n_std)
    key = jax.random.key(args.seed)
    x = jax.random.normal(jax.random.fold_in(key, 0), (batch, width), jnp.float64)
    keys = jax.random.split(jax.random.fold_in(key, 1), n_seeds)
    q_in = float(jnp.mean(x**2))
    t0 = time.time()
    results = {
        "config": {
            "depth": args.depth,
            "width": width,
            "batch": batch,
            "seeds": n_seeds,
            "stds": np.asarray(stds),
            "quick": args.quick,
            "input_second_moment": q_in,
        },
        "activations": {},
    }
    for act in ACTIVATIONS:
        m_mean, m_std = measure(act, stds, keys, x, args.depth, width)
        p_mean, p_std, p_q = predict(act, stds, args.depth, width, q_in)
        m_std_avg = np.asarray(m_std).mean(0)
        rel = np.abs(m_std_avg - np.asarray(p_std)) / np.asarray(p_std)
        results["activations"][act] = {
            "measured_mean": np.asarray(m_mean),
            "measured_std": np.asarray(m_std),
            "predicted_mean": np.asarray(p_mean),
            "predicted_std": np.asarray(p_std),
            "predicted_q_final": np.asarray(p_q),
            "std_relative_error": rel,
            "median_std_relative_error": float(np.median(rel)),
            "max_std_relative_error": float(np.max(rel)),
        }
    # The scale each textbook rule picks on this grid's axis, for the plot and the docs.
    results["reference_stds"] = {
        "he (sqrt(2/width))": float(np.sqrt(2 / width)),
        "lecun / critical tanh (sqrt(1/width))": float(np.sqrt(1 / width)),
    }
    results["seconds"] = time.time() - t0
    results["environment"] = common.environment()
    common.write_json_atomic(out / "results.json", results)
    plot(results, out)
    return results


def plot(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stds = np.asarray(results["config"]["stds"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 7.5))
    for row, act in enumerate(ACTIVATIONS):
        r = results["activations"][act]
        m_mean, m_std = np.asarray(r["measured_mean"]), np.asarray(r["measured_std"])
        p_mean, p_std = np.asarray(r["predicted_mean"]), np.asarray(r["predicted_std"])
        odd = np.all(np.abs(p_mean) < 1e-9 * p_std)  # tanh: the theory's mean is exactly 0
        panels = (
            ("|mean|", np.abs(m_mean), None if odd else np.abs(p_mean), "log"),
            ("std", m_std, p_std, "log"),
            ("mean / std", m_mean / m_std, p_mean / p_std, "linear"),
        )
        for col, (label, measured, predicted, yscale) in enumerate(panels):
            ax = axes[row, col]
            for s, m in enumerate(measured):
                ax.plot(
                    stds, m, "o", ms=3, alpha=0.6, label="measured (per seed)" if s == 0 else None
                )
            if predicted is not None:
                ax.plot(stds, predicted, "-", lw=1.5, label="mean-field prediction")
            else:
                ax.text(0.05, 0.9, "mean-field: 0 (odd activation)", transform=ax.transAxes)
            for name, v in results["reference_stds"].items():
                ax.axvline(v, ls=":", c="gray")
                ax.text(
                    v,
                    0.02,
                    name.split(" ")[0],
                    rotation=90,
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                )
            ax.set_xscale("log")
            ax.set_yscale(yscale)
            ax.set_xlabel("weight init std")
            ax.set_title(f"{act}: {label} of the layer-{results['config']['depth']} activation")
            ax.legend(fontsize=8, loc="lower right" if col < 2 else "best")
    cfg = results["config"]
    fig.suptitle(f"{cfg['depth']}-layer MLP, width {cfg['width']}, Gaussian input")
    fig.tight_layout()
    fig.savefig(out / "signal_propagation.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
