"""jinit.fit against a plain Python loop of ``jax.jit(step)``, in the same process.

For each model, one optimizer step = forward + backward + Adam update on one batch, over
``epochs`` epochs of ``steps`` batches:

* ``plain``: the loop a user writes by hand with optax (no jinit): each epoch a jitted
  permutation of the training set (the same keys as fit's default ``seed=0``, so the same
  batches), then ``for row in order: state = step(state, data, row)`` with
  ``step = jax.jit(..., donate_argnums=0)`` gathering its batch on the device;
* ``pre``: the same loop over batches gathered before the clock starts (less work than a
  user's loop does: it leaves out the shuffle and the gathers; shown as the strongest
  reference, not used for the ratio);
* ``fit``: ``jinit.fit`` with the defaults a user gets (``stepping=None``, which picks
  ``jinit.fit_stepping(...)``: ``step`` where the loss has a convolution, else ``scan``;
  ``steps_per_call=25``, the progress default: one line per
  epoch off a terminal, written here to a buffer), which also guards every step against NaN,
  keeps copies to roll back to, and returns the epoch's mean loss; its programs compiled
  beforehand (their first call is timed separately);
* ``fit:<stepping>``: the same with ``stepping=`` each of ``step``, ``scan``, ``unroll``
  (``scan``/``unroll``: chunks of 10 steps), the measurements behind the default rule.

Models: the seed CIFAR CNN with plain ``nn.Conv`` (``CifarCNN(conv_impl='xla')``), a small
ResNet with BatchNorm (batch_stats trained through ``model_state``), the IMDB RNN
(``ImdbRNN``, 200 tokens) and an MLP (784-256-256-10, 1000 steps). Runs are interleaved
(plain, pre, fit, then each stepping, repeated) and the median time of each is reported, with
the ratio ``plain time / fit time`` (1.0 = as fast as the plain loop) and the same ratio of
process CPU time (all threads), which a loaded machine disturbs less than the wall clock. A
stepping more than 4x slower than the plain loop in the first repeat is not repeated.

    python benchmarks/fit_overhead.py            # writes docs/benchmarks/fit_overhead.{json,md}
    python benchmarks/fit_overhead.py --only mlp,imdb_rnn   # rerun rows, keep the others
    python benchmarks/fit_overhead.py --quick --out /tmp/fo   # smoke run: 10 steps, 1 repeat
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import json
import os
import pathlib
import platform
import statistics
import sys
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


# name -> (steps per epoch, epochs, repeats) by default: about 1-5 s of training per run.
SIZES = {
    "cifar_cnn (nn.Conv)": (40, 1, 5),
    "resnet_bn": (12, 1, 3),
    "imdb_rnn": (100, 3, 5),
    "mlp": (250, 4, 7),
}


def cases(steps: int | None):
    rng = np.random.default_rng(0)
    img = lambda n: jnp.asarray(rng.random((n, 32, 32, 3)), jnp.float32)  # noqa: E731
    lab = lambda n, k: jnp.asarray(rng.integers(0, k, n), jnp.int32)  # noqa: E731

    def n_of(name, b):
        return (steps or SIZES[name][0]) * b

    n = n_of("cifar_cnn (nn.Conv)", 32)
    yield "cifar_cnn (nn.Conv)", CifarCNN(conv_impl="xla"), xent, 32, lambda: {
        "x": img(n), "y": lab(n, 10)
    }, False  # fmt: skip
    n2 = n_of("resnet_bn", 32)
    yield "resnet_bn", ResNetBN(), xent, 32, lambda: {"x": img(n2), "y": lab(n2, 10)}, True
    n3 = n_of("imdb_rnn", 32)
    yield "imdb_rnn", ImdbRNN(), bce, 32, lambda: {
        "x": jnp.asarray(rng.integers(1, 10_000, (n3, 200)), jnp.int32),
        "y": lab(n3, 2).astype(jnp.float32),
    }, False  # fmt: skip
    n4 = n_of("mlp", 128)
    yield "mlp", MLP(), xent, 128, lambda: {
        "x": jnp.asarray(rng.random((n4, 784)), jnp.float32), "y": lab(n4, 10)
    }, False  # fmt: skip


def plain_steps(model, loss, opt, bn: bool):
    """The hand-written step (optax only), params and BatchNorm statistics in a tuple:
    ``step(carry, data, rows)`` gathers its batch from the device-resident data by a row of
    example indices; ``pre(carry, batch)`` takes a batch gathered beforehand."""

    def pre(carry, batch):
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

    def step(carry, data, rows):
        return pre(carry, jax.tree.map(lambda a: a[rows], data))

    return jax.jit(step, donate_argnums=0), jax.jit(pre, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=(1, 2))
def shuffled(key, n, batch_size):
    """The epoch's order, hand-written: a permutation cut into rows of ``batch_size``."""
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def _timed(f):
    t, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - t, time.process_time() - c


def measure(name, model, loss, batch_size, data, bn, steps, epochs, repeats, steppings):
    opt = optax.adam(1e-3)
    n = steps * batch_size
    x0 = data["x"][:1]
    variables = model.init(jax.random.key(0), x0, **({"train": False} if bn else {}))
    stats = variables.get("batch_stats")
    kw = {"apply_kwargs": {"train": True}} if bn else {}

    def fresh_state():
        return jinit.init_state(variables["params"], opt, {"batch_stats": stats} if bn else None)

    def fresh_carry():
        return jax.tree.map(jnp.copy, (variables["params"], stats, opt.init(variables["params"])))

    step, pre_step = plain_steps(model, loss, opt, bn)
    keys = [jax.random.fold_in(jax.random.key(0), e) for e in range(epochs)]  # fit's seed=0
    # pre: every epoch's batches gathered before the clock starts
    pre_batches = [
        [jax.tree.map(lambda a, r=r: a[r], data) for r in shuffled(k, n, batch_size)] for k in keys
    ]

    def run_plain():
        carry = fresh_carry()

        def go():
            nonlocal carry
            for k in keys:
                for rows in shuffled(k, n, batch_size):
                    carry, value = step(carry, data, rows)
            jax.block_until_ready(carry)

        return _timed(go)

    def run_pre():
        carry = fresh_carry()

        def go():
            nonlocal carry
            for batches in pre_batches:
                for batch in batches:
                    carry, value = pre_step(carry, batch)
            jax.block_until_ready(carry)

        return _timed(go)

    # fit's own choice (what jinit.fit picks with stepping=None); forced again only if different
    default = jinit.fit_stepping(fresh_state(), loss, data, batch_size, model=model, **kw)
    contenders = ["fit"] + [f"fit:{s}" for s in steppings if s != default]
    programs = {
        c: jinit.compile_programs(
            loss, opt, model=model, stepping=default if c == "fit" else c.split(":")[1], **kw
        )
        for c in contenders
    }

    def run_fit(c):
        state = fresh_state()
        extra = {} if c == "fit" else {"stepping": c.split(":")[1]}
        if c.split(":")[-1] in ("scan", "unroll"):
            extra["steps_per_call"] = 10

        def go():
            nonlocal state
            with contextlib.redirect_stderr(io.StringIO()):  # the per-epoch progress lines
                state, _ = jinit.fit(
                    state, loss_fn=loss, optimizer=opt, train_data=data, epochs=epochs,
                    batch_size=batch_size, model=model, programs=programs[c], **kw, **extra,
                )  # fmt: skip
            jax.block_until_ready(state)

        return _timed(go)

    runners = {"plain": run_plain, "pre": run_pre} | {
        c: (lambda c=c: run_fit(c)) for c in contenders
    }
    first = {k: f()[0] for k, f in runners.items()}  # first calls: compilation included
    results: dict[str, list] = {k: [] for k in runners}
    for r in range(repeats):
        for k, f in runners.items():
            times = results[k]
            # A contender over 4x slower than the plain loop in the first repeat is not
            # repeated (its ratio is far from 1 either way; this bounds the run time).
            if r == 0 or times[0][0] < 4 * results["plain"][0][0]:
                times.append(f())
    wall = {k: statistics.median(t for t, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    if default in steppings:  # fit:<default> is fit itself
        for d in (wall, cpu, first):
            d[f"fit:{default}"] = d["fit"]
    total = epochs * n
    row = {
        "model": name,
        "steps": steps,
        "epochs": epochs,
        "batch_size": batch_size,
        "examples_per_s": {k: total / v for k, v in wall.items()},
        "ratio_vs_plain": {k: wall["plain"] / v for k, v in wall.items() if k != "plain"},
        "cpu_ratio_vs_plain": {k: cpu["plain"] / v for k, v in cpu.items() if k != "plain"},
        "median_s": wall,
        "median_cpu_s": cpu,
        "times_s": results,
        "first_call_s": first,
        "repeats": repeats,
        "default_stepping": programs["fit"].stepping,  # fit:<it> is the fit column
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
    }
    q, c = row["ratio_vs_plain"], row["cpu_ratio_vs_plain"]
    print(
        f"{name:20s} plain {total / wall['plain']:8.0f} ex/s | fit {q['fit']:.2f}x "
        f"(cpu {c['fit']:.2f}x, vs pre {wall['pre'] / wall['fit']:.2f}x) | "
        + " | ".join(f"{s} {q[f'fit:{s}']:.2f}x" for s in steppings)
        + f" | load {row['load_average'][0]:.1f}",
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
        old = [
            r
            for r in json.loads(path.read_text())["rows"]
            if r["model"] not in new and "cpu_ratio_vs_plain" in r  # this script's format
        ]
        rows = sorted(old + rows, key=lambda r: MODELS.index(r["model"]))
    path.write_text(json.dumps({"machine": env, "rows": rows}, indent=2))
    steppings = [s for s in STEPPINGS if any(f"fit:{s}" in r["ratio_vs_plain"] for r in rows)]

    def cell(d, k, fmt="{:.2f}x"):
        return fmt.format(d[k]) if k in d else "-"

    lines = [
        f"Machine: {env['cpu']}, {env['cores']} cores, backend {env['backend']}; jax "
        f"{env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}, optax {env['optax']}. "
        "The machine was shared with other jobs: each row gives the load average (1 min) when "
        "it finished and its date is in fit_overhead.json; runs are interleaved and the "
        "ratios are of medians.",
        "",
        "Ratio = plain-loop time / fit time (1.00 = as fast as the plain loop; higher is "
        "faster). `fit` is `jinit.fit` with the defaults (`stepping=None`: `jinit.fit_stepping` "
        "picks `step` where the loss has a convolution, else `scan`; the row's "
        "`default_stepping` in the json); `cpu` is the same ratio of process CPU time; `vs pre` "
        "compares fit with the plain loop over batches gathered before the clock starts "
        "(no shuffle or gather timed: less work than a user's loop). The `fit:<stepping>` "
        "columns force each stepping (the measurements behind the default rule). `plain "
        "max/min` is the spread of the plain loop's wall times over the repeats of the same "
        "work: where it is far above 1 the machine's load, not the code, moved the wall-clock "
        "ratios, and the CPU-time ratio is the steadier figure. Every time is in "
        "fit_overhead.json.",
        "",
        "| model | steps x batch x epochs, repeats | plain loop (examples/s) | fit | cpu | "
        "vs pre | " + " | ".join(f"fit:{s}" for s in steppings) + " | plain max/min | load |",
        "|---|---|---|---|---|---|" + "---|" * len(steppings) + "---|---|",
    ]
    for r in rows:
        q, c = r["ratio_vs_plain"], r["cpu_ratio_vs_plain"]
        m = r["median_s"]
        lines.append(
            f"| {r['model']} | {r['steps']} x {r['batch_size']} x {r['epochs']}, "
            f"{r['repeats']} | {r['examples_per_s']['plain']:.0f} | {q['fit']:.2f}x | "
            f"{c['fit']:.2f}x | {m['pre'] / m['fit']:.2f}x | "
            + " | ".join(cell(q, f"fit:{s}") for s in steppings)
            + f" | {max(t for t, _ in r['times_s']['plain']) / min(t for t, _ in r['times_s']['plain']):.1f} | "
            f"{r['load_average'][0]:.1f} |"
        )
    lines += [
        "",
        "First call (compilation included, the whole run), seconds:",
        "",
        "| model | plain | pre | fit | " + " | ".join(f"fit:{s}" for s in steppings) + " |",
        "|---|---|---|---|" + "---|" * len(steppings),
    ]
    for r in rows:
        f = r["first_call_s"]
        lines.append(
            f"| {r['model']} | {f['plain']:.1f} | {f['pre']:.1f} | {f['fit']:.1f} | "
            + " | ".join(cell(f, f"fit:{s}", "{:.1f}") for s in steppings)
            + " |"
        )
    lines += ["", f"Regenerate: `{env['command']}`", ""]
    (out / "fit_overhead.md").write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (default: SIZES)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: SIZES)")
    p.add_argument("--repeats", type=int, default=None, help="repeats (default: SIZES)")
    p.add_argument("--steppings", default=",".join(STEPPINGS), help="forced steppings timed")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated model names (first word)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.epochs, args.repeats = args.steps or 10, args.epochs or 1, 1
    only = args.only.split(",") if args.only else None
    known = [m.split()[0] for m in MODELS]
    if only and not set(only) <= set(known):
        p.error(f"--only: unknown model(s) {sorted(set(only) - set(known))}; choose from {known}")
    steppings = [s for s in args.steppings.split(",") if s]
    if not set(steppings) <= set(STEPPINGS):
        p.error(f"--steppings: choose from {STEPPINGS}, got {args.steppings}")
    env = machine()
    env["command"] = " ".join(
        ["python benchmarks/fit_overhead.py", *(argv if argv is not None else sys.argv[1:])]
    )
    rows = []
    for name, model, loss, b, data, bn in cases(args.steps):
        if only and name.split()[0] not in only:
            continue
        steps0, epochs0, repeats0 = SIZES[name]
        steps = args.steps or steps0
        epochs, repeats = args.epochs or epochs0, args.repeats or repeats0
        rows.append(measure(name, model, loss, b, data(), bn, steps, epochs, repeats, steppings))
    write(rows, env, pathlib.Path(args.out))


if __name__ == "__main__":
    main()
