"""A sweep sharded over 4 forced host devices equals the same sweep on one device."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    import jinit
    from tests.training.test_fit import MLP, loss_fn, metric_fn, OPT, init_fn

    assert len(jax.devices()) == 4, jax.devices()
    k1, k2 = jax.random.split(jax.random.key(42))
    x = jax.random.normal(k1, (64, 6)); y = (x @ jax.random.normal(k2, (6,)) > 0).astype(jnp.float32)
    data = {"x": x, "y": y}
    seeds = (0, 1, 2, 3, 4, 5, 6, 7)
    dkeys = jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in seeds])
    shuffle = lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(dkeys)

    def sweep(devices, strategy):
        state = jinit.init_models(init_fn, jinit.seed_keys(seeds))
        mesh = jinit.model_mesh(len(seeds), devices)
        state = jinit.shard_models(state, mesh)
        progs = jinit.compile_programs(loss_fn, OPT, metric_fn, num_models=len(seeds),
                                       strategy=strategy, mesh=mesh)
        state, hist = jinit.fit(state, loss_fn=loss_fn, optimizer=OPT, train_data=data, val_data=data,
                                metric_fn=metric_fn, epochs=2, batch_size=8, shuffle_keys=shuffle,
                                num_models=len(seeds), steps_per_call=4, progress=False,
                                strategy=strategy, mesh=mesh, programs=progs)
        # 2 epochs x 2 calls, sharded or not: one compilation each
        assert progs["train"]._cache_size() == 1, progs["train"]._cache_size()
        assert progs["evaluate"]._cache_size() == 1
        shards = {str(s.device) for s in jax.tree.leaves(state.params)[0].addressable_shards}
        return state, hist, mesh, shards

    out = {}
    for strategy in ("vmap", "map"):
        s1, h1, m1, d1 = sweep(jax.devices()[:1], strategy)
        s4, h4, m4, d4 = sweep(jax.devices(), strategy)
        assert m1 is None and m4.size == 4 and len(d4) == 4, (m1, m4, d4)
        diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                   for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)))
        same_val = all(np.array_equal(a.val["accuracy"], b.val["accuracy"]) for a, b in zip(h1, h4))
        out[strategy] = {"max_param_diff": diff, "same_val": same_val}
    print(json.dumps(out))
    """
)


def test_sharded_sweep_equals_unsharded():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # vmap: each device runs the same per-model arithmetic, identical to float32 rounding.
    assert r["vmap"]["max_param_diff"] <= 1e-6, r
    assert r["vmap"]["same_val"], r
    # map (shard_map of lax.map): every model is computed exactly as alone, to the bit.
    assert r["map"]["max_param_diff"] == 0.0, r
    assert r["map"]["same_val"], r
