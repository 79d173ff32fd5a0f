"""Depth study: does LSUV start deep plain networks training as fast as He/Glorot/orthogonal?

Mishkin & Matas (2015, arXiv:1511.06422) claim that LSUV (orthonormal pre-init, then each
layer's output scaled to unit variance on a batch of data) lets very deep plain networks train
from the start, as fast as or faster than the standard initializations. This study checks the
claim at a size a 2-core CPU runs in minutes, on real data: scikit-learn's ``load_digits``
(1797 real 8x8 handwritten digits, shipped with scikit-learn, no download), plain MLPs of
10-30 Dense layers (width 64, tanh or ReLU, no normalization, no skip connections), SGD with
momentum, several seeds.

Arms (same architecture, same optimizer, same data order per seed):

* ``he``: ``jinit.he_normal()`` kernels;  ``glorot``: ``jinit.glorot_normal()``;
* ``orthogonal``: ``jinit.lsuv_ready_orthogonal()`` (the LSUV pre-init, unscaled);
* ``lsuv``: the same orthogonal kernels, then ``jinit.lsuv`` on one training batch of 256.

Every (depth, activation) pair is ONE compiled training program: the 4 arms x seeds are stacked
on a model axis and trained with ``vmap`` (``jinit.make_train_chunk``). Per-layer pre-activation
variances on the LSUV batch are recorded for every arm (and LSUV's report gives before/after).

Writes ``results.json``, ``loss_curves.png`` and ``layer_variance.png`` to ``--out``
(default ``runs/lsuv_depth``). ``--quick`` (one depth, 2 seeds, 80 steps) runs in well under 30 s.

Usage::

    python experiments/lsuv_depth.py [--quick] [--out runs/lsuv_depth]
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments import common

ARMS = ("he", "glorot", "orthogonal", "lsuv")
KERNEL_INITS = {
    "he": jinit.he_normal(),
    "glorot": jinit.glorot_normal(),
    "orthogonal": jinit.lsuv_ready_orthogonal(),
    "lsuv": jinit.lsuv_ready_orthogonal(),
}


@dataclasses.dataclass(frozen=True)
class Config:
    depths: tuple[int, ...] = (10, 20, 30)
    activations: tuple[str, ...] = ("tanh", "relu")
    width: int = 64
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 400
    batch_size: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    lsuv_batch_size: int = 256
    test_fraction: float = 0.2
    split_seed: int = 0
    log_every: int = 10
    loss_thresholds: tuple[float, ...] = (1.0, 0.5)


QUICK = Config(depths=(10,), seeds=(0, 1), steps=80, log_every=5)


class DeepMLP(nn.Module):
    """``depth`` Dense layers: ``depth - 1`` hidden of ``width`` with ``act``, then 10 logits."""

    depth: int
    width: int
    act: str
    kernel_init: object = jinit.lsuv_ready_orthogonal()

    @nn.compact
    def __call__(self, x):
        act = getattr(jax.nn, self.act)
        for _ in range(self.depth - 1):
            x = act(nn.Dense(self.width, kernel_init=self.kernel_init)(x))
        return nn.Dense(10, kernel_init=self.kernel_init)(x)


def load_data(cfg: Config):
    """Digits, pixels standardised with training-set statistics, a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=cfg.test_fraction, random_state=cfg.split_seed, stratify=d.target
    )
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
    norm = lambda a: ((a - mu) / sd).astype(np.float32)
    train = {"x": jnp.asarray(norm(xtr)), "y": jnp.asarray(ytr, jnp.int32)}
    test = {"x": jnp.asarray(norm(xte)), "y": jnp.asarray(yte, jnp.int32)}
    return train, test


def layer_variances(model, params, x) -> np.ndarray:
    """Variance of every Dense output (pre-activation) on ``x``, in forward order."""
    _, st = model.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
    it = st["intermediates"]
    names = sorted((k for k in it if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    return np.array([float(jnp.var(it[k]["__call__"][0])) for k in names])


def run_pair(cfg: Config, depth: int, act: str, train, test) -> dict:
    """All arms x seeds of one (depth, activation), trained as one vmapped program."""
    model = DeepMLP(depth, cfg.width, act)
    xb = train["x"][: cfg.lsuv_batch_size]
    seeds = list(cfg.seeds)
    keys = jax.random.split(jax.random.key(1234), len(seeds))  # same init key per seed, all arms
    t0 = time.perf_counter()
    members, reports = [], {}
    for arm in ARMS:
        init_model = DeepMLP(depth, cfg.width, act, KERNEL_INITS[arm])
        params = jax.vmap(lambda k, m=init_model: m.init(k, xb[:1]))(keys)
        if arm == "lsuv":
            params, rep = jax.vmap(lambda p: jinit.lsuv(model, p, xb))(params)
            rep.check()
            reports = rep
        members.append(params)
    t_init = time.perf_counter() - t0
    stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *members)  # (arms * seeds, ...)
    n_models = len(ARMS) * len(seeds)

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    optimizer = optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    chunk = jinit.make_train_chunk(loss_fn, optimizer)
    n = train["x"].shape[0]
    # Each member draws its own minibatches from its seed; the arms of one seed share them.
    idx = jax.vmap(lambda k: jax.random.randint(k, (cfg.steps, cfg.batch_size), 0, n))(
        jax.random.split(jax.random.key(99), len(seeds))
    )
    idx = jnp.tile(idx, (len(ARMS), 1, 1))

    @jax.jit
    def train_all(params, idx):
        state = jax.vmap(lambda p: jinit.init_state(p, optimizer))(params)
        state, metrics = jax.vmap(chunk, in_axes=(0, None, 0))(state, train, idx)
        test_loss, test_m = jax.vmap(loss_fn, in_axes=(0, None))(state.params, test)
        return metrics["loss"], test_loss, test_m["accuracy"]

    t0 = time.perf_counter()
    losses, test_loss, test_acc = jax.block_until_ready(train_all(stacked, idx))
    t_train = time.perf_counter() - t0
    losses = np.asarray(losses).reshape(len(ARMS), len(seeds), cfg.steps)
    test_acc = np.asarray(test_acc).reshape(len(ARMS), len(seeds))
    test_loss = np.asarray(test_loss).reshape(len(ARMS), len(seeds))

    # Smoothed curves (mean over windows of log_every steps), thresholds, area under the curve.
    w = cfg.log_every
    curves = losses[..., : cfg.steps // w * w].reshape(len(ARMS), len(seeds), -1, w).mean(-1)
    out = {"arms": {}, "init_s": t_init, "train_s": t_train, "num_models": n_models}
    for a, arm in enumerate(ARMS):
        first = jax.tree.map(lambda t, a=a: t[a * len(seeds)], stacked)
        entry = {
            "loss_curve_mean": curves[a].mean(0),
            "loss_curve_std": curves[a].std(0),
            "initial_loss": losses[a, :, 0],
            "final_train_loss": curves[a, :, -1],
            "mean_loss_first_quarter": losses[a, :, : cfg.steps // 4].mean(1),
            "test_accuracy": test_acc[a],
            "test_loss": test_loss[a],
            "layer_variance_seed0": layer_variances(model, first, xb),
        }
        for thr in cfg.loss_thresholds:
            hit = curves[a] < thr
            steps_to = np.where(hit.any(1), hit.argmax(1) * w + w, np.nan)
            entry[f"steps_to_loss_{thr:g}"] = steps_to
        out["arms"][arm] = entry
    out["lsuv_report_seed0"] = {
        "paths": list(reports.paths),
        "var_before": np.asarray(reports.var_before)[0],
        "var_after": np.asarray(reports.var_after)[0],
        "iterations": np.asarray(reports.iterations)[0],
        "scale": np.asarray(reports.scale)[0],
        "converged": np.asarray(reports.converged).all(),
    }
    return out


def plot(results: dict, cfg: Config, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths, acts = cfg.depths, cfg.activations
    colors = {"he": "C0", "glorot": "C1", "orthogonal": "C2", "lsuv": "C3"}
    fig, axes = plt.subplots(
        len(acts),
        len(depths),
        figsize=(4 * len(depths), 3.2 * len(acts)),
        squeeze=False,
        sharey=True,
    )
    for i, act in enumerate(acts):
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            r = results["runs"][f"{act}_depth{depth}"]
            for arm in ARMS:
                m = np.asarray(r["arms"][arm]["loss_curve_mean"])
                s = np.asarray(r["arms"][arm]["loss_curve_std"])
                t = (np.arange(m.size) + 1) * cfg.log_every
                ax.plot(t, m, color=colors[arm], label=arm)
                ax.fill_between(t, m - s, m + s, color=colors[arm], alpha=0.2)
            ax.set_title(f"{act}, {depth} layers")
            ax.set_xlabel("SGD step")
            ax.set_ylim(0, 3.0)
            if j == 0:
                ax.set_ylabel("training loss")
    axes[0, 0].legend()
    fig.suptitle(f"Digits, plain MLPs (width {cfg.width}), {len(cfg.seeds)} seeds, mean ± std")
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(
        len(acts), len(depths), figsize=(4 * len(depths), 3.2 * len(acts)), squeeze=False
    )
    for i, act in enumerate(acts):
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            r = results["runs"][f"{act}_depth{depth}"]
            for arm in ("he", "glorot", "orthogonal"):
                v = np.asarray(r["arms"][arm]["layer_variance_seed0"])
                ax.semilogy(np.arange(1, v.size + 1), v, color=colors[arm], label=arm)
            rep = r["lsuv_report_seed0"]
            ax.semilogy(
                np.arange(1, depth + 1), rep["var_before"], "k:",
                label="LSUV: before its rescaling\n(earlier layers done)",
            )  # fmt: skip
            ax.semilogy(
                np.arange(1, depth + 1),
                rep["var_after"],
                color=colors["lsuv"],
                marker="o",
                ms=3,
                label="LSUV: after",
            )
            ax.set_title(f"{act}, {depth} layers")
            ax.set_xlabel("layer")
            if j == 0:
                ax.set_ylabel("pre-activation variance")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Per-layer output variance on the LSUV batch (seed 0)")
    fig.tight_layout()
    fig.savefig(out / "layer_variance.png", dpi=110)
    plt.close(fig)


def run(cfg: Config, out: pathlib.Path) -> dict:
    t0 = time.perf_counter()
    train, test = load_data(cfg)
    results = {
        "study": "lsuv_depth",
        "config": dataclasses.asdict(cfg),
        "environment": common.environment(),
        "data": {
            "source": "sklearn.datasets.load_digits",
            "train": int(train["y"].shape[0]),
            "test": int(test["y"].shape[0]),
        },
        "runs": {},
    }
    for act in cfg.activations:
        for depth in cfg.depths:
            results["runs"][f"{act}_depth{depth}"] = run_pair(cfg, depth, act, train, test)
    summary = {}
    for key, r in results["runs"].items():
        summary[key] = {
            arm: {
                "mean_loss_first_quarter": float(
                    np.mean(r["arms"][arm]["mean_loss_first_quarter"])
                ),
                "final_train_loss": float(np.mean(r["arms"][arm]["final_train_loss"])),
                "test_accuracy": float(np.mean(r["arms"][arm]["test_accuracy"])),
            }
            for arm in ARMS
        }
        early = {arm: summary[key][arm]["mean_loss_first_quarter"] for arm in ARMS}
        summary[key]["lsuv_fastest_start"] = bool(early["lsuv"] <= min(early.values()) + 1e-6)
        summary[key]["lsuv_at_least_as_fast_as"] = [
            arm for arm in ARMS[:-1] if early["lsuv"] <= early[arm] * 1.05
        ]
    results["summary"] = summary
    results["wall_time_s"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    common.write_json_atomic(out / "results.json", results)
    plot(results, cfg, out)
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=common.writable_dir, default="runs/lsuv_depth", help="output directory"
    )
    p.add_argument("--quick", action="store_true", help="one depth, 2 seeds, 80 steps (< 30 s)")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    results = run(cfg, pathlib.Path(args.out))
    for key, s in results["summary"].items():
        early = ", ".join(f"{a} {s[a]['mean_loss_first_quarter']:.3f}" for a in ARMS)
        acc = ", ".join(f"{a} {s[a]['test_accuracy']:.3f}" for a in ARMS)
        print(f"{key:>14}: early loss [{early}]  test acc [{acc}]")
    print(f"wall time {results['wall_time_s']:.1f} s; results in {args.out}")
    return results


if __name__ == "__main__":
    main()
