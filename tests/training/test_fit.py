"""Seed sweeps through fit: vmapped/mapped sweep == separate runs, compile once, resume."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinit

N, D = 96, 6


class MLP(nn.Module):
    kernel_init: object = jinit.glorot_uniform()

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(16, kernel_init=self.kernel_init)(x))
        return nn.Dense(1, kernel_init=self.kernel_init)(x)[:, 0]


MODEL = MLP()


def loss_fn(params, batch):
    logits = MODEL.apply(params, batch["x"])
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["y"]).mean()
    return loss, {"accuracy": jnp.mean((logits > 0) == (batch["y"] > 0.5))}


def metric_fn(params, batch):
    logits = MODEL.apply(params, batch["x"])
    return {
        "loss": optax.sigmoid_binary_cross_entropy(logits, batch["y"]),
        "accuracy": ((logits > 0) == (batch["y"] > 0.5)).astype(jnp.float32),
    }


@pytest.fixture(scope="module")
def data():
    k1, k2 = jax.random.split(jax.random.key(42))
    x = jax.random.normal(k1, (N, D))
    w = jax.random.normal(k2, (D,))
    return {"x": x, "y": (x @ w > 0).astype(jnp.float32)}


OPT = optax.adam(1e-2)
SEEDS = (0, 1, 2)


def init_fn(key):
    return jinit.init_state(MODEL.init(key, jnp.zeros((1, D))), OPT)


def shuffle_keys_for(seeds):
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in seeds])
    return lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(keys)


def run(state, data, seeds, num_models, epochs=2, start_epoch=0, **kw):
    keys = shuffle_keys_for(seeds)
    shuffle = keys if num_models is not None else (lambda e: keys(e)[0])
    return jinit.fit(
        state,
        loss_fn=loss_fn,
        optimizer=OPT,
        train_data=data,
        val_data=data,
        metric_fn=metric_fn,
        epochs=epochs,
        batch_size=8,
        shuffle_keys=shuffle,
        num_models=num_models,
        start_epoch=start_epoch,
        steps_per_call=4,
        progress=False,
        **kw,
    )


def test_vmapped_sweep_equals_separate_runs(data):
    sweep_state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    sweep_state, sweep_hist = run(sweep_state, data, SEEDS, num_models=len(SEEDS), strategy="vmap")
    for m, seed in enumerate(SEEDS):
        single, hist = run(init_fn(jax.random.key(seed)), data, (seed,), None, stepping="scan")
        for a, b in zip(
            jax.tree.leaves(single.params), jax.tree.leaves(sweep_state.params), strict=True
        ):
            np.testing.assert_allclose(a, b[m], rtol=2e-5, atol=2e-6)
        for e in range(2):
            np.testing.assert_allclose(
                hist[e].train["loss"], sweep_hist[e].train["loss"][m], rtol=1e-5
            )
            np.testing.assert_allclose(hist[e].val["accuracy"], sweep_hist[e].val["accuracy"][m])


def test_map_strategy_is_bitwise_equal_to_separate_runs(data):
    """'map' computes each model of the sweep exactly as its own run (the CPU default), when
    that run uses the same loop structure (a scan; the Python loop of one jitted step
    compiles differently, so it agrees to float32 rounding, not to the bit)."""
    sweep_state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    sweep_state, _ = run(sweep_state, data, SEEDS, num_models=len(SEEDS), strategy="map")
    for m, seed in enumerate(SEEDS):
        single, _ = run(init_fn(jax.random.key(seed)), data, (seed,), None, stepping="scan")
        for a, b in zip(
            jax.tree.leaves(single.params), jax.tree.leaves(sweep_state.params), strict=True
        ):
            np.testing.assert_array_equal(a, b[m])


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="strategy='pmap'"):
        jinit.compile_programs(loss_fn, OPT, num_models=2, strategy="pmap")


def test_sweep_members_differ(data):
    state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    k = state.params["params"]["Dense_0"]["kernel"].reshape(len(SEEDS), -1)
    for i in range(len(SEEDS)):
        for j in range(i):
            assert abs(np.corrcoef(k[i], k[j])[0, 1]) < 0.5
            assert not np.allclose(k[i], k[j])


def test_train_program_compiles_once(data):
    progs = jinit.compile_programs(loss_fn, OPT, metric_fn, eval_batch_size=32, num_models=3)
    state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    state, _ = run(state, data, SEEDS, num_models=3, epochs=3, programs=progs)
    assert progs["train"]._cache_size() == 1  # 3 epochs x 3 calls, one compilation
    assert progs["evaluate"]._cache_size() == 1


def test_resume_equals_uninterrupted(data):
    full, _ = run(jinit.init_models(init_fn, jinit.seed_keys(SEEDS)), data, SEEDS, 3, epochs=3)
    half, _ = run(jinit.init_models(init_fn, jinit.seed_keys(SEEDS)), data, SEEDS, 3, epochs=1)
    half = jax.tree.map(np.asarray, half)  # as if restored from a checkpoint
    rest, hist = run(jax.tree.map(jnp.asarray, half), data, SEEDS, 3, epochs=3, start_epoch=1)
    assert [h.epoch for h in hist] == [1, 2]
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(rest.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluate_counts_every_example_once():
    ev = jinit.make_evaluate(lambda p, b: {"v": b["x"]}, batch_size=7)
    x = jnp.arange(20.0)
    np.testing.assert_allclose(jax.jit(ev)(None, {"x": x})["v"], x.mean())


def test_epoch_indices_are_permutations():
    idx = jinit.epoch_indices(jax.random.key(0), 20, 6)
    assert idx.shape == (3, 6) and len(set(np.asarray(idx).ravel().tolist())) == 18
    per_model = jinit.epoch_indices(jax.random.split(jax.random.key(0), 2), 20, 6)
    assert per_model.shape == (2, 3, 6)
    assert not np.array_equal(per_model[0], per_model[1])


def test_fit_records_layer_statistics_every_n_steps(data):
    probe = data["x"][:32]
    stats_fn = lambda p: jinit.layer_statistics(MODEL, p, probe)  # noqa: E731
    state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    _, hist = run(state, data, SEEDS, num_models=3, epochs=2, stats_fn=stats_fn, stats_every=8)
    steps = [s for h in hist for s, _ in h.stats]
    assert steps == [0, 8, 16]  # 12 steps/epoch in calls of 4: boundaries 0, 4, 8 | 12, 16, 20
    _, first = hist[0].stats[0]
    key = next(k for k in first if k.startswith("output/") and k.endswith("/std"))
    assert first[key].shape == (3,)  # one value per model of the sweep
    assert np.all(np.isfinite(first[key]))


def test_bad_data_and_model_axis_are_named(data):
    state = jinit.init_models(init_fn, jinit.seed_keys(SEEDS))
    kw = dict(loss_fn=loss_fn, optimizer=OPT, epochs=1, shuffle_keys=shuffle_keys_for(SEEDS))
    ragged = {"x": data["x"], "y": data["y"][:-1]}
    with pytest.raises(ValueError, match="same leading example axis"):
        jinit.fit(state, train_data=ragged, batch_size=8, num_models=3, **kw)
    with pytest.raises(ValueError, match="batch_size=200 is larger than train_data"):
        jinit.fit(state, train_data=data, batch_size=200, num_models=3, **kw)
    with pytest.raises(ValueError, match="num_models=4"):
        jinit.fit(state, train_data=data, batch_size=8, num_models=4, **kw)
    with pytest.raises(ValueError, match="num_models=3"):
        jinit.fit(init_fn(jax.random.key(0)), train_data=data, batch_size=8, num_models=3, **kw)


def test_init_state_copies_so_fit_leaves_the_callers_params_alive():
    """fit donates its state; init_state copies, so the caller's params stay usable."""
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    opt = optax.sgd(0.1)
    x, y = jnp.ones((8, 3)), jnp.zeros((8, 2))

    def apply(p, x):
        return x @ p["w"] + p["b"]

    def loss_fn(outputs, batch):
        return jnp.mean((outputs - batch[1]) ** 2)

    state, _ = jinit.fit(
        jinit.init_state(params, opt),
        model=apply,
        loss_fn=loss_fn,
        optimizer=opt,
        train_data=(x, y),
        epochs=1,
        batch_size=4,
        progress=False,
    )
    np.testing.assert_array_equal(params["w"], np.ones((3, 2)))  # not deleted, not changed
    assert not np.allclose(state.params["w"], 1.0)
