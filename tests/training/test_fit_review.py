"""fit's RNG streams (NNX and linen dropout: a fresh mask per step, per epoch and per model of
a sweep, reproducible and resumable), its scalar-loss and (B,) metric checks, seed_keys' checks.

The dropout probe: the model's output is a dropout of ones, so ``o == 0`` is the mask, and the
loss's metric ``sig = sum(mask * w)`` with distinct weights ``w`` is a signature of it; with
``sig2 = sig**2`` the epoch means give the variance of the signature over the epoch's steps,
zero exactly when every step used the same mask.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jinit

B, F, H, N = 32, 8, 64, 256
W = jnp.arange(B * H, dtype=jnp.float32).reshape(B, H) / 1000
X = jax.random.normal(jax.random.key(0), (N, F))
Y = jnp.sum(X[:, :2], axis=1)
OPT0 = optax.sgd(0.0)  # params stay put: only the masks change


class NnxDrop(nnx.Module):
    def __init__(self, rngs):
        self.l = nnx.Linear(F, H, rngs=rngs)
        self.do = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.do(jnp.ones((x.shape[0], H)) + 0 * self.l(x))


class LinenDrop(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dense(H)(x)
        return nn.Dropout(0.5, deterministic=not train)(jnp.ones_like(h) + 0 * h)


def sig_loss(o, b):
    sig = jnp.sum((o == 0) * W)
    return jnp.mean(o), {"sig": sig, "sig2": sig**2}


def zeros_metric(o, b):
    return {"zeros": jnp.mean(o == 0, axis=1).astype(jnp.float32)}


def sig_stats(history):
    """Per epoch: (mean signature, its variance over the epoch's steps)."""
    return [
        (np.asarray(e.train["sig"], np.float64), e.train["sig2"] - np.float64(e.train["sig"]) ** 2)
        for e in history
    ]


def fit_nnx(model, epochs=2, state=None, **kw):
    state = state if state is not None else jinit.init_state(nnx.state(model, nnx.Param), OPT0)
    args = dict(model=model, loss_fn=sig_loss, optimizer=OPT0, train_data={"x": X})
    args.update(epochs=epochs, batch_size=B, progress=False, **kw)
    return jinit.fit(state, **args)


def test_nnx_dropout_fresh_mask_every_step_and_epoch_and_off_in_evaluation():
    _, h = fit_nnx(NnxDrop(nnx.Rngs(0)), val_data={"x": X[:64]}, metric_fn=zeros_metric)
    assert float(h[0].val["zeros"]) == 0.0  # nnx.view(model, deterministic=True)
    (s0, v0), (s1, v1) = sig_stats(h)
    # before the fix: the same signature in both epochs, variance 0 (one mask for the run)
    assert s0 != s1
    # a Bernoulli(1/2) mask: sig has mean sum(W)/2 and variance sum(W**2)/4 over steps
    mean, var = float(jnp.sum(W)) / 2, float(jnp.sum(W**2)) / 4
    for s, v in ((s0, v0), (s1, v1)):
        assert abs(s - mean) < 4 * np.sqrt(var / (N // B))
        assert 0.1 * var < v < 10 * var


def test_nnx_dropout_same_seed_bitwise_and_other_seed_differs():
    opt = optax.sgd(0.1)

    def run(seed):
        m = NnxDrop(nnx.Rngs(seed))
        state = jinit.init_state(nnx.state(m, nnx.Param), opt)
        s, h = jinit.fit(
            state, model=m, loss_fn=sig_loss, optimizer=opt, train_data={"x": X}, epochs=1,
            batch_size=B, progress=False,
        )  # fmt: skip
        return s.params, h[0].train["sig"]

    p0, sig0 = run(0)
    p0b, sig0b = run(0)
    _, sig1 = run(1)
    assert sig0 == sig0b
    for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p0b), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sig0 != sig1  # the module's own nnx.Rngs seed drives the masks


def test_nnx_dropout_resume_replays_the_same_masks():
    m = NnxDrop(nnx.Rngs(3))
    _, whole = fit_nnx(m, epochs=2)
    state, first = fit_nnx(m, epochs=1)
    _, second = fit_nnx(m, epochs=2, state=state, start_epoch=1)
    got = [e.train["sig"] for e in first + second]
    assert got == [e.train["sig"] for e in whole]


def test_nnx_dropout_step_and_scan_stepping_agree():
    m = NnxDrop(nnx.Rngs(4))
    _, scan = fit_nnx(m, epochs=1, stepping="scan")
    _, step = fit_nnx(m, epochs=1, stepping="step")
    assert scan[0].train["sig"] == step[0].train["sig"]


def test_nnx_sweep_members_get_different_masks():
    models = [NnxDrop(nnx.Rngs(0)) for _ in range(2)]
    states = [jinit.init_state(nnx.state(m, nnx.Param), OPT0) for m in models]
    state = jax.tree.map(lambda *a: jnp.stack(a), *states)
    _, h = fit_nnx(models[0], epochs=1, state=state, num_models=2)
    sig = h[0].train["sig"]
    assert sig.shape == (2,) and sig[0] != sig[1]  # same module streams, model index folded in


def test_nnx_sweep_vmap_and_map_draw_the_same_masks():
    models = [NnxDrop(nnx.Rngs(0)) for _ in range(2)]
    state = lambda: jax.tree.map(  # noqa: E731
        lambda *a: jnp.stack(a), *[jinit.init_state(nnx.state(m, nnx.Param), OPT0) for m in models]
    )
    _, vm = fit_nnx(models[0], epochs=1, state=state(), num_models=2, strategy="vmap")
    _, mp = fit_nnx(models[0], epochs=1, state=state(), num_models=2, strategy="map")
    np.testing.assert_allclose(vm[0].train["sig"], mp[0].train["sig"], rtol=1e-6)


def test_nnx_model_without_random_layers_evaluates():
    m, opt = nnx.Linear(F, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1)
    val = {"x": X[:64], "y": Y[:64]}
    state, h = jinit.fit(
        jinit.init_state(nnx.state(m, nnx.Param), opt), model=m, optimizer=opt,
        loss_fn=lambda o, b: jnp.mean((o[:, 0] - b["y"]) ** 2), train_data={"x": X, "y": Y},
        epochs=1, batch_size=B, progress=False, val_data=val,
        metric_fn=lambda o, b: {"mse": (o[:, 0] - b["y"]) ** 2},
    )  # fmt: skip
    nnx.update(m, state.params)
    want = jnp.mean((m(val["x"])[:, 0] - val["y"]) ** 2)
    np.testing.assert_allclose(h[0].val["mse"], want, rtol=1e-5)


def fit_linen(**kw):
    model = LinenDrop()
    params = model.init(jax.random.key(0), X[:1])
    state = jinit.init_state(params, OPT0)
    args = dict(model=model, loss_fn=sig_loss, optimizer=OPT0, train_data={"x": X}, epochs=2)
    args.update(batch_size=B, progress=False, apply_kwargs={"train": True})
    args.update(kw)
    return jinit.fit(state, **args)


def test_linen_dropout_needs_a_key_and_names_the_stream():
    # before: flax.errors.InvalidRngError: Dropout_0 needs PRNG for "dropout"
    with pytest.raises(ValueError, match=r'stream "dropout".*rngs=\{\'dropout\''):
        fit_linen()


def test_linen_dropout_fresh_mask_per_step_and_off_in_eval():
    kw = dict(val_data={"x": X[:64]}, metric_fn=zeros_metric, eval_apply_kwargs={"train": False})
    _, h = fit_linen(rngs={"dropout": jax.random.key(7)}, **kw)
    (s0, v0), (s1, v1) = sig_stats(h)
    var = float(jnp.sum(W**2)) / 4
    assert s0 != s1 and 0.1 * var < v0 < 10 * var and 0.1 * var < v1 < 10 * var
    assert float(h[0].val["zeros"]) == 0.0
    # evaluation that still asks for dropout is told to switch it off
    with pytest.raises(ValueError, match=r'"dropout" in evaluation.*eval_apply_kwargs'):
        fit_linen(
            rngs={"dropout": jax.random.key(7)}, **{**kw, "eval_apply_kwargs": {"train": True}}
        )


class LinenReg(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(32)(x))
        return nn.Dense(1)(nn.Dropout(0.2, deterministic=not train)(h))[:, 0]


def test_linen_dropout_trains():
    model, opt = LinenReg(), optax.adam(1e-2)
    state = jinit.init_state(model.init(jax.random.key(0), X[:1]), opt)

    def mse(o, b):
        return jnp.mean((o - b["y"]) ** 2)

    _, h = jinit.fit(
        state, model=model, loss_fn=mse, optimizer=opt, train_data={"x": X, "y": Y}, epochs=6,
        batch_size=B, progress=False, apply_kwargs={"train": True},
        rngs={"dropout": jax.random.key(1)},
    )  # fmt: skip
    assert float(h[-1].train["loss"]) < 0.5 * float(h[0].train["loss"])


def test_linen_sweep_keys_per_model_match_single_runs():
    model = LinenDrop()
    keys = jinit.seed_keys([5, 6])
    init = lambda k: jinit.init_state(model.init(k, X[:1]), OPT0)  # noqa: E731
    args = dict(model=model, loss_fn=sig_loss, optimizer=OPT0, train_data={"x": X}, epochs=1)
    args.update(batch_size=B, progress=False, apply_kwargs={"train": True})
    _, sweep = jinit.fit(
        jinit.init_models(init, keys), num_models=2, rngs={"dropout": keys}, **args
    )
    _, single = jinit.fit(init(keys[1]), rngs={"dropout": keys[1]}, **args)
    got = sweep[0].train["sig"]
    assert got[0] != got[1]
    np.testing.assert_allclose(got[1], single[0].train["sig"], rtol=1e-6)


# -- the shape checks ---------------------------------------------------------------------------


class Lin(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)[:, 0]


def fit_lin(**kw):
    model, opt = Lin(), optax.sgd(0.1)
    state = jinit.init_state(model.init(jax.random.key(0), X[:1]), opt)
    args = dict(model=model, optimizer=opt, train_data={"x": X, "y": Y}, epochs=1, batch_size=B)
    args.update(progress=False, loss_fn=lambda o, b: jnp.mean((o - b["y"]) ** 2))
    args.update(kw)
    return jinit.fit(state, **args)


@pytest.mark.parametrize(
    "metric, shape",
    [
        (lambda o, b: ((o - b["y"]) ** 2)[:, None], r"\(40, 1\)"),  # before: mse 55.3, not 0.618
        (lambda o, b: jnp.mean((o - b["y"]) ** 2), r"\(\)"),
    ],
    ids=["column", "scalar"],
)
def test_metric_fn_must_return_per_example_values(metric, shape):
    val = {"x": X[:100], "y": Y[:100]}
    with pytest.raises(ValueError, match=rf"metric_fn.*\(B,\).*\(40,\).*'mse' has shape {shape}"):
        fit_lin(val_data=val, metric_fn=lambda o, b: {"mse": metric(o, b)}, eval_batch_size=40)


def test_metric_fn_per_example_values_are_the_mean():
    val = {"x": X[:100], "y": Y[:100]}
    state, h = fit_lin(val_data=val, metric_fn=lambda o, b: {"mse": (o - b["y"]) ** 2})
    want = jnp.mean((Lin().apply(state.params, val["x"]) - val["y"]) ** 2)
    np.testing.assert_allclose(h[0].val["mse"], want, rtol=1e-5)


def test_vector_loss_is_named():
    # before: TypeError: Gradient only defined for scalar-output functions
    with pytest.raises(ValueError, match=r"loss_fn must return a float scalar.*\(32,\)"):
        fit_lin(loss_fn=lambda o, b: (o - b["y"]) ** 2)


def test_seed_keys_checks():
    with pytest.raises(TypeError, match=r"seeds must be a sequence of ints, e\.g\. range\(3\)"):
        jinit.seed_keys(3)
    assert jinit.seed_keys(range(3)).shape == (3,)
    # repeats are legal: a sweep over (initializer, seed) pairs gives every init the same seeds
    keys = jinit.seed_keys((0, 1, 0))
    assert jnp.array_equal(jax.random.key_data(keys[0]), jax.random.key_data(keys[2]))


def test_rngs_needs_a_mapping_and_a_linen_or_nnx_model():
    with pytest.raises(ValueError, match="rngs must be a mapping"):
        fit_lin(rngs=("dropout",))
    with pytest.raises(ValueError, match="rngs must be a mapping.*model=function"):
        fit_lin(model=lambda p, x: Lin().apply(p, x), rngs={"dropout": jax.random.key(0)})


def test_nnx_rngs_must_name_the_modules_own_streams():
    # nnx.reseed ignores a stream the module lacks: the mask would never change. Dropout built
    # with nnx.Rngs(0) draws from "default", so rngs={"dropout": ...} is an error, and
    # rngs={"default": key} gives masks that change per step and with the key.
    class M(nnx.Module):
        def __init__(self, rngs):
            init = nnx.initializers.ones
            self.lin = nnx.Linear(8, 1, use_bias=False, kernel_init=init, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.lin(self.drop(x))

    def loss(o, b):
        return jnp.mean(o), {"sig": jnp.sum(o[:, 0] * jnp.arange(1, 9))}

    opt = optax.sgd(0.0)

    def run(rngs):
        m = M(nnx.Rngs(0))
        _, h = jinit.fit(
            jinit.init_state(nnx.state(m, nnx.Param), opt), model=m, loss_fn=loss,
            optimizer=opt, train_data={"x": jnp.ones((8, 8))}, epochs=4, batch_size=8,
            rngs=rngs, progress=False,
        )  # fmt: skip
        return [float(e.train["sig"]) for e in h]

    with pytest.raises(
        ValueError, match=r"stream\(s\) \['dropout'\].*its streams are \['default'\]"
    ):
        run({"dropout": jax.random.key(5)})
    a, b = run({"default": jax.random.key(5)}), run({"default": jax.random.key(6)})
    assert len(set(a)) > 1 and a != b
    assert run({"default": jax.random.key(5)}) == a
