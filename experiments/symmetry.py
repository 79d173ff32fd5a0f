"""Symmetry breaking: zero init keeps every hidden unit identical; small random init breaks it.

Two small MLPs on real data, each trained from zero init and from small random inits, seeds
swept with vmap:

* regression (the seed study's Dense(10, relu) -> Dense(1)) on scikit-learn's diabetes data
  (442 real patients, 10 features, standardized; target standardized), mean squared error;
* classification, Dense(32, relu) -> Dense(10), on scikit-learn's digits (1,797 real 8x8
  handwritten digits), softmax cross-entropy.

Tracked every epoch: the loss and the *symmetry gap*, the largest difference between two hidden
units' incoming weights and biases, max_{i,j} max_k |W[k, i] - W[k, j]| (the units are
interchangeable exactly when it is 0). With zero init every unit gets the same gradient, so the
gap stays exactly 0 for the whole run (here even the gradient itself is 0, since relu'(0) = 0),
and the network is no better than its output bias; any random init starts with a gap > 0.

    python experiments/symmetry.py            # writes runs/symmetry/{results.json,*.png}
"""

from __future__ import annotations

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

INITIALIZERS = {
    "zeros": jinit.zeros(),
    "normal_0.01": jinit.normal(0.01),
    "glorot_uniform": jinit.glorot_uniform(),
}


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-2


class MLP(nn.Module):
    hidden: int
    outputs: int
    kernel_init: object

    @nn.compact
    def __call__(self, x):
        h = nn.relu(
            nn.Dense(
                self.hidden, kernel_init=self.kernel_init, bias_init=jinit.zeros(), name="hidden"
            )(x)
        )
        return nn.Dense(
            self.outputs, kernel_init=self.kernel_init, bias_init=jinit.zeros(), name="out"
        )(h)


def symmetry_gap(params) -> jax.Array:
    """max over unit pairs (i, j) and inputs k of |W[k, i] - W[k, j]| (bias as one more input)."""
    w = jnp.concatenate(
        [params["params"]["hidden"]["kernel"], params["params"]["hidden"]["bias"][None]], 0
    )
    return jnp.max(jnp.abs(w[:, :, None] - w[:, None, :]))


def load_task(name: str):
    from sklearn.datasets import load_diabetes, load_digits

    if name == "regression":
        x, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
    else:
        x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm].astype(np.float32), y[perm]
    n_test = len(x) // 5
    y = y.astype(np.float32) if name == "regression" else y.astype(np.int32)
    return ({"x": x[n_test:], "y": y[n_test:]}, {"x": x[:n_test], "y": y[:n_test]})


def task_fns(name: str, model: MLP):
    def per_example(params, batch):
        out = model.apply(params, batch["x"])
        if name == "regression":
            return {"loss": (out[:, 0] - batch["y"]) ** 2}
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]),
            "accuracy": (jnp.argmax(out, -1) == batch["y"]).astype(jnp.float32),
        }

    def loss_fn(params, batch):
        m = per_example(params, batch)
        return m["loss"].mean(), {k: v.mean() for k, v in m.items() if k != "loss"}

    return loss_fn, per_example


def run_task(name: str, cfg: Config, progress) -> dict:
    train, test = load_task(name)
    hidden, outputs = (10, 1) if name == "regression" else (32, 10)
    optimizer = optax.adam(cfg.learning_rate)
    out = {}
    for init_name, init in INITIALIZERS.items():
        model = MLP(hidden, outputs, init)
        loss_fn, metric_fn = task_fns(name, model)
        keys = jinit.seed_keys(cfg.seeds)
        state = jinit.init_models(
            lambda k, model=model: jinit.init_state(model.init(k, train["x"][:1]), optimizer), keys
        )
        gaps = [np.asarray(jax.vmap(symmetry_gap)(state.params)).tolist()]
        data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state, hist = jinit.fit(
            state,
            loss_fn=loss_fn,
            optimizer=optimizer,
            train_data=jax.tree.map(jnp.asarray, train),
            val_data=jax.tree.map(jnp.asarray, test),
            metric_fn=metric_fn,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            shuffle_keys=lambda e, dk=data_keys: jax.vmap(jax.random.fold_in, (0, None))(dk, e),
            num_models=len(cfg.seeds),
            progress=progress,
            on_epoch_end=lambda r, s, gaps=gaps: gaps.append(
                np.asarray(jax.vmap(symmetry_gap)(s.params)).tolist()
            ),
        )
        out[init_name] = {
            "symmetry_gap_per_epoch": np.array(
                gaps
            ).T.tolist(),  # (seeds, epochs + 1), epoch 0 = init
            "train_loss_per_epoch": np.array([h.train["loss"] for h in hist]).T.tolist(),
            "test_loss_per_epoch": np.array([h.val["loss"] for h in hist]).T.tolist(),
            "final_test": {k: np.asarray(v).tolist() for k, v in hist[-1].val.items()},
            "zero_gap_throughout": bool(np.all(np.array(gaps) == 0.0)),
        }
    return out


def plot(results: dict, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110)
    for row, task in enumerate(("regression", "classification")):
        for name, r in results[task].items():
            g = np.array(r["symmetry_gap_per_epoch"])
            loss = np.array(r["test_loss_per_epoch"])
            (line,) = axes[row, 0].plot(np.arange(g.shape[1]), g.mean(0), label=name)
            axes[row, 0].fill_between(
                np.arange(g.shape[1]), g.min(0), g.max(0), alpha=0.2, color=line.get_color()
            )
            axes[row, 1].plot(
                np.arange(1, loss.shape[1] + 1), loss.mean(0), label=name, color=line.get_color()
            )
        axes[row, 0].set_yscale("symlog", linthresh=1e-6)
        axes[row, 0].set_title(f"{task}: symmetry gap max|w_i - w_j|")
        axes[row, 1].set_title(f"{task}: test loss")
        for ax in axes[row]:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "symmetry.png")
    plt.close(fig)


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0], "runs/symmetry")
    args = p.parse_args(argv)
    cfg = Config(epochs=3, seeds=(0, 1)) if args.quick else Config()
    t0 = time.perf_counter()
    progress = False if args.no_progress else None
    results = {task: run_task(task, cfg, progress) for task in ("regression", "classification")}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": dataclasses.asdict(cfg),
        **results,
        "wall_time_s": time.perf_counter() - t0,
        "environment": common.environment(),
    }
    common.write_json_atomic(out / "results.json", summary)
    plot(results, out)
    for task in results:
        for name, r in results[task].items():
            g = np.array(r["symmetry_gap_per_epoch"])
            print(
                f"{task:>14} {name:>15}: gap at init {g[:, 0].mean():.3g}, final {g[:, -1].mean():.3g}; "
                f"final test { ({k: round(float(np.mean(v)), 4) for k, v in r['final_test'].items()}) }"
            )
    print(f"wall time {summary['wall_time_s']:.1f} s; results in {out}")
    return summary


if __name__ == "__main__":
    main()
