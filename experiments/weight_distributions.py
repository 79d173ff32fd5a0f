"""Weight distributions: what zero, normal, Glorot and He initializers draw, and how training
on real data moves a network's weights away from its initialization.

Part 1 samples a 1000 x 1000 kernel (a 1000-unit layer fed by 1000 units) from each
initializer. Part 2 trains a 64-128-128-10 ReLU MLP (He normal) on scikit-learn's
``load_digits`` (8x8 handwritten digits, 1797 images) with Adam and compares each layer's
kernel before and after, along with the layer statistics of ``jinit.layer_statistics``.

    python experiments/weight_distributions.py            # full run (about a minute on 2 cores)
    python experiments/weight_distributions.py --quick    # smoke run (a few seconds)

Writes ``results.json``, ``init_histograms.png`` and ``trained_weights.png`` to ``--out``
(default ``runs/weight_distributions``).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import jinit
from experiments import common

INITS = {
    "zeros": (jinit.zeros(), 0.0),
    "normal(std=0.01)": (jinit.normal(0.01), 0.01),
    "glorot_normal": (jinit.glorot_normal(), (2.0 / 2000) ** 0.5),
    "he_normal": (jinit.he_normal(), (2.0 / 1000) ** 0.5),
}
SIZES = (64, 128, 128, 10)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=common.writable_dir, default="runs/weight_distributions")
    p.add_argument("--quick", action="store_true", help="smoke run: few steps")
    p.add_argument("--seed", type=common.nonnegative_int, default=0)
    p.add_argument(
        "--steps",
        type=common.positive_int,
        default=None,
        help="training steps (default 2000, quick 20)",
    )
    return p.parse_args(argv)


def load_digits_split(seed):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[perm] / 16.0).astype(np.float32), y[perm].astype(np.int32)
    n_train = int(0.8 * len(x))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


MODEL = nn.Sequential(
    [
        nn.Dense(SIZES[1], kernel_init=jinit.he_normal()),
        nn.relu,
        nn.Dense(SIZES[2], kernel_init=jinit.he_normal()),
        nn.relu,
        nn.Dense(SIZES[3], kernel_init=jinit.he_normal()),
    ]
)
LAYERS = ("layers_0", "layers_2", "layers_4")


def apply_mlp(params, x):
    return MODEL.apply({"params": params}, x)


def xent(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()


def train(params, data, steps, key, batch_size=64):
    opt = optax.adam(1e-3)
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])

    def step(carry, k):
        params, state = carry
        idx = jax.random.choice(k, x.shape[0], (batch_size,), replace=False)
        grads = jax.grad(lambda p: xent(apply_mlp(p, x[idx]), (None, y[idx])))(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    run = jax.jit(lambda p, ks: jax.lax.scan(step, (p, opt.init(p)), ks)[0][0])
    return run(params, jax.random.split(key, steps))


def accuracy(params, data):
    return float(jnp.mean(jnp.argmax(apply_mlp(params, jnp.asarray(data[0])), -1) == data[1]))


def summary(w):
    w = np.asarray(w, np.float64).ravel()
    return {"mean": w.mean(), "std": w.std(), "min": w.min(), "max": w.max()}


def main(argv=None):
    args = parse(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (20 if args.quick else 2000)
    key = jax.random.key(args.seed)
    t0 = time.time()

    samples = {
        name: np.asarray(init(jax.random.fold_in(key, i), (1000, 1000)))
        for i, (name, (init, _)) in enumerate(INITS.items())
    }
    init_results = {
        name: {**summary(w), "expected_std": INITS[name][1]} for name, w in samples.items()
    }

    train_data, test_data = load_digits_split(args.seed)
    params0 = MODEL.init(jax.random.fold_in(key, 100), jnp.zeros((1, SIZES[0])))["params"]
    params1 = train(params0, train_data, steps, jax.random.fold_in(key, 101))
    stats_fn = jax.jit(lambda p, b: jinit.layer_statistics(MODEL, p, b, xent))
    batch = (jnp.asarray(test_data[0]), jnp.asarray(test_data[1]))
    layers = {}
    for name in LAYERS:
        before, after = params0[name], params1[name]
        layers[name] = {
            "shape": list(before["kernel"].shape),
            "before": summary(before["kernel"]),
            "after": summary(after["kernel"]),
            "change_std_over_init_std": float(
                np.std(after["kernel"] - before["kernel"]) / np.std(before["kernel"])
            ),
        }
    results = {
        "config": {"steps": steps, "seed": args.seed, "quick": args.quick, "sizes": SIZES},
        "initializers_1000x1000": init_results,
        "digits": {
            "test_accuracy_before": accuracy(params0, test_data),
            "test_accuracy_after": accuracy(params1, test_data),
            "layers": layers,
            "layer_statistics_before": {k: float(v) for k, v in stats_fn(params0, batch).items()},
            "layer_statistics_after": {k: float(v) for k, v in stats_fn(params1, batch).items()},
        },
        "seconds": time.time() - t0,
        "environment": common.environment(),
    }
    common.write_json_atomic(out / "results.json", results)
    plot(samples, params0, params1, results, out)
    return results


def plot(samples, params0, params1, results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, (name, w) in zip(axes, samples.items(), strict=True):
        r = results["initializers_1000x1000"][name]
        if r["std"] == 0:
            ax.bar([0.0], [w.size], width=0.002)
            ax.set_xlim(-0.01, 0.01)
        else:
            ax.hist(w.ravel(), bins=100, density=True)
        ax.set_title(f"{name}\nstd {r['std']:.4f} (expected {r['expected_std']:.4f})", fontsize=9)
        ax.set_xlabel("weight")
    fig.suptitle("1000 x 1000 kernel samples")
    fig.tight_layout()
    fig.savefig(out / "init_histograms.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(LAYERS), figsize=(4 * len(LAYERS), 3.4))
    digits = results["digits"]
    for name, ax in zip(LAYERS, axes, strict=True):
        before = np.asarray(params0[name]["kernel"]).ravel()
        after = np.asarray(params1[name]["kernel"]).ravel()
        bins = np.linspace(min(before.min(), after.min()), max(before.max(), after.max()), 60)
        ax.hist(before, bins=bins, alpha=0.6, density=True, label="init (he_normal)")
        ax.hist(after, bins=bins, alpha=0.6, density=True, label="trained")
        lay = digits["layers"][name]
        ax.set_title(
            f"{name} {tuple(lay['shape'])}: std {lay['before']['std']:.3f} -> "
            f"{lay['after']['std']:.3f}",
            fontsize=9,
        )
        ax.legend(fontsize=8)
    fig.suptitle(
        f"load_digits MLP, {results['config']['steps']} Adam steps: test accuracy "
        f"{digits['test_accuracy_before']:.2f} -> {digits['test_accuracy_after']:.3f}"
    )
    fig.tight_layout()
    fig.savefig(out / "trained_weights.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
