"""Where an IMDB RNN sweep step's time goes: CPU and wall ms per model-step, part by part.

Run by ``benchmarks/imdb_keras.py --only profile`` (or by hand, with the device count set
before jax starts, e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=3``). For M models
(the study's model, batch 32, 200 tokens, random tokens: the speed does not depend on them) it
times, after a warm-up call, 25-step chunks of:

* ``grad``: forward and backward (a negligible SGD update, so nothing is optimized away);
* ``+adam``: with the Adam update (the study's step without any guard);
* ``+norm``: with the gradient's global norm (the guard's finiteness test);
* ``+select``: with the select of the new or the old state (what ``on_nonfinite='raise'`` adds);
* ``program raise`` / ``program continue``: ``jinit.compile_programs``'s train program, with the
  model axis sharded over all devices, as ``run_sweep`` runs it;

each as ``lax.map`` over the models (the CPU strategy) and ``vmap``. Prints one JSON line.

    XLA_FLAGS=--xla_force_host_platform_device_count=3 python benchmarks/_imdb_profile.py --models 3,9
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments.imdb import config
from experiments.imdb import train as imdb_train

STEPS = 25


def synthetic_setup(n: int = 20_000):
    """The sweep's functions for one ``uniform`` arm, its Adam, and ``n`` random reviews (the
    speed does not depend on the tokens): ``(loss_fn, metric_fn, init_params, opt, data)``."""
    cfg = config.get_config(("uniform",), (0,))
    loss_fn, metric_fn, init_params = imdb_train.make_functions(cfg)
    opt = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    rng = np.random.default_rng(0)
    data = {
        "x": jnp.asarray(rng.integers(1, cfg.num_words, (n, cfg.maxlen)), jnp.int32),
        "y": jnp.asarray(rng.integers(0, 2, n), jnp.int32),
    }
    return loss_fn, metric_fn, init_params, opt, data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="3,9", help="comma-separated model counts")
    p.add_argument("--calls", type=int, default=4, help="timed calls of 25 steps")
    args = p.parse_args()
    loss_fn, metric_fn, init_params, opt, data = synthetic_setup()
    n = data["y"].shape[0]
    rows = []
    for m in (int(s) for s in args.models.split(",")):
        keys = jinit.seed_keys(list(range(m)))
        state0 = jax.jit(
            lambda ks: jinit.init_models(
                lambda k: jinit.init_state(init_params("uniform", k), opt), ks
            )
        )(keys)
        idx = jnp.stack(
            [
                jax.random.permutation(jax.random.key(i), n)[: 625 * 32].reshape(625, 32)
                for i in range(m)
            ]
        )
        for part in ("grad", "+adam", "+norm", "+select"):
            for strategy in ("map", "vmap"):
                f = _part_program(part, strategy, loss_fn, opt, data)
                rows.append(_time(m, part, strategy, f, state0, idx, args.calls))
        padded = jinit.padded_size(m)
        mesh = jinit.model_mesh(padded)
        state_p = jinit.shard_models(jinit.pad_models(state0, padded), mesh)
        idx_p = jinit.pad_models(idx, padded)
        for mode in ("raise", "continue"):
            for strategy in ("map", "vmap"):
                progs = jinit.compile_programs(
                    loss_fn,
                    opt,
                    metric_fn,
                    num_models=padded,
                    strategy=strategy,
                    on_nonfinite=mode,
                    mesh=mesh,
                )

                def f(st, ix, progs=progs):
                    return progs["train"](st, progs.guard(0), data, ix, STEPS)[0]

                rows.append(_time(m, f"program {mode}", strategy, f, state_p, idx_p, args.calls))
    print(json.dumps({"devices": jax.device_count(), "steps_per_call": STEPS, "rows": rows}))


def _part_program(part, strategy, loss_fn, opt, data):
    def one(carry, i):
        st, ix = carry
        batch = jax.tree.map(lambda a: a[ix[i]], data)
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(st.params, batch)
        if part == "grad":
            new = st._replace(params=jax.tree.map(lambda p, q: p - 1e-9 * q, st.params, g))
            return (new, ix), loss
        u, o = opt.update(g, st.opt_state, st.params)
        new = st._replace(params=optax.apply_updates(st.params, u), opt_state=o)
        if part in ("+norm", "+select"):
            ok = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(g))
            if part == "+select":
                new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, st)
            loss = loss + ok
        return (new, ix), loss

    def run(st, ix):
        return jax.lax.scan(one, (st, ix), jnp.arange(STEPS))[0][0]

    if strategy == "vmap":
        return jax.jit(jax.vmap(run), donate_argnums=0)
    return jax.jit(lambda st, ix: jax.lax.map(lambda a: run(*a), (st, ix)), donate_argnums=0)


def _time(m, part, strategy, f, state, idx, calls) -> dict:
    st = f(jax.tree.map(jnp.copy, state), idx)  # compile and warm up
    jax.block_until_ready(st)
    c, t = time.process_time(), time.perf_counter()
    for _ in range(calls):
        st = f(st, idx)
    jax.block_until_ready(st)
    per = calls * STEPS * m
    row = {
        "models": m,
        "part": part,
        "strategy": strategy,
        "cpu_ms_per_model_step": (time.process_time() - c) / per * 1e3,
        "wall_ms_per_model_step": (time.perf_counter() - t) / per * 1e3,
    }
    print(row, file=sys.stderr, flush=True)
    return row


if __name__ == "__main__":
    main()
