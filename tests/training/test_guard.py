"""fit's non-finite guard, stepping choice, compile-once, loss forms, BatchNorm, progress, Ctrl-C."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinit

N, D, B = 48, 4, 8  # 6 steps per epoch
STEPS = N // B
MODEL = nn.Dense(1)


def loss_p(params, batch):  # params form
    out = MODEL.apply(params, batch["x"])[:, 0]
    return jnp.mean((out - batch["y"]) ** 2), {}


def loss_o(outputs, batch):  # outputs form, the layer_statistics convention
    return jnp.mean((outputs[:, 0] - batch["y"]) ** 2)


@pytest.fixture(scope="module")
def data():
    x = jax.random.normal(jax.random.key(1), (N, D))
    return {"x": x, "y": x @ jnp.arange(1.0, D + 1)}


def fresh(opt):
    return jinit.init_state(MODEL.init(jax.random.key(0), jnp.zeros((1, D))), opt)


@functools.cache
def jitted_step(opt):
    return jax.jit(jinit.make_train_step(loss_p, opt))


def hand_loop(data, opt, epochs, seed=0, skip=()):
    """The loop a user writes: one jitted step over batches gathered in the same order."""
    step = jitted_step(opt)
    state = fresh(opt)
    for e in range(epochs):
        idx = jinit.epoch_indices(jax.random.fold_in(jax.random.key(seed), e), N, B)
        for s in range(STEPS):
            if (e, s) in skip:
                continue
            state, _ = step(state, jax.tree.map(lambda a, i=idx[s]: a[i], data))
    return state


def fit(data, opt, stepping, **kw):
    kw = dict(epochs=2, batch_size=B, steps_per_call=3, progress=False) | kw
    return jinit.fit(
        fresh(opt), loss_fn=loss_p, optimizer=opt, train_data=data, stepping=stepping, **kw
    )


def assert_params_close(a, b, rtol, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("stepping", ["step", "scan", "unroll"])
def test_fit_equals_hand_written_loop(data, stepping):
    """Same keys, same params: the default seed=0 orders epoch e by fold_in(key(0), e).

    Tolerance 1e-6 relative: the gather happens inside the compiled step here and XLA may
    fuse the arithmetic differently from the hand loop's separate gather.
    """
    opt = optax.sgd(0.05)
    state, hist = fit(data, opt, stepping)
    assert_params_close(state.params, hand_loop(data, opt, 2).params, rtol=1e-6, atol=1e-7)
    assert [h.nonfinite_steps for h in hist] == [0, 0]


@pytest.mark.parametrize("stepping", ["step", "scan"])
def test_train_and_evaluate_compile_once(data, stepping):
    opt = optax.sgd(0.05)
    metric = lambda p, b: {"se": (MODEL.apply(p, b["x"])[:, 0] - b["y"]) ** 2}  # noqa: E731
    progs = jinit.compile_programs(loss_p, opt, metric, eval_batch_size=16, stepping=stepping)
    fit(data, opt, stepping, epochs=3, programs=progs, val_data=data, metric_fn=metric)
    assert progs["train"]._cache_size() == 1  # 3 epochs of 6 steps: one compilation
    if stepping == "step":  # the exact test of a suspect step is compiled only on one
        assert progs["check"]._cache_size() == 0
    assert progs["evaluate"]._cache_size() == 1


def test_default_stepping_rule():
    assert jinit.default_stepping("cpu") == "step"
    assert jinit.default_stepping("cpu", num_models=4) == "scan"  # sweeps keep their programs
    assert jinit.default_stepping("gpu") == "scan" and jinit.default_stepping("tpu") == "scan"
    assert jinit.default_stepping("cpu", convolutions=False) == "scan"
    progs = jinit.compile_programs(loss_p, optax.sgd(0.1))
    assert progs.stepping == jinit.default_stepping()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rule differs only on CPU")
def test_fit_steps_from_python_only_where_the_loss_has_a_convolution(monkeypatch):
    import jinit._src.training.fit as fit_module

    chosen = []
    real = fit_module.compile_programs
    monkeypatch.setattr(
        fit_module,
        "compile_programs",
        lambda *a, **k: chosen.append(k["stepping"]) or real(*a, **k),
    )

    class ConvNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.Conv(4, (3, 3))(x).mean((1, 2)))

    xent = lambda o, b: optax.softmax_cross_entropy_with_integer_labels(o, b["y"]).mean()  # noqa: E731
    y = np.zeros(32, np.int32)
    for model, x in (
        (nn.Dense(2), np.ones((32, 5), np.float32)),
        (ConvNet(), np.ones((32, 6, 6, 1), np.float32)),
    ):
        params = model.init(jax.random.key(0), x[:1])["params"]
        jinit.fit(
            jinit.init_state(params, optax.sgd(0.1)),
            loss_fn=xent,
            optimizer=optax.sgd(0.1),
            train_data={"x": x, "y": y},
            epochs=1,
            batch_size=16,
            model=model,
            progress=False,
        )
    assert chosen == ["scan", "step"]


def bad_step(data, seed, epoch=0):
    """(step of epoch `epoch` whose batch holds example 5, data with example 5 = NaN)."""
    idx = np.asarray(jinit.epoch_indices(jax.random.fold_in(jax.random.key(seed), epoch), N, B))
    step = int(np.flatnonzero((idx == 5).any(1))[0])
    return step, {"x": data["x"].at[5].set(jnp.nan), "y": data["y"]}


@pytest.mark.parametrize("stepping", ["step", "scan"])
def test_nan_in_data_raises_with_last_good_state(data, stepping):
    opt = optax.sgd(0.05)
    step, nan_data = bad_step(data, 0)
    saved = []
    with pytest.raises(jinit.NonFiniteError) as info:
        fit(
            nan_data,
            opt,
            stepping,
            checkpoint="/tmp/ckpt",
            on_epoch_end=lambda r, s: saved.append(r.epoch),
        )
    err = info.value
    assert (err.epoch, err.step, err.global_step) == (0, step, step)
    for words in ("in epoch 1 ", f"step index {step}", "no epoch finished", "/tmp/ckpt"):
        assert words in str(err)
    assert saved == []  # on_epoch_end never saw the bad epoch: the checkpoint stays good
    # The bad step's update (and every later one) was dropped: the state after `step` steps.
    good = hand_loop(data, opt, 1, skip={(0, s) for s in range(step, STEPS)})
    assert_params_close(err.state.params, good.params, rtol=1e-6, atol=1e-7)


def test_huge_learning_rate_raises(data):
    with pytest.raises(
        jinit.NonFiniteError, match=r"in epoch \d+ \(counted from 1.*step index \d+"
    ) as info:
        fit(data, optax.sgd(1e6), "step", epochs=3)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(info.value.state.params))


def test_skip_step_drops_and_counts(data):
    opt = optax.sgd(0.05)
    s0, nan_data = bad_step(data, 0, 0)
    s1, _ = bad_step(data, 0, 1)
    with pytest.warns(jinit.InitWarning, match="1 non-finite step"):
        state, hist = fit(nan_data, opt, "step", on_nonfinite="skip_step")
    assert [h.nonfinite_steps for h in hist] == [1, 1]
    assert np.isfinite(hist[0].train["loss"])  # the mean over the finite steps
    good = hand_loop(data, opt, 2, skip={(0, s0), (1, s1)})
    # Only the NaN example's batch is skipped; the others never touch example 5.
    assert_params_close(state.params, good.params, rtol=1e-6, atol=1e-7)


def test_continue_applies_and_counts(data):
    step, nan_data = bad_step(data, 0)
    with pytest.warns(jinit.InitWarning, match="applied"):
        state, hist = fit(nan_data, optax.sgd(0.05), "scan", epochs=1, on_nonfinite="continue")
    assert hist[0].nonfinite_steps == STEPS - step  # NaN params make every later step NaN
    assert np.isnan(np.asarray(state.params["params"]["kernel"])).all()


def test_sweep_guard_names_the_bad_model(data):
    opt = optax.sgd(0.05)
    keys = jinit.seed_keys([0, 1, 2])
    state = jinit.init_models(lambda k: jinit.init_state(MODEL.init(k, data["x"][:1]), opt), keys)
    state = state._replace(params=jax.tree.map(lambda a: a.at[1].multiply(1e30), state.params))
    with pytest.raises(jinit.NonFiniteError, match=r"models \[1\]") as info:
        jinit.fit(
            state, loss_fn=loss_p, optimizer=opt, train_data=data, epochs=1, batch_size=B,
            num_models=3, progress=False,
        )  # fmt: skip
    assert info.value.models == [1]


def test_outputs_form_equals_params_form(data):
    opt = optax.sgd(0.05)
    kw = dict(optimizer=opt, train_data=data, epochs=1, batch_size=B, progress=False)
    a, _ = jinit.fit(fresh(opt), loss_fn=loss_p, **kw)
    b, _ = jinit.fit(fresh(opt), loss_fn=loss_o, model=MODEL, **kw)
    assert_params_close(a.params, b.params, rtol=0, atol=0)
    # The same loss_fn works with the diagnostics.
    assert jinit.layer_statistics(MODEL, b.params, data, loss_o)


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
        return nn.Dense(1)(nn.relu(x))


def test_batchnorm_statistics_train_and_are_used_in_eval(data):
    net, opt = BNNet(), optax.adam(1e-2)
    variables = net.init(jax.random.key(0), data["x"][:2], train=False)
    state = jinit.init_state(variables["params"], opt, {"batch_stats": variables["batch_stats"]})
    stats0 = jax.tree.map(np.asarray, state.model_state)
    metric = lambda out, b: {"se": (out[:, 0] - b["y"]) ** 2}  # noqa: E731
    state, hist = jinit.fit(
        state, loss_fn=loss_o, optimizer=opt, train_data=data, epochs=1, batch_size=B,
        model=net, apply_kwargs={"train": True}, eval_apply_kwargs={"train": False},
        val_data=data, metric_fn=metric, progress=False,
    )  # fmt: skip
    mean = state.model_state["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(mean, stats0["batch_stats"]["BatchNorm_0"]["mean"])  # it trained
    # Eval mode uses the trained running statistics: the reported val metric is theirs.
    out = net.apply({"params": state.params, **state.model_state}, data["x"], train=False)
    np.testing.assert_allclose(hist[0].val["se"], np.mean((out[:, 0] - data["y"]) ** 2), 1e-5)
    stale = net.apply({"params": state.params, **stats0}, data["x"], train=False)
    assert not np.allclose(out, stale)


def test_one_log_line_per_epoch_off_a_terminal(data, capsys):
    fit(data, optax.sgd(0.05), "step", epochs=2, progress=None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2: loss ")
    assert "examples/s" in lines[1] and "total" in lines[1]


def test_ctrl_c_says_where_to_resume(data, capsys):
    def stop(result, state):
        if result.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(data, optax.sgd(0.05), "step", epochs=3, on_epoch_end=stop, checkpoint="runs/x")
    err = capsys.readouterr().err
    assert "interrupted in epoch 2" in err and "end of epoch 1 in runs/x" in err
    assert "run the same command again to resume" in err


def nan_at(data, step, seed=0):
    """data with NaN in the first example of epoch 0's batch `step` (and in no earlier batch)."""
    idx = np.asarray(jinit.epoch_indices(jax.random.fold_in(jax.random.key(seed), 0), N, B))
    return {"x": data["x"].at[int(idx[step, 0])].set(jnp.nan), "y": data["y"]}


@pytest.mark.parametrize("steps_per_call", [1, 2, 4])
def test_step_loop_stops_at_every_position(data, steps_per_call):
    """The Python loop reads each block's flag a block late and rolls back to the copy before
    the bad step: the error names that step and holds the state after the steps before it,
    wherever the bad step falls in the blocks (4 does not divide the epoch's 6 steps)."""
    opt = optax.sgd(0.05)
    progs = jinit.compile_programs(loss_p, opt)
    for step in range(STEPS):
        with pytest.raises(jinit.NonFiniteError) as info:
            fit(nan_at(data, step), opt, "step", steps_per_call=steps_per_call, programs=progs)
        assert (info.value.epoch, info.value.step) == (0, step)
        good = hand_loop(data, opt, 1, skip={(0, s) for s in range(step, STEPS)})
        assert_params_close(info.value.state.params, good.params, rtol=1e-6, atol=1e-7)
    assert progs["train"]._cache_size() == 1
    skip = jinit.compile_programs(loss_p, opt, on_nonfinite="skip_step")
    for step in range(STEPS):
        with pytest.warns(jinit.InitWarning, match="1 non-finite step"):
            state, hist = fit(
                nan_at(data, step), opt, "step", epochs=1, steps_per_call=steps_per_call,
                programs=skip, on_nonfinite="skip_step",
            )  # fmt: skip
        assert hist[0].nonfinite_steps == 1
        good = hand_loop(data, opt, 1, skip={(0, step)})
        assert_params_close(state.params, good.params, rtol=1e-6, atol=1e-7)


def test_suspect_flags_every_nonfinite_norm():
    """The Python loop's one-pass test flags every gradient whose optax.tree.norm is NaN or inf
    (non-finite entries, and finite entries whose squares overflow, in every float dtype)."""
    from jinit._src.training.step import _suspect

    rng = np.random.default_rng(0)
    ok = jnp.float32(1.0)
    both = jax.jit(lambda g: (optax.tree.norm(g), _suspect(ok, g)))
    flagged = 0
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        for scale in np.geomspace(1.0, float(jnp.finfo(dtype).max), 40):
            for bad in (None, np.nan, np.inf, -np.inf):
                g = {"a": rng.standard_normal((7, 5)) * scale, "b": rng.standard_normal(3)}
                if bad is not None:
                    g["a"][2, 3] = bad
                with np.errstate(over="ignore"):  # float16 casts of huge values give inf
                    g = {k: np.asarray(v, dtype) for k, v in g.items()}
                norm, suspect = both(g)
                if not np.isfinite(float(norm)):
                    assert bool(suspect), (dtype, scale, bad)
                    flagged += 1
    assert flagged > 3 * 40 * 3  # every NaN/inf case, and the overflowing scales
    assert not bool(_suspect(ok, {"a": jnp.ones((4, 4))}))
    assert bool(_suspect(jnp.float32(jnp.nan), {"a": jnp.ones((4, 4))}))


def test_false_alarm_is_settled_and_the_step_taken(data):
    """A huge but finite gradient (norm 1e19: finite; its sum of magnitudes is above the
    one-pass bound) is suspect in the Python loop, settled as finite by the exact check and
    trained on: the same parameters as the exactly guarded scan, no non-finite step."""

    def loss_big(params, batch):
        value, metrics = loss_p(params, batch)
        return value + 1e19 * params["params"]["bias"][0], metrics

    opt = optax.sgd(1e-30)
    progs = jinit.compile_programs(loss_big, opt, stepping="step")
    state, hist = jinit.fit(
        fresh(opt), loss_fn=loss_big, optimizer=opt, train_data=data, epochs=1, batch_size=B,
        programs=progs, steps_per_call=2, progress=False,
    )  # fmt: skip
    assert progs["check"]._cache_size() == 1  # the exact check ran
    assert hist[0].nonfinite_steps == 0 and np.isfinite(hist[0].train["loss"])
    ref, _ = jinit.fit(
        fresh(opt), loss_fn=loss_big, optimizer=opt, train_data=data, epochs=1, batch_size=B,
        stepping="scan", steps_per_call=2, progress=False,
    )  # fmt: skip
    assert_params_close(state.params, ref.params, rtol=1e-6, atol=1e-7)


def test_has_convolution_finds_convs_inside_scan_and_remat():
    from jinit._src.training.programs import has_convolution

    class Block(nn.Module):
        @nn.compact
        def __call__(self, c, _):
            return nn.relu(nn.Conv(4, (3, 3))(c)), None

    class Scanned(nn.Module):
        @nn.compact
        def __call__(self, x):
            scan = nn.scan(
                Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2
            )
            return scan()(x, None)[0].mean()

    class Remat(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.remat(nn.Conv)(4, (3, 3))(x).mean()

    x = jnp.ones((2, 6, 6, 4))
    for model in (Scanned(), Remat()):
        variables = model.init(jax.random.key(0), x)
        assert has_convolution(model.apply, variables, x)
    dense = nn.Dense(2)
    assert not has_convolution(dense.apply, dense.init(jax.random.key(0), x), x)


def test_reusing_a_donated_state_is_a_named_error():
    opt = optax.sgd(0.1)
    x = np.ones((32, 5), np.float32)
    model = nn.Dense(2)
    state = jinit.init_state(model.init(jax.random.key(0), x[:1])["params"], opt)
    xent = lambda o, b: optax.softmax_cross_entropy_with_integer_labels(o, b["y"]).mean()  # noqa: E731
    kw = dict(loss_fn=xent, optimizer=opt, epochs=1, batch_size=16, model=model, progress=False)
    data = {"x": x, "y": np.zeros(32, np.int32)}
    jinit.fit(state, train_data=data, **kw)
    with pytest.raises(ValueError, match=r"state.*donated to an earlier fit call"):
        jinit.fit(state, train_data=data, **kw)
