"""Deep transformer LM on IMDB bytes: post-LN vs pre-LN under five init recipes.

The byte-level LM of ``experiments.lm`` at depth ``cfg.depth`` is trained with Adam (one
learning rate, no warmup) from: Flax's default init; GPT-2 (``jinit.gpt2_init``); DeepNorm
(``jinit.deepnorm_init`` + the residual weight alpha of ``jinit.deepnorm_constants``, in the
post-LN model; its init alone in the pre-LN model); T-Fixup (``jinit.tfixup_init``, the
model without LayerNorm, as in the paper); ReZero (``jinit.rezero_init``, gains 0, no
LayerNorm, as in the paper). Per configuration: divergence (a non-finite training loss, or a
final training loss above the initial one), the final test loss per seed, and the variance of
the residual stream after every block at init (``jinit.layer_statistics``: the std of each
block's output, squared). All seeds of one configuration train as one vmapped program.

    python -m experiments.transformer_init [--quick] [--out DIR]
    python -m experiments.transformer_init --publish-only --out DIR   # into docs/experiments
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments import common
from experiments.data import repo_data_dir
from experiments.data.imdb_bytes import load_imdb_bytes
from experiments.lm import TransformerLM, lm_loss, windows

# (name, norm, init recipe)
CONFIGS = (
    ("post-LN / default", "post", "default"),
    ("post-LN / GPT-2", "post", "gpt2"),
    ("post-LN / DeepNorm", "post", "deepnorm"),
    ("pre-LN / default", "pre", "default"),
    ("pre-LN / GPT-2", "pre", "gpt2"),
    ("pre-LN / DeepNorm init", "pre", "deepnorm"),
    ("no LN / T-Fixup", "none", "tfixup"),
    ("no LN / ReZero", "none", "rezero"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int = 8
    width: int = 64
    heads: int = 4
    seq_len: int = 64
    batch_size: int = 4
    steps: int = 100
    learning_rate: float = 2.0**-8
    seeds: tuple[int, ...] = (0, 1)
    eval_windows: int = 64


QUICK = Config(depth=2, width=16, heads=2, seq_len=16, batch_size=4, steps=4, eval_windows=4)


def build(cfg: Config, norm: str, recipe: str):
    alpha = (
        jinit.deepnorm_constants(cfg.depth)[0] if (recipe, norm) == ("deepnorm", "post") else 1.0
    )
    model = TransformerLM(
        cfg.width,
        n_layers=cfg.depth,
        heads=cfg.heads,
        seq_len=cfg.seq_len,
        norm=norm,
        alpha=alpha,
        rezero=recipe == "rezero",
    )
    rules = {
        "default": None,
        "gpt2": jinit.gpt2_init(cfg.depth),
        "deepnorm": jinit.deepnorm_init(cfg.depth),
        "tfixup": jinit.tfixup_init(cfg.depth, cfg.width),
        "rezero": jinit.rezero_init(),
    }[recipe]

    def init(key):
        v = model.init(key, jnp.zeros((1, cfg.seq_len), jnp.int32))
        if rules is None:
            return v["params"]
        return jinit.reinit(v, rules, jax.random.fold_in(key, 1), strict=True)["params"]

    return model, init


def run_config(cfg: Config, norm: str, recipe: str, data: dict) -> dict:
    model, init = build(cfg, norm, recipe)
    tx = optax.adam(cfg.learning_rate)
    keys = jnp.stack([jax.random.key(s) for s in cfg.seeds])
    xs = jnp.asarray(
        np.stack(
            [
                windows(
                    data["train"], jax.random.key(1000 + s), cfg.steps, cfg.batch_size, cfg.seq_len
                )
                for s in cfg.seeds
            ]
        )
    )
    test = jnp.asarray(
        windows(data["test"], jax.random.key(7), 1, cfg.eval_windows, cfg.seq_len)[0]
    )

    def loss_of(p, x):
        return lm_loss(model.apply({"params": p}, x), x)

    def one(key, xs):
        p = init(key)
        stats = jinit.layer_statistics(model, p, xs[0], lm_loss)
        res_std = jnp.stack([stats[f"output/block_{i}/std"] for i in range(cfg.depth)])

        def step(carry, x):
            p, s = carry
            loss, g = jax.value_and_grad(loss_of)(p, x)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), xs)
        return losses, loss_of(p, test), res_std**2

    t0 = time.perf_counter()
    losses, test_loss, res_var = jax.block_until_ready(jax.jit(jax.vmap(one))(keys, xs))
    losses = np.asarray(losses)
    tail = max(1, cfg.steps // 10)
    final_train = losses[:, -tail:].mean(1)
    diverged = ~np.all(np.isfinite(losses), 1) | ~(final_train < losses[:, 0])
    return {
        "norm": norm,
        "recipe": recipe,
        "train_curve": losses,
        "final_train_loss": final_train,
        "test_loss": np.asarray(test_loss),
        "diverged": diverged,
        "residual_variance_at_init": np.asarray(res_var),  # (seeds, depth)
        "train_s": time.perf_counter() - t0,
    }


def plot(results: dict, cfg: Config, out: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for j, (name, r) in enumerate(results.items()):
        style = "-" if r["norm"] == "pre" else ("--" if r["norm"] == "post" else ":")
        c = np.where(np.isfinite(r["train_curve"]), r["train_curve"], np.nan).mean(0)
        w = max(1, cfg.steps // 30)
        c = np.convolve(c, np.ones(w) / w, mode="valid")
        axes[0].plot(c, style, color=f"C{j}", label=name)
        v = r["residual_variance_at_init"].mean(0)
        axes[1].semilogy(
            np.arange(1, cfg.depth + 1), v, style + "o", ms=3, color=f"C{j}", label=name
        )
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (nats/byte, mean over seeds)")
    axes[0].set_ylim(top=min(6.0, axes[0].get_ylim()[1]))
    axes[1].set_xlabel("block")
    axes[1].set_ylabel("residual-stream variance at init")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"IMDB byte LM, depth {cfg.depth}, width {cfg.width}, Adam lr "
        f"{cfg.learning_rate:.2g}, no warmup"
    )
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "transformer_init.png", dpi=110)
    plt.close(fig)
    return ["transformer_init.png"]


PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "experiments" / "transformer_init.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def table(r: dict) -> list[str]:
    """The page's results table, from a saved ``results.json``."""
    lines = [
        "| configuration | diverged (per seed) | final test loss (per seed, nats/byte) | "
        "residual variance at init: block 1 -> last |",
        "|---|---|---|---|",
    ]
    for name, v in r["results"].items():
        var = np.asarray(v["residual_variance_at_init"], float).mean(0)
        loss = ", ".join("nan" if x is None else f"{x:.3f}" for x in v["test_loss"])
        lines.append(f"| {name} | {v['diverged']} | {loss} | {var[0]:.3g} -> {var[-1]:.3g} |")
    m = {**common.machine_of(r), **({"date": r["date"]} if "date" in r else {})}  # older runs
    lines += [
        "",
        f"Run: {r['wall_time_s']:.0f} s wall on a shared machine: {common.describe_machine(m)}.",
    ]
    return lines


def publish(run_dir: pathlib.Path, page: pathlib.Path = PAGE) -> None:
    """Copies a full run into ``docs/experiments/transformer_init/`` and rewrites the table."""
    r = json.loads((run_dir / "results.json").read_text())
    if r["quick"]:
        raise SystemExit(f"{run_dir} is a --quick run; only full runs are published")
    dest = page.parent / "transformer_init"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run_dir / "results.json", dest / "results.json")
    for png in run_dir.glob("*.png"):
        shutil.copy2(png, dest / png.name)
    text = page.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n" + "\n".join(table(r)) + f"\n{END}{tail}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/transformer_init")
    p.add_argument("--quick", action="store_true", help="smoke run (seconds)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--publish-only", action="store_true", help="publish the run in --out")
    args = p.parse_args(argv)
    if args.publish_only:
        publish(pathlib.Path(args.out))
        return {}
    cfg = QUICK if args.quick else Config()
    t0 = time.perf_counter()
    data = load_imdb_bytes(args.data_dir or repo_data_dir())
    results = {name: run_config(cfg, norm, recipe, data) for name, norm, recipe in CONFIGS}
    out = pathlib.Path(args.out)
    figures = plot(results, cfg, out)
    summary = {
        "quick": args.quick,
        "config": dataclasses.asdict(cfg),
        "results": results,
        "figures": figures,
        "data": {"source": data["source"], "train_bytes": int(data["train"].size)},
        "wall_time_s": time.perf_counter() - t0,
        "environment": common.environment(),
    }
    common.write_json_atomic(out / "results.json", summary)
    for name, r in results.items():
        print(
            f"{name:>24}: diverged {r['diverged'].tolist()}, test loss "
            f"{np.round(r['test_loss'], 3).tolist()}, residual var at init (last block) "
            f"{float(r['residual_variance_at_init'][:, -1].mean()):.3g}"
        )
    print(f"wall time {summary['wall_time_s']:.1f} s; results in {out}")
    return summary


if __name__ == "__main__":
    main()
