"""Tests of jinit.lsuv: the field cases 16-20 (and the LSUV parts of 9 and 15), the algorithm's
properties (exact one-step convergence on linear layers, execution order, bounded loops), the
model adapters (linen, NNX, plain functions, recurrent cells, BatchNorm/Dropout) and the jit
contract (one compilation, vmap over keys, bitwise determinism)."""

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit
from jinit._src.datadep import lsuv as lsuv_mod
from jinit._src.datadep import solve

ORTH = jinit.lsuv_ready_orthogonal()


@pytest.fixture(autouse=True)
def _strict_numerics():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def leaves_equal(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(bool(jnp.array_equal(x, y)) for x, y in pairs)


def dense_outputs(model, variables, x):
    """Pre-activation outputs of every Dense/Conv, by module path (capture_intermediates)."""
    _, st = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    flat = jax.tree_util.tree_flatten_with_path(st["intermediates"])[0]
    out = {}
    for kp, v in flat:
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in kp]
        if "__call__" in keys and any(str(k).startswith(("Dense", "Conv")) for k in keys):
            out["/".join(str(k) for k in keys[: keys.index("__call__")])] = v
    return out


class MLP(nn.Module):
    widths: tuple = (64, 64, 64)
    act: str = "relu"
    use_bias: bool = True
    kernel_init: object = ORTH

    @nn.compact
    def __call__(self, x):
        for i, w in enumerate(self.widths):
            x = nn.Dense(w, kernel_init=self.kernel_init, use_bias=self.use_bias)(x)
            if i < len(self.widths) - 1 and self.act:
                x = getattr(jax.nn, self.act)(x)
        return x


# --------------------------------------------------------------------------------------------
# Field cases
# --------------------------------------------------------------------------------------------


class Case16(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(256, kernel_init=ORTH)(x)
        x = nn.PReLU()(x)
        x = nn.Dense(256, use_bias=False, kernel_init=ORTH)(x)
        x = nn.LayerNorm()(x)
        return nn.Dense(10, kernel_init=ORTH)(x)


def test_case16_only_kernels_rescaled():
    x = normal(1, (512, 64))
    model = Case16()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    p, p2 = v["params"], v2["params"]
    # Only Dense kernels change; PReLU slope, LayerNorm scale/bias and every bias are bitwise kept.
    for name, iters in zip(report.paths, np.asarray(report.iterations), strict=True):
        assert jnp.array_equal(p[name]["kernel"], p2[name]["kernel"]) == (iters == 0)
    assert int(np.sum(np.asarray(report.iterations))) >= 2
    for name in ("Dense_0", "Dense_2"):
        assert jnp.array_equal(p[name]["bias"], p2[name]["bias"])
    assert "bias" not in p2["Dense_1"]
    assert leaves_equal(p["PReLU_0"], p2["PReLU_0"])
    assert leaves_equal(p["LayerNorm_0"], p2["LayerNorm_0"])
    # Each Dense output (pre-activation) has variance within 0.1 of 1 on the LSUV batch.
    for path, y in dense_outputs(model, v2, x).items():
        assert abs(float(jnp.var(y)) - 1.0) < 0.1, path
    # The report lists exactly the three Dense layers, in forward order.
    assert report.paths == ("Dense_0", "Dense_1", "Dense_2")
    assert bool(jnp.all(report.converged))


def linear_model(depth=4, width=128):
    # Kernels of variance 0.3/fan_in: every layer is far from unit variance before LSUV.
    init = nn.initializers.variance_scaling(0.3, "fan_in", "normal")
    return MLP(widths=(width,) * depth, act="", kernel_init=init)


def test_case17_linear_exact_one_iteration():
    x = normal(1, (512, 64))
    model = linear_model()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    assert np.all(np.asarray(report.iterations) == 1)
    assert np.all(np.abs(np.asarray(report.var_after) - 1.0) < 1e-4)
    for path, y in dense_outputs(model, v2, x).items():
        assert abs(float(jnp.var(y)) - 1.0) < 1e-4, path


def test_case17_unreachable_tolerance_terminates_and_reports():
    x = normal(1, (512, 64))
    model = linear_model()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x, tol=0.0, max_iters=5)
    assert np.all(np.asarray(report.iterations) <= 5)
    assert not np.any(np.asarray(report.converged))
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(v2))
    for path, y in dense_outputs(model, v2, x).items():
        assert abs(float(jnp.var(y)) - 1.0) < 1e-3, path
    # The generic (re-run) path runs the paper's while_loop up to max_iters.
    _, r = jinit.lsuv(model, v, x, tol=0.0, max_iters=5, measure="post", activation=jnp.tanh)
    assert np.all(np.asarray(r.iterations) == 5) and not np.any(np.asarray(r.converged))


def test_case17_ten_layer_mlp_compiles_and_runs_fast():
    x = normal(1, (256, 64))
    model = MLP(widths=(128,) * 10)
    v = model.init(jax.random.key(3), x)
    t = time.perf_counter()
    v2, report = jinit.lsuv(model, v, x)
    jax.block_until_ready(v2)
    assert time.perf_counter() - t < 30.0
    assert len(report) == 10 and bool(jnp.all(report.converged))


class Case18(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(512, kernel_init=ORTH)(x))
        x = nn.relu(nn.Dense(512, kernel_init=ORTH)(x))
        return nn.Dense(10, kernel_init=ORTH)(x)


def test_case18_measures_pre_activation_by_default():
    x = normal(1, (2048, 256))
    model = Case18()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    assert report.measured == "pre"
    outs = dense_outputs(model, v2, x)
    for path in ("Dense_0", "Dense_1"):
        assert abs(float(jnp.var(outs[path])) - 1.0) < 0.1
        assert abs(float(jnp.var(jax.nn.relu(outs[path]))) - 0.341) < 0.05
    # measure="post": the reverse holds, and the report says which tensor was measured.
    v3, report3 = jinit.lsuv(model, v, x, measure="post", activation=jax.nn.relu)
    assert report3.measured == "post"
    outs = dense_outputs(model, v3, x)
    for path in ("Dense_0", "Dense_1"):
        assert abs(float(jnp.var(jax.nn.relu(outs[path]))) - 1.0) < 0.1
        assert float(jnp.var(outs[path])) > 2.0


class Case19(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64, kernel_init=ORTH, bias_init=nn.initializers.constant(-10.0))(x))
        x = nn.relu(nn.Dense(64, kernel_init=ORTH)(x))
        return nn.Dense(10, kernel_init=ORTH)(x)


def test_case19_zero_variance_raises_or_skips():
    x = normal(1, (256, 32))
    model = Case19()
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"Dense_1.*variance 0\.0"):
        jinit.lsuv(model, v, x)
    v2, report = jinit.lsuv(model, v, x, on_zero_variance="skip")
    # Precondition: layer 0's output is ~N(-10, 1), so the ReLU after it is dead on the batch.
    h0 = dense_outputs(model, v2, x)["Dense_0"]
    assert float(jnp.mean(jax.nn.relu(h0) == 0)) == 1.0
    reasons = report.reasons()
    assert report.paths == ("Dense_0", "Dense_1", "Dense_2")
    assert list(np.asarray(report.skipped)) == [False, True, True]
    assert "zero output variance" in reasons[1]
    p, p2 = v["params"], v2["params"]
    for name in ("Dense_1", "Dense_2"):
        assert jnp.array_equal(p[name]["kernel"], p2[name]["kernel"])
    for name in p:
        k, k2 = p[name]["kernel"], p2[name]["kernel"]
        assert bool(jnp.all(jnp.isfinite(k2)))
        assert float(jnp.std(k2)) <= 10 * float(jnp.std(k))


def test_case20_variance_pooled_over_positions():
    x = normal(1, (2, 16, 16, 3))
    model = nn.Conv(32, (3, 3), kernel_init=ORTH)
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    y = model.apply(v2, x)
    assert y.size == 2 * 16 * 16 * 32
    assert abs(float(jnp.var(y)) - 1.0) < 0.1 and bool(report.converged[0])


def test_case20_single_value_raises():
    x = normal(1, (1, 8))
    model = nn.Dense(1)
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"at least 2"):
        jinit.lsuv(model, v, x)


def test_case20_scale_factors_stable_across_batches():
    model = MLP(widths=(256,) * 4)
    data = normal(7, (2048, 256))
    v = model.init(jax.random.key(0), data[:2])

    def scales(batch):
        return np.asarray(jinit.lsuv(model, v, batch)[1].scale)

    small = scales(data[:16]), scales(data[16:32])
    large = scales(data[:512]), scales(data[512:1024])
    assert np.all(np.abs(small[0] / small[1] - 1) < 0.15)
    assert np.all(np.abs(large[0] / large[1] - 1) < 0.03)


def test_case9_bf16_kernels_stay_bf16_and_f64_stays_f64():
    x = normal(1, (256, 32))
    model = MLP(widths=(64, 64))
    v = model.init(jax.random.key(0), x)
    vb = jax.tree.map(lambda a: a.astype(jnp.bfloat16), v)
    v2, report = jinit.lsuv(model, vb, x.astype(jnp.bfloat16))
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(v2))
    assert report.var_after.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(report.var_after) - 1.0) < 0.1)
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        v64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), v)
        v3, _ = jinit.lsuv(model, v64, x64)
        assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(v3))


def test_case15_vmap_over_keys_equals_separate_runs():
    x = normal(1, (128, 32))
    model = MLP(widths=(128, 128))

    def init_one(key):
        return jinit.lsuv(model, model.init(key, x), x)

    keys = jax.random.split(jax.random.key(0), 3)
    stacked, rep = jax.vmap(init_one)(keys)  # a seed sweep is one program
    for i in range(3):
        alone = init_one(keys[i])[0]
        for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    k = [np.asarray(stacked["params"]["Dense_1"]["kernel"][i]).ravel() for i in range(3)]
    for i in range(3):
        for j in range(i):
            assert abs(np.corrcoef(k[i], k[j])[0, 1]) < 0.05
    # Under the outer vmap nothing can raise; the stacked report says everything.
    assert rep.var_after.shape == (3, 2) and rep.check() is rep


# --------------------------------------------------------------------------------------------
# Algorithm and adapters
# --------------------------------------------------------------------------------------------


class Reordered(nn.Module):
    """Layers defined a, b, c but executed c, a, b."""

    def setup(self):
        self.a = nn.Dense(32, kernel_init=ORTH)
        self.b = nn.Dense(32, kernel_init=ORTH)
        self.c = nn.Dense(32, kernel_init=ORTH)

    def __call__(self, x):
        return self.b(jnp.tanh(self.a(jnp.tanh(self.c(x)))))


def test_report_follows_execution_order_not_definition_order():
    x = normal(1, (256, 16))
    model = Reordered()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    assert report.paths == ("c", "a", "b")
    assert tuple(v2["params"]) == tuple(v["params"])  # same structure back
    # Each layer was measured on the already-corrected prefix: all unit variance afterwards.
    assert bool(jnp.all(report.converged))
    h = jnp.tanh(nn.Dense(32).apply({"params": v2["params"]["c"]}, x))
    assert abs(float(jnp.var(nn.Dense(32).apply({"params": v2["params"]["a"]}, h))) - 1) < 1e-3


class NnxMLP(nnx.Module):
    def __init__(self, din, widths, rngs):
        self.layers = nnx.List(
            [nnx.Linear(i, o, rngs=rngs) for i, o in zip((din,) + widths[:-1], widths, strict=True)]
        )

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


def test_linen_and_nnx_give_the_same_result():
    x = normal(1, (256, 32))
    widths = (64, 64, 10)
    model = MLP(widths=widths)
    v = model.init(jax.random.key(0), x)
    m = NnxMLP(32, widths, nnx.Rngs(0))
    for i, layer in enumerate(m.layers):
        layer.kernel.set_value(v["params"][f"Dense_{i}"]["kernel"])
        layer.bias.set_value(v["params"][f"Dense_{i}"]["bias"])
    graphdef, state = nnx.split(m)
    v2, r_linen = jinit.lsuv(model, v, x)
    state2, r_nnx = jinit.lsuv(graphdef, state, x)
    assert r_nnx.paths == ("layers/0", "layers/1", "layers/2")
    m2 = nnx.merge(graphdef, state2)
    for i, layer in enumerate(m2.layers):
        np.testing.assert_allclose(
            layer.kernel.get_value(), v2["params"][f"Dense_{i}"]["kernel"], rtol=1e-6
        )
    np.testing.assert_allclose(r_linen.var_after, r_nnx.var_after, rtol=1e-6)
    # An nnx.Module may be passed directly; the input model is not modified.
    state3, _ = jinit.lsuv(m, None, x)
    assert leaves_equal(state3, state2)
    assert leaves_equal(nnx.state(m), state)


class NnxCNN(nnx.Module):
    def __init__(self, rngs):
        self.c1 = nnx.Conv(3, 16, (3, 3), kernel_init=ORTH, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.c2 = nnx.Conv(16, 16, (3, 3), feature_group_count=4, kernel_init=ORTH, rngs=rngs)
        self.mix = nnx.Einsum("bhwc,cd->bhwd", (16, 8), rngs=rngs)
        self.rnn = nnx.RNN(nnx.GRUCell(8, 12, rngs=rngs), rngs=rngs)
        self.out = nnx.Linear(12, 10, kernel_init=ORTH, rngs=rngs)

    def __call__(self, x):
        x = self.drop(jax.nn.relu(self.bn(self.c1(x))))
        x = self.mix(jax.nn.relu(self.c2(x)))  # (B, H, W, 8): rows as sequences
        return self.out(self.rnn(x.reshape(-1, x.shape[2], 8))[:, -1])


def test_nnx_cnn_batchnorm_einsum_rnn_only_kernels_change():
    x = normal(1, (8, 8, 8, 3))
    m = NnxCNN(nnx.Rngs(0))
    before = nnx.to_flat_state(nnx.state(m))
    state, report = jinit.lsuv(m, None, x)  # train-mode BatchNorm, dropout on in the model
    assert report.paths == (
        "c1", "c2", "mix", "rnn/cell/dense_i/r", "rnn/cell/dense_i/z", "rnn/cell/dense_i/n", "out"
    )  # fmt: skip
    assert bool(jnp.all(report.converged))
    changed = {
        path
        for (path, a), (_, b) in zip(before, nnx.to_flat_state(state), strict=True)
        if not jnp.issubdtype(a.get_value().dtype, jax.dtypes.prng_key)
        and not jnp.array_equal(a.get_value(), b.get_value())
    }
    kernels = {("c1", "kernel"), ("c2", "kernel"), ("mix", "kernel"), ("out", "kernel")}
    assert changed <= kernels | {("rnn", "cell", "dense_i", "kernel")}
    assert kernels <= changed  # BatchNorm statistics, RNG counters, biases: bitwise unchanged


def test_compiles_once_per_model_and_shapes():
    x = normal(1, (64, 16))
    model = MLP(widths=(32, 32))
    jinit.lsuv(model, model.init(jax.random.key(0), x), x, jit=True)
    n = lsuv_mod._jitted._cache_size()
    for seed in (1, 2):
        _, r = jinit.lsuv(model, model.init(jax.random.key(seed), x), normal(seed, (64, 16)))
        assert r.execution == "jit"  # automatic: the compiled program is reused
    jinit.lsuv(MLP(widths=(32, 32)), model.init(jax.random.key(3), x), x)  # equal module
    assert lsuv_mod._jitted._cache_size() == n
    _, r = jinit.lsuv(model, model.init(jax.random.key(0), x), normal(1, (32, 16)))
    assert r.execution == "eager"  # automatic: a new shape is not compiled for one call
    jinit.lsuv(model, model.init(jax.random.key(0), x), normal(1, (32, 16)), jit=True)
    assert lsuv_mod._jitted._cache_size() == n + 1


def test_bitwise_deterministic():
    x = normal(1, (128, 16))
    model = MLP(widths=(32, 32, 32), act="tanh")
    v = model.init(jax.random.key(0), x)
    a, ra = jinit.lsuv(model, v, x, center=True)
    b, rb = jinit.lsuv(model, v, x, center=True)
    assert leaves_equal(a, b) and leaves_equal(ra, rb)


def dense_fn(p, x):
    return x @ p["kernel"] + p["bias"][None, :]


def plain_apply(params, x):
    h = jnp.tanh(jinit.lsuv_layer("first", dense_fn, params["l0"], x, linear=True))
    h = jnp.tanh(jinit.lsuv_layer("second", dense_fn, params["l1"], h))  # re-run path
    return jinit.lsuv_layer("first", dense_fn, params["l0"], h, linear=True)  # shared


def test_plain_apply_function_with_named_layers():
    x = normal(1, (256, 32))
    params = {
        "l0": {"kernel": ORTH(jax.random.key(0), (32, 32)), "bias": jnp.zeros(32)},
        "l1": {"kernel": ORTH(jax.random.key(1), (32, 32)), "bias": jnp.full((32,), 0.1)},
    }
    p2, report = jinit.lsuv(plain_apply, params, x)
    assert report.paths == ("first", "second")
    assert bool(jnp.all(report.converged))
    assert jnp.array_equal(p2["l1"]["bias"], params["l1"]["bias"])
    h = jnp.tanh(dense_fn(p2["l0"], x))
    assert abs(float(jnp.var(dense_fn(p2["l1"], h))) - 1) < 0.1
    assert jinit.lsuv_layer("first", dense_fn, params["l0"], x).shape == (256, 32)  # outside


CELLS = ("LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell")


class Seq(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(50, 16)(tokens)
        for cell in CELLS:
            x = nn.RNN(getattr(nn, cell)(24, kernel_init=ORTH))(x)
        return nn.Dense(2, kernel_init=ORTH)(x[:, -1])


def test_recurrent_input_kernels_per_gate_recurrent_kernels_kept():
    tokens = jax.random.randint(jax.random.key(2), (16, 12), 0, 50)
    model = Seq()
    v = model.init(jax.random.key(0), tokens)
    v2, report = jinit.lsuv(model, v, tokens)
    expected = ["Embed_0"]
    for cell in CELLS:
        cname = f"{cell}_0"
        gates = [
            g for g in ("ii", "if", "ig", "io", "ir", "iz", "in", "i") if g in v["params"][cname]
        ]
        expected += [f"{cname}/{g}" for g in gates]
        for g, p in v["params"][cname].items():
            same = leaves_equal(p, v2["params"][cname][g])
            assert same == g.startswith("h"), (cname, g)  # recurrent kernels/biases untouched
    assert report.paths == tuple(expected + ["Dense_0"])  # execution order, gates per cell
    assert bool(jnp.all(report.converged))
    # The first cell's gates: unit variance on the embedded sequence, pooled over batch and time.
    emb = nn.Embed(50, 16).apply({"params": v2["params"]["Embed_0"]}, tokens)
    for g in ("ii", "if", "ig", "io"):
        assert abs(float(jnp.var(emb @ v2["params"]["LSTMCell_0"][g]["kernel"])) - 1) < 0.1, g


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(16, (3, 3), kernel_init=ORTH)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.5, deterministic=not train)(nn.relu(x))
        x = nn.Conv(16, (3, 3), feature_group_count=4, kernel_init=ORTH)(x)
        return nn.ConvTranspose(8, (3, 3), kernel_init=ORTH)(x)


def test_batchnorm_stats_kept_and_dropout_off():
    x = normal(1, (8, 8, 8, 3))
    model = BNNet()
    v = model.init(jax.random.key(0), x, train=False)
    for train in (False, True):  # eval: running statistics; train: batch statistics
        v2, report = jinit.lsuv(model, v, x, apply_kwargs={"train": train})
        assert report.paths == ("Conv_0", "Conv_1", "ConvTranspose_0")
        assert leaves_equal(v["batch_stats"], v2["batch_stats"])
        assert bool(jnp.all(report.converged))
    # Dropout was the identity: the pass is deterministic in train mode, and needs no rng.
    v3, _ = jinit.lsuv(model, v, x, apply_kwargs={"train": True})
    assert leaves_equal(v2, v3)


class WithLog(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, kernel_init=ORTH)(x)
        x = jnp.log(x)  # NaN for negative inputs
        return nn.Dense(4, kernel_init=ORTH)(x)


def test_nonfinite_values_are_located():
    x = normal(1, (64, 8))
    model = MLP(widths=(16, 4))
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"batch contains 1 non-finite.*\(3, 5\)"):
        jinit.lsuv(model, v, x.at[3, 5].set(jnp.nan))
    m = WithLog()
    with pytest.raises(ValueError, match=r"first appear in the input of layer 'Dense_1'"):
        jinit.lsuv(m, m.init(jax.random.key(0), x), x)
    bad = jax.tree.map(lambda a: a, v)
    bad["params"]["Dense_1"]["kernel"] = bad["params"]["Dense_1"]["kernel"].at[0, 0].set(jnp.inf)
    with pytest.raises(ValueError, match=r"output of layer 'Dense_1'"):
        jinit.lsuv(model, bad, x)


def test_include_exclude_and_orthogonal_key():
    x = normal(1, (128, 16))
    model = MLP(widths=(32, 32, 32))
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x, exclude=r"Dense_1$")
    assert report.paths == ("Dense_0", "Dense_2")
    assert jnp.array_equal(v["params"]["Dense_1"]["kernel"], v2["params"]["Dense_1"]["kernel"])
    _, report = jinit.lsuv(model, v, x, include="Dense_[02]")
    assert report.paths == ("Dense_0", "Dense_2")
    # Patterns that select no layer would silently change nothing: an error naming them.
    with pytest.raises(ValueError, match=r"include=\['Conv'\].*selected none"):
        jinit.lsuv(model, v, x, include="Conv")
    # orthogonal_key: the pass draws orthonormal kernels first (per-path keys), then LSUV.
    noisy = jax.tree.map(lambda a: a * 0 + 0.3, v)
    v3, _ = jinit.lsuv(model, noisy, x, orthogonal_key=jax.random.key(5))
    k = v3["params"]["Dense_1"]["kernel"]
    gram = k.T @ k
    np.testing.assert_allclose(gram / gram[0, 0], jnp.eye(32), atol=1e-4)


def test_center_shifts_bias_to_zero_mean():
    x = normal(1, (256, 16)) + 3.0
    model = MLP(widths=(32, 32))
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x, center=True)
    assert np.all(np.abs(np.asarray(report.mean_after)) < 1e-5)
    assert np.all(np.abs(np.asarray(report.var_after) - 1) < 1e-4)
    for y in dense_outputs(model, v2, x).values():
        assert abs(float(jnp.mean(y))) < 1e-4


class Gen(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Einsum((16, 24), "bi,ij->bj")(x)
        return nn.DenseGeneral((4, 6), kernel_init=ORTH)(jnp.tanh(x))


def test_einsum_generic_loop_and_dense_general():
    x = normal(1, (128, 16))
    model = Gen()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    assert report.paths == ("Einsum_0", "DenseGeneral_0")
    assert bool(jnp.all(report.converged))
    y = model.apply(v2, x)
    assert y.shape == (128, 4, 6) and abs(float(jnp.var(y)) - 1) < 0.1


class Block(nn.Module):
    @nn.compact
    def __call__(self, c, _):
        return jnp.tanh(nn.Dense(8, kernel_init=ORTH)(c)), None


class Scanned(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8, kernel_init=ORTH)(x)
        scan = nn.scan(Block, variable_broadcast="params", split_rngs={"params": False}, length=3)
        x, _ = scan(name="blocks")(x, None)
        return x


def test_layer_inside_lifted_transform_is_reported_not_dropped():
    x = normal(1, (32, 8))
    model = Scanned()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.lsuv(model, v, x)
    assert report.paths == ("Dense_0", "blocks/Dense_0")
    assert "lifted transform" in report.reasons()[1]
    assert bool(report.skipped[1])
    inner = v["params"]["blocks"]["Dense_0"]["kernel"]
    assert jnp.array_equal(inner, v2["params"]["blocks"]["Dense_0"]["kernel"])


class _WDense(nn.Module):  # a custom layer as users write it: its weight is not "kernel"
    @nn.compact
    def __call__(self, x):
        return x @ self.param("W", nn.initializers.normal(1.0), (x.shape[-1], 16))


class _WNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(nn.relu(_WDense()(nn.relu(nn.Dense(16)(x)))))


class _NNXW(nnx.Module):
    def __init__(self, rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (16, 16)))

    def __call__(self, x):
        return x @ self.w[...]


class _NNXWNet(nnx.Module):
    def __init__(self, rngs):
        self.a, self.b = nnx.Linear(8, 16, rngs=rngs), _NNXW(rngs)
        self.c = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.c(nnx.relu(self.b(nnx.relu(self.a(x)))))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_custom_weight_not_named_kernel_is_reported_skipped_with_a_warning(api, jit):
    x = normal(1, (64, 8))
    if api == "linen":
        model, params, owner, name = _WNet(), _WNet().init(jax.random.key(0), x), "_WDense_0", "W"
        weight = lambda p: p["params"]["_WDense_0"]["W"]
    else:
        model, params, owner, name = _NNXWNet(nnx.Rngs(0)), None, "b", "w"
        weight = lambda p: p["b"]["w"][...]
    before = weight(params if params is not None else nnx.state(model, nnx.Param))
    with pytest.warns(jinit.InitWarning, match=rf"{owner} \[skipped: weight \['{name}'\]"):
        new, report = jinit.lsuv(model, params, x, jit=jit)
    assert report.paths[-1] == owner and bool(report.skipped[-1])
    assert not bool(report.converged[-1]) and report.statuses[-1] == "skipped"
    assert "not named 'kernel'" in report.reasons()[-1]
    assert jnp.array_equal(weight(new), before)  # left unchanged
    assert bool(report.converged[:-1].all())  # the standard layers around it are still solved


def test_under_outer_jit_errors_are_left_to_report_check():
    x = normal(1, (256, 32))
    model = Case19()
    v = model.init(jax.random.key(0), x)
    v2, report = jax.jit(lambda v, x: jinit.lsuv(model, v, x))(v, x)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(v2))
    with pytest.raises(ValueError, match="Dense_1"):
        report.check()
    assert "Dense_1" in report.summary() and "lsuv/Dense_1/var_after" in report.to_dict()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 0.0}, "target"),
        ({"tol": -1.0}, "tol"),
        ({"max_iters": -1}, "max_iters"),
        ({"measure": "after"}, "measure"),
        ({"measure": "post"}, "activation"),
        ({"on_zero_variance": "ignore"}, "on_zero_variance"),
        ({"include": "("}, "regex"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, match):
    x = normal(1, (8, 4))
    model = nn.Dense(4)
    with pytest.raises(ValueError, match=match):
        jinit.lsuv(model, model.init(jax.random.key(0), x), x, **kwargs)


# --------------------------------------------------------------------------------------------
# jit=False: the eager, layer-at-a-time pass (same algorithm and results, per-layer kernels)
# --------------------------------------------------------------------------------------------


def _assert_same_pass(a, b, rtol=2e-5, atol=1e-6):
    (pa, ra), (pb, rb) = a, b
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol, atol)
    assert ra.paths == rb.paths and ra.notes == rb.notes
    for f in ("iterations", "status", "converged", "units_skipped"):
        assert np.array_equal(np.asarray(getattr(ra, f)), np.asarray(getattr(rb, f))), f
    for f in ("scale", "var_before", "var_after", "mean_after"):
        np.testing.assert_allclose(getattr(ra, f), getattr(rb, f), rtol, atol, err_msg=f)


_EAGER_CASES = (
    "mlp mlp-center mlp-post bn-train rnn nnx-cnn plain within-layer orthogonal-key".split()
)


@functools.cache  # built once per worker, when a test first needs it (not at collection)
def _eager_cases():
    x = normal(1, (128, 16))
    mlp = MLP(widths=(32, 32, 8), act="tanh")
    v = mlp.init(jax.random.key(0), x)
    v = jax.tree.map(lambda a: a + 0.05 if a.ndim == 1 else a, v)  # non-zero biases
    img = normal(2, (8, 8, 8, 3))
    bn = BNNet()
    tokens = jax.random.randint(jax.random.key(2), (16, 12), 0, 50)
    seq = Seq()
    params = {
        "l0": {"kernel": ORTH(jax.random.key(0), (32, 32)), "bias": jnp.zeros(32)},
        "l1": {"kernel": ORTH(jax.random.key(1), (32, 32)), "bias": jnp.full((32,), 0.1)},
    }
    return {
        "mlp": (jinit.lsuv, mlp, v, x, {}),
        "mlp-center": (jinit.lsuv, mlp, v, x, {"center": True}),
        "mlp-post": (jinit.lsuv, mlp, v, x, {"measure": "post", "activation": jnp.tanh}),
        "bn-train": (jinit.lsuv, bn, bn.init(jax.random.key(0), img, train=False), img,
                     {"apply_kwargs": {"train": True}}),
        "rnn": (jinit.lsuv, seq, seq.init(jax.random.key(0), tokens), tokens, {}),
        "nnx-cnn": (jinit.lsuv, NnxCNN(nnx.Rngs(0)), None, img, {}),
        "plain": (jinit.lsuv, plain_apply, params, normal(3, (256, 32)), {}),
        "within-layer": (jinit.within_layer_init, mlp, v, x, {}),
        "orthogonal-key": (jinit.lsuv, mlp, v, x, {"orthogonal_key": jax.random.key(5)}),
    }  # fmt: skip


@pytest.mark.parametrize("case", _EAGER_CASES)
def test_eager_pass_equals_jitted_pass(case):
    assert list(_eager_cases()) == _EAGER_CASES
    fn, model, params, batch, kw = _eager_cases()[case]
    jitted = fn(model, params, batch, jit=True, **kw)
    _assert_same_pass(jitted, fn(model, params, batch, jit=False, **kw))


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("center", [False, True])
def test_report_scale_is_exactly_the_applied_factor(jit, center):
    # The report recomputes each closed-form layer's scale from the layer's record (it is not
    # stacked from the pass, see lsuv_engine._affine_pre_scale): it must be the applied factor.
    x = normal(1, (256, 16)) + 0.5
    model = MLP(widths=(32, 32, 32))
    v = model.init(jax.random.key(0), x)
    v = jax.tree.map(lambda a: a + 0.1 * normal(7, a.shape) if a.ndim == 1 else a, v)
    v2, report = jinit.lsuv(model, v, x, center=center, jit=jit)
    for i, s in enumerate(np.asarray(report.scale)):
        k, k2 = v["params"][f"Dense_{i}"]["kernel"], v2["params"][f"Dense_{i}"]["kernel"]
        assert s != 1.0
        assert jnp.array_equal(k2, k * jnp.float32(s)), i
    assert bool(jnp.all(report.converged))


def test_eager_pass_compiles_nothing_per_layer():
    x = normal(1, (64, 16))
    deep = MLP(widths=(16,) * 12)
    jinit.lsuv(deep, deep.init(jax.random.key(0), x), x, jit=False)  # warm
    n = solve.unit_moments._cache_size()
    deeper = MLP(widths=(16,) * 20)
    v = deeper.init(jax.random.key(1), x)
    compiled = []

    def listen(event, *_, **__):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        _, report = jinit.lsuv(deeper, v, x, jit=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []  # 20 layers, no program compiled (not even the statistics)
    assert solve.unit_moments._cache_size() == n
    assert len(report.paths) == 20 and bool(jnp.all(report.converged))
    assert report.execution == "eager"


def test_eager_pass_raises_like_the_jitted_pass():
    x = normal(1, (256, 32))
    model = Case19()
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"Dense_1.*variance 0\.0"):
        jinit.lsuv(model, v, x, jit=False)
    _, report = jinit.lsuv(model, v, x, on_zero_variance="skip", jit=False)
    assert list(np.asarray(report.skipped)) == [False, True, True]
    with pytest.raises(TypeError, match="jit must be True, False or None"):
        jinit.lsuv(model, v, x, jit="yes")


def test_orthogonal_key_must_be_a_prng_key_and_messages_name_the_method():
    x = normal(1, (64, 16))
    model = MLP(widths=(32, 32))
    v = model.init(jax.random.key(0), x)
    for jit in (True, False):
        with pytest.raises(ValueError, match="orthogonal_key must be a single JAX PRNG key"):
            jinit.lsuv(model, v, x, orthogonal_key=3, jit=jit)
    # Errors found in the report are prefixed with the method, like the argument errors.
    bad = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan) if a.ndim == 2 else a, v)
    with pytest.raises(ValueError, match=r"^lsuv: non-finite values .* 'Dense_0'"):
        jinit.lsuv(model, bad, x)
    _, report = jax.jit(lambda p: jinit.lsuv(model, p, x))(bad)  # no raise under jit
    with pytest.raises(ValueError, match=r"^lsuv: non-finite"):
        report.check()
    _, stacked = jax.vmap(lambda k: jinit.lsuv(model, model.init(k, x), x))(
        jax.random.split(jax.random.key(1), 3)
    )
    assert "[member 0 of 3 stacked]" in stacked.summary()


def test_model_class_and_bad_pattern_types_are_named():
    x = normal(1, (64, 16))
    model = MLP(widths=(32, 32))
    v = model.init(jax.random.key(0), x)
    with pytest.raises(TypeError, match="model must be a module instance, got the class MLP"):
        jinit.lsuv(MLP, v, x)
    with pytest.raises(TypeError, match="include must be a regex string or a sequence"):
        jinit.lsuv(model, v, x, include=3)


def test_sequential_built_from_a_list_runs_eagerly_and_jit_true_says_why():
    """nn.Sequential([...]) is unhashable: the automatic mode runs it eagerly (and under an
    outer jit), and jit=True raises a TypeError that names the problem."""
    import flax.linen as nn

    m = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(4)])
    x = jax.random.normal(jax.random.key(1), (64, 6))
    v = m.init(jax.random.key(0), x)
    p, r = jinit.lsuv(m, v, x)
    assert r.execution == "eager" and r.statuses == ("converged", "converged")
    p2, _ = jax.jit(lambda v, x: jinit.lsuv(m, v, x))(v, x)
    np.testing.assert_allclose(
        p["params"]["layers_2"]["kernel"], p2["params"]["layers_2"]["kernel"], rtol=1e-5
    )
    with pytest.raises(TypeError, match="jit=True needs a hashable model"):
        jinit.lsuv(m, v, x, jit=True)


def test_eager_pass_on_large_outputs_equals_the_jitted_pass():
    # Outputs above solve.HOST_MAX values take the compiled statistics in an eager pass.
    x = normal(1, (4200, 8))
    model = MLP(widths=(256, 4), act="relu")
    v = model.init(jax.random.key(0), x[:1])
    assert 4200 * 256 > solve.HOST_MAX > 4200 * 4
    eager = jinit.lsuv(model, v, x, jit=False)
    _assert_same_pass(jinit.lsuv(model, v, x, jit=True), eager)
    assert eager[1].execution == "eager" and bool(jnp.all(eager[1].converged))


class _NnxBN(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(12, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.b = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.bn(self.a(x))))


def test_nnx_module_takes_a_param_only_state():
    # What an optimizer holds: nnx.state(model, nnx.Param); BatchNorm's statistics and the
    # module's Rngs come from the module itself (a new-user report: this raised flax's
    # "Incorrect number of leaves").
    model = _NnxBN(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (64, 12))
    params = nnx.state(model, nnx.Param)
    new, report = jinit.lsuv(model, params, x, tol=0.01)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(params)
    copy = nnx.merge(*nnx.split(model))
    nnx.update(copy, new)
    np.testing.assert_allclose(float(copy.a(x).var()), 1.0, atol=0.01)  # measured, not reported
    np.testing.assert_allclose(np.asarray(report.var_after), 1.0, atol=0.01)
    with pytest.raises(ValueError, match="nnx.GraphDef needs all"):
        jinit.lsuv(nnx.graphdef(model), params, x)


class _SN(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.SpectralNorm(nn.Dense(32, name="hid"))(x, update_stats=False)
        self.sow("intermediates", "h", h)
        return nn.Dense(4, name="out")(nn.relu(h))


def test_spectral_norm_layer_is_skipped_and_the_next_layer_measured_on_the_real_model():
    # SpectralNorm divides the kernel by its norm on every call: a rescaled kernel changes
    # nothing, so the layer is skipped (warned), and the next layer's variance is the real one.
    x = normal(0, (64, 16))
    m = _SN()
    v = m.init(jax.random.key(1), x)
    with pytest.warns(jinit.InitWarning, match=r"SpectralNorm_0 \[skipped: SpectralNorm"):
        v2, rep = jinit.lsuv(m, v, x)
    assert rep.statuses == ("skipped", "converged")
    out, st = m.apply(v2, x, mutable=["intermediates"])
    np.testing.assert_allclose(float(out.var()), float(rep.var_after[1]), rtol=1e-5)
    assert abs(float(out.var()) - 1.0) < 0.1


def test_nnx_spectral_norm_layer_is_skipped():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hid = nnx.SpectralNorm(nnx.Linear(16, 32, rngs=rngs), rngs=rngs)
            self.out = nnx.Linear(32, 4, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hid(x, update_stats=False)))

    x, m = normal(0, (64, 16)), Net(nnx.Rngs(0))
    with pytest.warns(jinit.InitWarning, match=r"hid \[skipped: SpectralNorm"):
        st, rep = jinit.lsuv(m, None, x)
    nnx.update(m, st)
    assert rep.statuses == ("skipped", "converged")
    np.testing.assert_allclose(float(m(x).var()), float(rep.var_after[1]), rtol=1e-5)


def test_stacked_report_warns_for_every_member():
    m = nn.Sequential((nn.Dense(32), nn.relu, nn.Dense(4)))
    x = normal(0, (64, 16))

    def one(k, s):  # s: std of the readout bias; 5.0 keeps member 1's readout from converging
        v = m.init(k, x)
        b = v["params"]["layers_2"]["bias"] + s * jax.random.normal(k, (4,))
        p = {**v["params"], "layers_2": {**v["params"]["layers_2"], "bias": b}}
        return jinit.lsuv(m, {"params": p}, x)

    keys = jax.random.split(jax.random.key(0), 2)
    _, rep = jax.vmap(one)(keys, jnp.array([0.0, 5.0]))
    assert np.asarray(rep.status).tolist() == [[0, 0], [0, 1]]
    with pytest.warns(
        jinit.InitWarning, match=r"x 2 members.*layers_2 \[member 1: not_converged\]"
    ):
        rep.warn()
