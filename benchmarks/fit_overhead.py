"""jinit.fit against a plain Python loop of ``jax.jit(step)``, in the same process.

For each model, one optimizer step = forward + backward + Adam update on one batch:

* ``plain``: the loop a user writes: ``for batch in batches: state = step(state, batch)`` with
  ``step = jax.jit(..., donate_argnums=0)`` written by hand with optax (no jinit), over
  batches gathered on the device beforehand (the strongest baseline: no gather in the loop);
* ``fit:<stepping>``: ``jinit.fit`` for one epoch over the same data (shuffling, gathering
  inside the step, the non-finite guard, epoch metrics), with the programs compiled once
  beforehand, for each stepping (``step`` with fit's default ``steps_per_call=25``: the guard is
read and the state copied every 25 steps; ``scan`` and ``unroll`` in chunks of 10 steps).

Models: the seed CIFAR CNN with plain ``nn.Conv`` (``CifarCNN(conv_impl='xla')``), a small
ResNet with BatchNorm (batch_stats trained through ``model_state``), the IMDB RNN
(``ImdbRNN``, 200 tokens) and an MLP (784-256-256-10). Runs are interleaved (plain, fit:step,
fit:scan, fit:unroll, repeated) and the median time of each is reported, with the ratio
``plain time / fit time`` (1.0 = as fast as the plain loop). A contender more than 4x slower
than the plain loop in the first repeat is not repeated.

    python benchmarks/fit_overhead.py            # writes docs/benchmarks/fit_overhead.{json,md}
    python benchmarks/fit_overhead.py --quick --out /tmp/fo   # smoke run: 10 steps, 1 repeat
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments.models import CifarCNN, ImdbRNN

REPO = pathlib.Path(__file__).resolve().parents[1]

STEPPINGS = ("step", "scan", "unroll")
MODELS = ("cifar_cnn (nn.Conv)", "resnet_bn", "imdb_rnn", "mlp")


class ResBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = nn.relu(bn()(nn.Conv(self.features, (3, 3), use_bias=False)(x)))
        y = bn()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
        return nn.relu(x + y)


class ResNetBN(nn.Module):
    """conv(16) -> BN -> relu -> 2 residual blocks (16) -> stride-2 conv(32) -> block -> GAP."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        x = nn.relu(bn()(nn.Conv(16, (3, 3), use_bias=False)(x)))
        x = ResBlock(16)(x, train)
        x = ResBlock(16)(x, train)
        x = nn.relu(bn()(nn.Conv(32, (3, 3), strides=2, use_bias=False)(x)))
        x = ResBlock(32)(x, train)
        return nn.Dense(10)(x.mean((1, 2)))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(256)(x))
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(10)(x)


def xent(outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["y"]).mean()


def bce(outputs, batch):
    return optax.sigmoid_binary_cross_entropy(outputs, batch["y"]).mean()


def cases(steps: int):
    rng = np.random.default_rng(0)
    img = lambda n: jnp.asarray(rng.random((n, 32, 32, 3)), jnp.float32)  # noqa: E731
    lab = lambda n, k: jnp.asarray(rng.integers(0, k, n), jnp.int32)  # noqa: E731
    b = 32
    yield (
        "cifar_cnn (nn.Conv)",
        CifarCNN(conv_impl="xla"),
        xent,
        b,
        {"x": img(steps * b), "y": lab(steps * b, 10)},
        False,
    )  # noqa: E501
    yield "resnet_bn", ResNetBN(), xent, b, {"x": img(steps * b), "y": lab(steps * b, 10)}, True
    tokens = jnp.asarray(rng.integers(1, 10_000, (steps * b, 200)), jnp.int32)
    yield (
        "imdb_rnn",
        ImdbRNN(),
        bce,
        b,
        {"x": tokens, "y": lab(steps * b, 2).astype(jnp.float32)},
        False,
    )  # noqa: E501
    b = 128
    x = jnp.asarray(rng.random((steps * b, 784)), jnp.float32)
    yield "mlp", MLP(), xent, b, {"x": x, "y": lab(steps * b, 10)}, False


def plain_step(model, loss, opt, bn: bool):
    """The hand-written step (optax only), params and BatchNorm statistics in a tuple."""

    def step(carry, batch):
        params, stats, opt_state = carry

        def f(p):
            if bn:
                out, upd = model.apply(
                    {"params": p, "batch_stats": stats}, batch["x"], train=True,
                    mutable=["batch_stats"],
                )  # fmt: skip
                return loss(out, batch), upd["batch_stats"]
            return loss(model.apply({"params": p}, batch["x"]), batch), stats

        (value, stats), grads = jax.value_and_grad(f, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), stats, opt_state), value

    return jax.jit(step, donate_argnums=0)


def measure(name, model, loss, batch_size, data, bn, steps, repeats):
    opt = optax.adam(1e-3)
    n = steps * batch_size
    x0 = data["x"][:1]
    variables = model.init(jax.random.key(0), x0, **({"train": False} if bn else {}))
    stats = variables.get("batch_stats")
    kw = {"apply_kwargs": {"train": True}} if bn else {}

    def fresh_state():
        return jinit.init_state(variables["params"], opt, {"batch_stats": stats} if bn else None)

    # The plain loop's batches: the same order fit uses (seed 0, epoch 0), gathered up front.
    idx = jinit.epoch_indices(jax.random.fold_in(jax.random.key(0), 0), n, batch_size)
    batches = [jax.tree.map(lambda a, i=i: a[i], data) for i in idx]
    step = plain_step(model, loss, opt, bn)

    def run_plain():
        carry = (variables["params"], stats, opt.init(variables["params"]))
        carry = jax.tree.map(jnp.copy, carry)
        t = time.perf_counter()
        for batch in batches:
            carry, value = step(carry, batch)
        jax.block_until_ready(carry)
        return time.perf_counter() - t

    programs = {
        s: jinit.compile_programs(loss, opt, model=model, stepping=s, **kw) for s in STEPPINGS
    }
    results: dict[str, list[float]] = {"plain": []}
    compile_s = {}

    def run_fit(s):
        state = jax.tree.map(jnp.copy, fresh_state())
        t = time.perf_counter()
        state, _ = jinit.fit(
            state, loss_fn=loss, optimizer=opt, train_data=data, epochs=1,
            batch_size=batch_size, model=model, programs=programs[s], stepping=s,
            steps_per_call=25 if s == "step" else 10, progress=False, **kw,
        )  # fmt: skip
        jax.block_until_ready(state)
        return time.perf_counter() - t

    t = time.perf_counter()
    run_plain()
    compile_s["plain"] = time.perf_counter() - t
    for s in STEPPINGS:
        compile_s[f"fit:{s}"] = run_fit(s)  # first call: compiles
        results[f"fit:{s}"] = []
    for r in range(repeats):
        results["plain"].append(run_plain())
        for s in STEPPINGS:
            times = results[f"fit:{s}"]
            # A contender over 4x slower than the plain loop in the first repeat is not
            # repeated (its ratio is far from 1 either way; this bounds the run time).
            if r == 0 or times[0] < 4 * results["plain"][0]:
                times.append(run_fit(s))
    med = {k: statistics.median(v) for k, v in results.items()}
    row = {
        "model": name,
        "steps": steps,
        "batch_size": batch_size,
        "examples_per_s": {k: n / v for k, v in med.items()},
        "ratio_vs_plain": {k: med["plain"] / v for k, v in med.items() if k != "plain"},
        "median_s": med,
        "times_s": results,
        "first_call_s": compile_s,
        "repeats": repeats,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
    }
    default = jinit.default_stepping()
    row["default_stepping"] = default
    row["default_ratio"] = row["ratio_vs_plain"][f"fit:{default}"]
    print(
        f"{name:22s} plain {n / med['plain']:8.0f} ex/s | "
        + " | ".join(f"{s} {row['ratio_vs_plain'][f'fit:{s}']:.2f}x" for s in STEPPINGS),
        flush=True,
    )
    return row


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import flax

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
    }


def write(rows, env, out: pathlib.Path) -> None:
    """Writes the rows, keeping earlier rows of models not rerun (``--only``)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fit_overhead.json"
    if path.exists():
        new = {r["model"] for r in rows}
        old = [r for r in json.loads(path.read_text())["rows"] if r["model"] not in new]
        rows = sorted(old + rows, key=lambda r: MODELS.index(r["model"]))
    (out / "fit_overhead.json").write_text(json.dumps({"machine": env, "rows": rows}, indent=2))
    lines = [
        f"Machine: {env['cpu']}, {env['cores']} cores, backend {env['backend']}; jax "
        f"{env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}, optax {env['optax']}; "
        f"{env['date']} (load average at start {env['load_average_at_start'][0]:.1f}: the "
        "machine is shared, so runs are interleaved and ratios are of medians).",
        "",
        "Each row states its own run's machine load and date in fit_overhead.json (rows can "
        "be rerun one at a time with --only). "
        "Ratio = plain-loop time / fit time for one epoch (1.00 = as fast as the plain loop; "
        f"higher is faster). fit's default stepping here is `{env['default_stepping']}`.",
        "",
        "| model | steps x batch, repeats | plain loop (examples/s) | fit:step | fit:scan | "
        "fit:unroll |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        q = r["ratio_vs_plain"]
        lines.append(
            f"| {r['model']} | {r['steps']} x {r['batch_size']}, {r['repeats']} | "
            f"{r['examples_per_s']['plain']:.0f} | "
            + " | ".join(f"{q[f'fit:{s}']:.2f}x" for s in STEPPINGS)
            + " |"
        )
    lines += [
        "",
        "First call (compilation included), seconds:",
        "",
        "| model | plain | fit:step | fit:scan | fit:unroll |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["first_call_s"]
        lines.append(
            f"| {r['model']} | {c['plain']:.1f} | "
            + " | ".join(f"{c[f'fit:{s}']:.1f}" for s in STEPPINGS)
            + " |"
        )
    lines.append("")
    (out / "fit_overhead.md").write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated model names")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    args = p.parse_args(argv)
    steps, repeats = (10, 1) if args.quick else (args.steps, args.repeats)
    env = machine()
    env["default_stepping"] = jinit.default_stepping()
    rows = []
    for name, model, loss, b, data, bn in cases(steps):
        if args.only and name.split()[0] not in args.only.split(","):
            continue
        rows.append(measure(name, model, loss, b, data, bn, steps, repeats))
    write(rows, env, pathlib.Path(args.out))


if __name__ == "__main__":
    main()
