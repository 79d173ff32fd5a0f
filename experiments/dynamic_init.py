"""He, orthogonal, LSUV, GradInit and MetaInit side by side on three models and real data.

Models (small subsets so that each model runs in minutes on 2 CPU cores; say so when
quoting): the 10-layer plain CNN (``experiments.plain_cnn``) on a CIFAR-10 subset at 16x16;
a 20-layer ReLU MLP (width 32) on scikit-learn digits; the IMDB RNN
(``experiments.models.ImdbRNN``: Embedding -> SimpleRNN -> Dense) on an IMDB subset. Arms:
``he`` (He-normal kernels), ``orthogonal`` (orthogonal kernels), ``lsuv`` (orthogonal, then
``jinit.lsuv``), ``gradinit`` (He, then ``jinit.gradinit``, simulating the model's optimizer)
and ``metainit`` (He, then ``jinit.metainit``). Every kernel is re-drawn with
``jinit.reinit`` (rule ``kernel$``); embeddings and biases keep the model's default. Per arm:
steps until the training loss (mean over ``log_every`` steps) first falls below a threshold,
final test accuracy (mean ± sd over seeds) and the init pass's wall time (all seeds,
compile included). Same init keys and minibatches per seed in every arm; each arm's seeds
train as one vmapped program.

    python -m experiments.dynamic_init [--quick] [--out DIR]

Writes ``results.json`` and ``dynamic_init.png`` to ``--out`` (default ``runs/dynamic_init``);
a full run given ``--out docs/experiments/dynamic_init`` also rewrites the docs page's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments import common
from experiments.data import repo_data_dir
from experiments.lsuv_depth import DeepMLP
from experiments.models import ImdbRNN
from experiments.plain_cnn import PlainCNN, cifar10_subset, softmax_xent

ARMS = ("he", "orthogonal", "lsuv", "gradinit", "metainit")
COLORS = {"he": "C0", "orthogonal": "C2", "lsuv": "C1", "gradinit": "C3", "metainit": "C4"}
REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    optimizer: str  # "sgd" (momentum 0.9) or "adam"
    learning_rate: float
    threshold: float  # training-loss threshold for "steps to threshold"
    init_batch: int
    gradinit_iters: int
    metainit_steps: int
    log_every: int = 10


FULL = (
    ModelConfig("cnn", (0, 1), 100, 64, "sgd", 0.02, 2.0, 64, 10, 5),
    ModelConfig("mlp", (0, 1, 2), 300, 128, "sgd", 0.01, 0.5, 128, 40, 40),
    ModelConfig("rnn", (0, 1), 150, 32, "adam", 1e-3, 0.65, 64, 10, 10),
)
QUICK = tuple(
    dataclasses.replace(c, seeds=(0,), steps=10, gradinit_iters=2, metainit_steps=2, log_every=5)
    for c in FULL
)


def load(name: str, quick: bool):
    """``(model, train, test, loss(outputs, batch), metrics, source)`` for one model."""
    if name == "cnn":
        d = cifar10_subset(200 if quick else 1000, 100 if quick else 500, 8 if quick else 16)
        model = PlainCNN(3 if quick else 10, 4 if quick else 8)
        return model, d.train, d.test, softmax_xent, "cifar10 " + d.source
    if name == "mlp":
        train, test = common.digits()
        model = DeepMLP(4 if quick else 20, 32, "relu", jinit.he_normal())
        return model, train, test, softmax_xent, "sklearn digits"
    from experiments.data.imdb import load_imdb

    data = load_imdb(repo_data_dir(), num_words=10_000, maxlen=100)
    n_tr, n_te = (200, 100) if quick else (1000, 500)
    as_set = lambda x, y: {"x": jnp.asarray(x, jnp.int32), "y": jnp.asarray(y, jnp.int32)}
    train = as_set(data.x_train[:n_tr], data.y_train[:n_tr])
    test = as_set(data.x_test[:n_te], data.y_test[:n_te])

    def bce(outputs, batch):
        return optax.sigmoid_binary_cross_entropy(outputs, batch["y"].astype(jnp.float32)).mean()

    return ImdbRNN(10_000, 32, 32), train, test, bce, "imdb " + data.source


def accuracy(outputs, batch):
    if outputs.ndim == 1:
        return jnp.mean((outputs > 0) == (batch["y"] > 0))
    return jnp.mean(jnp.argmax(outputs, -1) == batch["y"])


def init_arm(arm, model, loss, keys, x1, batch, cfg, conv):
    """Params stacked over seeds, and the pass's wall time (s, all seeds, compile included)."""
    base = jax.jit(jax.vmap(lambda k: model.init(k, x1)))(keys)
    kernel = jinit.orthogonal() if arm in ("orthogonal", "lsuv") else jinit.he_normal()
    drawn = jax.jit(jax.vmap(lambda p, k: jinit.reinit(p, [(r"kernel$", kernel)], k)))(base, keys)
    drawn = jax.block_until_ready(drawn)
    if arm in ("he", "orthogonal"):
        return drawn, 0.0, None
    opt_name = "adam" if cfg.optimizer == "adam" else "sgd"
    hvp = "reverse" if isinstance(model, ImdbRNN) else "forward"  # its RNN has a custom_vjp
    passes = {
        "lsuv": lambda p: jinit.lsuv(model, p, batch["x"]),
        "gradinit": lambda p: jinit.gradinit(
            model, p, batch, loss, optimizer=opt_name, iters=cfg.gradinit_iters
        ),
        "metainit": lambda p: jinit.metainit(
            model, p, batch, loss, steps=cfg.metainit_steps, hvp=hvp
        ),
    }
    fn = passes[arm]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", jinit.InitWarning)
        if conv and arm != "lsuv":  # per seed: the Python-loop pass (docs/dynamic.md)
            outs = [fn(jax.tree.map(lambda a, s=s: a[s], drawn))[0] for s in range(len(keys))]
            out = jax.tree.map(lambda *a: jnp.stack(a), *outs)
        else:
            out, report = jax.jit(jax.vmap(fn))(drawn)
            report.check()
        out = jax.block_until_ready(out)
    return out, time.perf_counter() - t0, [str(w.message)[:200] for w in caught]


def run_model(cfg: ModelConfig, quick: bool) -> dict:
    model, train, test, loss, source = load(cfg.name, quick)
    keys = common.init_keys(cfg.seeds)
    batch = {k: v[: cfg.init_batch] for k, v in train.items()}
    conv = cfg.name == "cnn"

    def loss_fn(params, b):
        out = model.apply(params, b["x"])
        return loss(out, b), {"accuracy": accuracy(out, b)}

    opt = (
        optax.adam(cfg.learning_rate)
        if cfg.optimizer == "adam"
        else optax.sgd(cfg.learning_rate, momentum=0.9)
    )
    idx = common.minibatch_indices(cfg.seeds, cfg.steps, cfg.batch_size, train["x"].shape[0])
    arms = {}
    for arm in ARMS:
        params, init_s, warned = init_arm(arm, model, loss, keys, train["x"][:1], batch, cfg, conv)
        r = common.train_models(loss_fn, params, train, idx, opt, test)
        curve = common.smooth(r["loss"], cfg.log_every)
        below = curve < cfg.threshold
        hit = np.where(below.any(1), (below.argmax(1) + 1) * cfg.log_every, -1)
        acc = r["test_accuracy"]
        arms[arm] = {
            "curve": curve,
            "steps_to_threshold": hit,  # -1: never reached
            "test_accuracy": acc,
            "test_accuracy_mean": float(acc.mean()),
            "test_accuracy_sd": float(acc.std()),
            "init_s": init_s,
            "train_s": r["train_s"],
            "warnings": warned or [],
        }
        print(
            f"{cfg.name:4s} {arm:10s} acc {acc.mean():.3f} ± {acc.std():.3f} steps-to-"
            f"{cfg.threshold} {hit.tolist()} init {init_s:.1f}s train {r['train_s']:.1f}s",
            flush=True,
        )
    return {"config": dataclasses.asdict(cfg), "source": source, "arms": arms}


def plot(results: dict, path) -> str:
    plt = common.pyplot()
    names = list(results["models"])
    fig, axes = plt.subplots(2, len(names), figsize=(5.5 * len(names), 8), squeeze=False)
    for j, name in enumerate(names):
        r = results["models"][name]
        cfg = r["config"]
        ax = axes[0, j]
        for arm in ARMS:
            a = r["arms"][arm]
            c = np.where(np.isfinite(a["curve"]), a["curve"], np.nan)
            t = (np.arange(c.shape[1]) + 1) * cfg["log_every"]
            ax.plot(t, np.nanmean(c, 0), color=COLORS[arm], label=arm)
        ax.axhline(cfg["threshold"], color="k", ls=":", lw=0.8, label="threshold")
        ax.set_yscale("log")
        ax.set_title(f"{name}: training loss (mean over {len(cfg['seeds'])} seeds)")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax = axes[1, j]
        x = np.arange(len(ARMS))
        acc = [r["arms"][a]["test_accuracy_mean"] for a in ARMS]
        sd = [r["arms"][a]["test_accuracy_sd"] for a in ARMS]
        ax.bar(x, acc, yerr=sd, color=[COLORS[a] for a in ARMS])
        for i, a in enumerate(ARMS):
            ax.text(i, 0.02, f"{r['arms'][a]['init_s']:.1f}s", ha="center", fontsize=8)
        ax.set_xticks(x, ARMS)
        ax.set_ylabel("final test accuracy (bar: init pass wall time)")
        ax.set_ylim(0, 1)
    fig.suptitle("Dynamically scaled initialization vs He / orthogonal / LSUV")
    fig.tight_layout()
    return common.save(fig, path)


PAGE = REPO / "docs" / "experiments" / "dynamic_init.md"


def table(results: dict) -> str:
    """The results table of the docs page, from the saved numbers."""
    env = common.machine_of(results)
    lines = [
        "| model | init | steps to threshold (per seed; - = never) | final test accuracy "
        "(mean ± sd) | init pass wall time (s, all seeds) |",
        "|---|---|---|---|---:|",
    ]
    for name, r in results["models"].items():
        thr = r["config"]["threshold"]
        for arm in ARMS:
            a = r["arms"][arm]
            hits = ", ".join("-" if h is None or h < 0 else str(h) for h in a["steps_to_threshold"])
            lines.append(
                f"| {name} (loss < {thr}) | {arm} | {hits} | {a['test_accuracy_mean']:.3f} ± "
                f"{a['test_accuracy_sd']:.3f} | {a['init_s']:.1f} |"
            )
    lines += [
        "",
        "- wall time per model: "
        + ", ".join(f"{k} **{v:.0f} s**" for k, v in results["wall_time_s"].items()),
        f"- machine: {common.describe_machine(env)}",
        "",
        f"![dynamic_init](dynamic_init/{results['figure']})",
    ]
    return "\n".join(lines)


def publish_page(results: dict) -> None:
    page = PAGE.read_text()
    head, rest = page.split("<!-- results:begin -->", 1)
    _, tail = rest.split("<!-- results:end -->", 1)
    PAGE.write_text(f"{head}<!-- results:begin -->\n{table(results)}\n<!-- results:end -->{tail}")


def merge(parts: list[pathlib.Path], out: pathlib.Path) -> dict:
    """Combines the results of partial runs (one process per model) into one results file."""
    runs = [json.loads((d / "results.json").read_text()) for d in parts]
    if any(r["quick"] for r in runs):
        raise SystemExit("refusing to merge --quick runs")
    results = {"quick": False, "models": {}, "wall_time_s": {}}
    for r in runs:
        results["models"].update(r["models"])
        results["wall_time_s"].update(r["wall_time_s"])
    results["parts"] = [str(d) for d in parts]
    results["environment"] = runs[0]["environment"]
    for r in runs:
        for m in r["models"].values():
            for a in m["arms"].values():
                a["curve"] = np.asarray(a["curve"], dtype=float)  # None (non-finite) -> nan
    results["figure"] = plot(results, out / "dynamic_init.png")
    results["total_wall_time_s"] = sum(r["total_wall_time_s"] for r in runs)
    common.write_json_atomic(out / "results.json", results)
    if out.resolve() == (REPO / "docs" / "experiments" / "dynamic_init"):
        publish_page(json.loads((out / "results.json").read_text()))
    print(f"merged {len(runs)} runs into {out}/results.json")
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=common.writable_dir, default="runs/dynamic_init")
    p.add_argument("--quick", action="store_true", help="smoke run (seconds)")
    p.add_argument("--models", default="cnn,mlp,rnn", help="comma-separated subset")
    p.add_argument(
        "--merge",
        default=None,
        help="comma-separated results folders of partial runs (--models) to combine into --out",
    )
    args = p.parse_args(argv)
    if args.merge:
        return merge([pathlib.Path(d) for d in args.merge.split(",")], pathlib.Path(args.out))
    started = time.perf_counter()
    cfgs = [c for c in (QUICK if args.quick else FULL) if c.name in args.models.split(",")]
    results = {"quick": args.quick, "models": {}, "wall_time_s": {}}
    for cfg in cfgs:
        t0 = time.perf_counter()
        results["models"][cfg.name] = run_model(cfg, args.quick)
        results["wall_time_s"][cfg.name] = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    results["figure"] = plot(results, out / "dynamic_init.png")
    results["environment"] = common.environment()
    results["total_wall_time_s"] = time.perf_counter() - started
    common.write_json_atomic(out / "results.json", results)
    print(f"wrote {out}/results.json in {results['total_wall_time_s']:.0f} s")
    if not args.quick and out.resolve() == (REPO / "docs" / "experiments" / "dynamic_init"):
        publish_page(json.loads((out / "results.json").read_text()))
    return results


if __name__ == "__main__":
    main()
