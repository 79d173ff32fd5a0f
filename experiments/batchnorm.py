"""BatchNorm versus init scale: does normalization make training insensitive to initialization?

The seed study's CIFAR-10 CNN with and without BatchNorm after every conv/dense layer (before
the ReLU; train mode uses batch statistics, evaluation the running statistics), trained from
kernels drawn N(0, std^2) for std on a log grid 1e-3..1, plus He normal for reference. Every
(std, seed) pair of one architecture is one model of one vmapped program (the kernels are
drawn once from N(0, 1) and scaled by std, which is the same distribution). After a fixed
budget of Adam steps on real CIFAR-10 training images the test accuracy is measured.

Claim (Ioffe & Szegedy 2015): with BN, accuracy is nearly flat across init scales; without BN,
it collapses at small and large scales. The figure shows what the run finds, either way.

    python experiments/batchnorm.py --data-dir ../shared/data
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
from experiments.cifar10.train import conv_impl
from experiments.data import cifar10
from experiments.models import CifarCNN


@dataclasses.dataclass(frozen=True)
class Config:
    stds: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)  # the spread needs at least 3 (docs/experiments/index.md)
    steps: int = 600  # Adam steps of batch 32 (19,200 images, about half an epoch)
    batch_size: int = 32
    learning_rate: float = 1e-3
    test_size: int = 2000
    eval_batch_size: int = 500
    conv_impl: str = "auto"


def scaled_kernels(params, std):
    """Multiplies every kernel (not biases, not BN scale/offset) by ``std``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p * std if getattr(path[-1], "key", None) == "kernel" else p, params
    )


def make_fns(model: CifarCNN):
    def loss_fn(params, batch, model_state):
        variables = {"params": params, **({"batch_stats": model_state} if model.batch_norm else {})}
        if model.batch_norm:
            logits, updates = model.apply(
                variables, batch["x"], train=True, mutable=["batch_stats"]
            )
            new_state = updates["batch_stats"]
        else:
            logits, new_state = model.apply(variables, batch["x"]), model_state
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}, new_state)

    def metric_fn(params, batch, model_state):
        variables = {"params": params, **({"batch_stats": model_state} if model.batch_norm else {})}
        logits = model.apply(variables, batch["x"], train=False)
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]),
            "accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32),
        }

    return loss_fn, metric_fn


def run_arm(batch_norm: bool, cfg: Config, train, test, progress) -> dict:
    impl = conv_impl(cfg)
    optimizer = optax.adam(cfg.learning_rate)
    base = CifarCNN(kernel_init=jinit.normal(1.0), batch_norm=batch_norm, conv_impl=impl)
    he = CifarCNN(kernel_init=jinit.he_normal(), batch_norm=batch_norm, conv_impl=impl)
    loss_fn, metric_fn = make_fns(base)
    x0 = train["x"][:2]

    def init(model, key, std):
        v = model.init(key, x0)
        params = scaled_kernels(v["params"], std)
        # BN models carry their running statistics as model_state; others an empty dict.
        return jinit.init_state(params, optimizer, v.get("batch_stats", {}))

    arms = [(f"normal_{s:g}", s, base) for s in cfg.stds] + [("he_normal", 1.0, he)]
    keys = jinit.seed_keys(cfg.seeds)
    states = [jax.vmap(lambda k, m=m, s=s: init(m, k, s))(keys) for _, s, m in arms]
    state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *states)
    num_models = len(arms) * len(cfg.seeds)
    n_train = cfg.steps * cfg.batch_size
    sub = jax.tree.map(lambda a: a[:n_train], train)
    data_keys = jnp.concatenate([jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)] * len(arms))
    t0 = time.perf_counter()
    state, hist = jinit.fit(
        state,
        loss_fn=loss_fn,
        optimizer=optimizer,
        train_data=sub,
        val_data=test,
        metric_fn=metric_fn,
        epochs=1,
        batch_size=cfg.batch_size,
        shuffle_keys=lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(data_keys),
        num_models=num_models,
        steps_per_call=50,
        eval_batch_size=cfg.eval_batch_size,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    s = len(cfg.seeds)
    acc = np.asarray(hist[-1].val["accuracy"]).reshape(len(arms), s)
    loss = np.asarray(hist[-1].val["loss"]).reshape(len(arms), s)
    train_loss = np.asarray(hist[-1].train["loss"]).reshape(len(arms), s)
    return {
        name: {
            "std": std,
            "test_accuracy": acc[i].tolist(),
            "test_loss": loss[i].tolist(),
            "train_loss_mean_over_run": train_loss[i].tolist(),
        }
        for i, (name, std, _) in enumerate(arms)
    } | {"_seconds": seconds}


def plot(results: dict, cfg: Config, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for arm, label in (("batchnorm", "with BatchNorm"), ("plain", "without BatchNorm")):
        r = results[arm]
        acc = np.array([r[f"normal_{s:g}"]["test_accuracy"] for s in cfg.stds])
        (line,) = ax.plot(cfg.stds, acc.mean(1), marker="o", label=label)
        ax.fill_between(cfg.stds, acc.min(1), acc.max(1), color=line.get_color(), alpha=0.2)
        he = np.array(r["he_normal"]["test_accuracy"])
        ax.axhline(he.mean(), color=line.get_color(), ls="--", lw=0.8, label=f"{label}: He normal")
    ax.axhline(0.1, color="gray", ls=":", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("init std of every kernel")
    ax.set_ylabel(f"test accuracy after {cfg.steps} steps")
    ax.set_title(
        f"CIFAR-10 CNN: init scale with/without BatchNorm ({len(cfg.seeds)} seeds, min-max band)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "batchnorm_init_scale.png")
    plt.close(fig)


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0], "runs/batchnorm", ("data-dir",))
    args = p.parse_args(argv)
    cfg = Config()
    if args.quick:
        cfg = dataclasses.replace(
            cfg, stds=(1e-3, 1e-1, 1.0), seeds=(0,), steps=10, test_size=200, eval_batch_size=100
        )
    t0 = time.perf_counter()
    try:
        data = cifar10.load_cifar10(args.data_dir)
    except (cifar10.DataNotFoundError, cifar10.CorruptDataError) as e:  # data, not a crash
        raise SystemExit(f"error: {e}") from None
    train = {"x": jnp.asarray(data.x_train), "y": jnp.asarray(data.y_train)}
    test = {
        "x": jnp.asarray(data.x_test[: cfg.test_size]),
        "y": jnp.asarray(data.y_test[: cfg.test_size]),
    }
    progress = False if args.no_progress else None
    results = {
        arm: run_arm(arm == "batchnorm", cfg, train, test, progress)
        for arm in ("batchnorm", "plain")
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": dataclasses.asdict(cfg),
        **results,
        "wall_time_s": time.perf_counter() - t0,
        "environment": common.environment(),
        "data_source": data.source,
    }
    common.write_json_atomic(out / "results.json", summary)
    plot(results, cfg, out)
    for arm in ("batchnorm", "plain"):
        row = ", ".join(
            f"{k}: {np.mean(v['test_accuracy']):.3f}"
            for k, v in results[arm].items()
            if k[0] != "_"
        )
        print(f"{arm:>10}: {row}")
    print(f"wall time {summary['wall_time_s']:.1f} s; results in {out}")
    return summary


if __name__ == "__main__":
    main()
