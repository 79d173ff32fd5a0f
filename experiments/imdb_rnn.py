"""The IMDB RNN initialization study: which embedding initialization trains a SimpleRNN best?

Embedding(10000, 32) -> SimpleRNN(32) -> Dense(1, sigmoid) on the Large Movie Review Dataset
(Maas et al. 2011), as in the Keras seed study: Adam (lr 1e-3), batch 32, binary
cross-entropy, 5 epochs, the last 20% of the training set held out for validation, final
accuracy on the 25,000 test reviews. Every (initializer, seed) pair is one model of ONE
vmapped program; the seed fixes the RNN/Dense weights and the data order, so initializers
are compared paired, seed by seed.

    python experiments/imdb_rnn.py --data-dir ../shared/data            # full study
    python experiments/imdb_rnn.py --data-dir ../shared/data --quick    # smoke run

Writes ``results.json`` and ``val_accuracy.png`` to ``--out`` (default ``runs/imdb_rnn``) and
checkpoints after every epoch there: stopped and restarted with the same arguments, it resumes
from its last finished epoch.
"""

from __future__ import annotations

import os
import sys

# Seed sweeps shard the model axis over devices; on a CPU, --host-devices N makes N XLA CPU
# devices (one per core) so models run in parallel. Must be set before jax is imported.
if "--host-devices" in sys.argv:
    _n = sys.argv[sys.argv.index("--host-devices") + 1]
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_n}"
    ).strip()

import dataclasses  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jinit  # noqa: E402
from experiments import common  # noqa: E402
from experiments.data import imdb  # noqa: E402
from experiments.models import ImdbRNN  # noqa: E402

# Embedding initializers compared. 'uniform' is Keras's Embedding default RandomUniform(-0.05,
# 0.05); the fans of the (10000, 32) embedding matrix are fan_in=10000, fan_out=32 as in Keras.
INITIALIZERS = {
    "uniform": jinit.uniform_symmetric(0.05),
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "orthogonal": jinit.orthogonal(),
}
DEFAULT_INITS = ("uniform", "glorot_uniform", "he_normal")


@dataclasses.dataclass(frozen=True)
class Config:
    inits: tuple[str, ...] = DEFAULT_INITS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    adam_eps: float = 1e-7  # Keras's Adam epsilon (optax's default is 1e-8)
    num_words: int = 10_000
    maxlen: int = 200
    embed_dim: int = 32
    hidden: int = 32
    validation_split: float = 0.2
    train_limit: int | None = None  # --quick: use this many training reviews
    test_limit: int | None = None
    steps_per_call: int = 25
    eval_batch_size: int = 1000


def parse_args(argv=None):
    p = common.base_parser(__doc__.splitlines()[0], "runs/imdb_rnn")
    p.add_argument("--inits", default=",".join(DEFAULT_INITS),
                   help=f"comma-separated, from {sorted(INITIALIZERS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--host-devices", type=int, default=None,
                   help="CPU only: split the sweep over N XLA host devices (set before jax starts)")
    args = p.parse_args(argv)
    inits = tuple(s for s in args.inits.split(",") if s)
    unknown = [s for s in inits if s not in INITIALIZERS]
    if unknown:
        p.error(f"--inits: unknown {unknown}; choose from {sorted(INITIALIZERS)}")
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    cfg = Config(inits=inits, seeds=seeds)
    if args.quick:
        cfg = dataclasses.replace(cfg, epochs=1, train_limit=500, test_limit=250, steps_per_call=5,
                                  eval_batch_size=250)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    return args, cfg


def split_data(data: imdb.ImdbArrays, cfg: Config):
    x, y = data.x_train, data.y_train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    n_val = int(len(x) * cfg.validation_split)  # Keras: the LAST fraction is held out
    train = {"x": x[: len(x) - n_val], "y": y[: len(x) - n_val]}
    val = {"x": x[len(x) - n_val :], "y": y[len(x) - n_val :]}
    xt, yt = data.x_test, data.y_test
    if cfg.test_limit:
        xt, yt = xt[: cfg.test_limit], yt[: cfg.test_limit]
    return train, val, {"x": xt, "y": yt}


def make_functions(cfg: Config):
    model = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden)

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
        return loss, {"accuracy": jnp.mean((logits > 0) == (y > 0.5))}

    def metric_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        return {"loss": optax.sigmoid_binary_cross_entropy(logits, y),
                "accuracy": ((logits > 0) == (y > 0.5)).astype(jnp.float32)}

    def init_params(name: str, key: jax.Array):
        m = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden, embedding_init=INITIALIZERS[name])
        return m.init(key, jnp.zeros((1, cfg.maxlen), jnp.int32))

    return loss_fn, metric_fn, init_params


def model_keys(cfg: Config):
    """Per model (init-major order): the init key and the data-order key of its seed."""
    seeds = [s for _ in cfg.inits for s in cfg.seeds]
    init_keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 0) for s in seeds])
    data_keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in seeds])
    return init_keys, data_keys


def initial_state(cfg: Config, optimizer, init_params):
    init_keys, _ = model_keys(cfg)
    s = len(cfg.seeds)
    stacks = [jinit.init_models(lambda k, n=name: init_params(n, k), init_keys[i * s : (i + 1) * s])
              for i, name in enumerate(cfg.inits)]
    params = jax.tree.map(lambda *xs: jnp.concatenate(xs), *stacks)
    return jax.vmap(lambda p: jinit.init_state(p, optimizer))(params)


def run(args, cfg: Config) -> dict:
    t_start = time.perf_counter()
    out = pathlib.Path(args.out)
    data = imdb.load_imdb(args.data_dir, num_words=cfg.num_words, maxlen=cfg.maxlen,
                          cache_dir=args.cache_dir)
    t_data = time.perf_counter() - t_start
    train, val, test = split_data(data, cfg)
    train, val, test = (jax.tree.map(jnp.asarray, d) for d in (train, val, test))
    optimizer = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    loss_fn, metric_fn, init_params = make_functions(cfg)
    num_models = len(cfg.inits) * len(cfg.seeds)
    mesh = jinit.model_mesh(num_models)

    state = initial_state(cfg, optimizer, init_params)
    config = dataclasses.asdict(cfg)
    ckpt = common.EpochCheckpoints(out / "checkpoints", config, restart=args.restart)
    history: list[dict] = []
    start_epoch = 0
    restored = ckpt.restore(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state))
    if restored is not None:
        state, meta = restored
        history, start_epoch = meta["history"], meta["epochs_done"]
        print(f"resuming from epoch {start_epoch} ({out / 'checkpoints'})", file=sys.stderr)
    state = jinit.shard_models(state, mesh)

    _, data_keys = model_keys(cfg)
    programs = jinit.compile_programs(loss_fn, optimizer, metric_fn,
                                      eval_batch_size=cfg.eval_batch_size, num_models=num_models)

    def on_epoch_end(result: jinit.EpochResult, state):
        history.append({
            "epoch": result.epoch + 1,
            "seconds": result.seconds,
            "train_loss": result.train["loss"].tolist(),
            "train_accuracy": result.train["accuracy"].tolist(),
            "val_loss": result.val["loss"].tolist(),
            "val_accuracy": result.val["accuracy"].tolist(),
        })
        ckpt.save(result.epoch, state, {"history": history})

    t_train = time.perf_counter()
    state, _ = jinit.fit(
        state, loss_fn=loss_fn, optimizer=optimizer, train_data=train, val_data=val,
        metric_fn=metric_fn, epochs=cfg.epochs, batch_size=cfg.batch_size,
        shuffle_keys=lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(data_keys),
        num_models=num_models, start_epoch=start_epoch, steps_per_call=cfg.steps_per_call,
        progress=False if args.no_progress else None, on_epoch_end=on_epoch_end, programs=programs,
    )
    t_train = time.perf_counter() - t_train
    test_m = jax.tree.map(np.asarray, programs["evaluate"](state.params, test))
    ckpt.close()
    wall = time.perf_counter() - t_start

    results = summarize(cfg, history, test_m)
    results.update({
        "config": config,
        "wall_time_s": wall,
        "data_load_s": t_data,
        "train_s_this_run": t_train,
        "resumed_from_epoch": start_epoch,
        "num_models": num_models,
        "sharded_over_devices": 1 if mesh is None else mesh.size,
        "data": {"source": data.source, "train": int(train["y"].shape[0]),
                 "val": int(val["y"].shape[0]), "test": int(test["y"].shape[0])},
        "environment": common.environment(),
    })
    common.write_json_atomic(out / "results.json", results)
    curves = {name: np.array(r["val_accuracy_per_epoch"]) for name, r in results["initializers"].items()}
    common.plot_curves(curves, out / "val_accuracy.png", ylabel="validation accuracy",
                       title=f"IMDB SimpleRNN: embedding init ({len(cfg.seeds)} seeds, mean ± std)")
    return results


def summarize(cfg: Config, history: list[dict], test_m: dict) -> dict:
    """Per initializer: per-seed curves (seeds x epochs), test accuracy, mean and std."""
    s = len(cfg.seeds)
    per_init = {}
    for i, name in enumerate(cfg.inits):
        sl = slice(i * s, (i + 1) * s)

        def curve(key, sl=sl):
            return np.array([np.asarray(h[key])[sl] for h in history]).T.tolist()  # (seeds, epochs)

        test_acc = np.asarray(test_m["accuracy"])[sl]
        per_init[name] = {
            "seeds": list(cfg.seeds),
            "train_loss_per_epoch": curve("train_loss"),
            "train_accuracy_per_epoch": curve("train_accuracy"),
            "val_loss_per_epoch": curve("val_loss"),
            "val_accuracy_per_epoch": curve("val_accuracy"),
            "test_accuracy": test_acc.tolist(),
            "test_loss": np.asarray(test_m["loss"])[sl].tolist(),
            "test_accuracy_mean": float(test_acc.mean()),
            "test_accuracy_std": float(test_acc.std()),
        }
    return {"initializers": per_init,
            "epoch_seconds": [h["seconds"] for h in history]}


def main(argv=None):
    args, cfg = parse_args(argv)
    results = run(args, cfg)
    for name, r in results["initializers"].items():
        print(f"{name:>16}: test accuracy {r['test_accuracy_mean']:.4f} ± {r['test_accuracy_std']:.4f}"
              f"  (seeds {r['test_accuracy']})")
    print(f"wall time {results['wall_time_s']:.1f} s; results in {args.out}")


if __name__ == "__main__":
    main()
