"""Review of variance_scaling's axes: an axis named in both in_axis and out_axis counts in both,
as in jax.nn.initializers (Flax's embedding init and the TF depthwise layout rely on it), so it
is not an error; an axis repeated within one argument is, when the initializer is built."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

KEY = jax.random.key(0)


def test_overlapping_in_and_out_axis_count_twice_as_in_jax():
    # (64, 32), in_axis=-1, out_axis=-1 (default): r = 64*32/32/32 = 2, fan_in = 32*2 = 64.
    assert jinit.compute_fans((64, 32), -1, -1) == (64.0, 64.0)
    ours = jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=-1)(KEY, (64, 32))
    ref = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=-1)(KEY, (64, 32))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-6, atol=1e-7)
    # A transposed (out, in) kernel needs both axes: fan_in = 32, variance 1/32.
    w = jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=-1, out_axis=0)(KEY, (512, 32))
    assert float(jnp.var(w)) == pytest.approx(1 / 32, rel=0.05)


def test_flax_embedding_rule_mixed_sign_overlap():
    # Flax: out_axis=0 with in_axis=-2 name the same axis of (vocab, features): fan_in = features.
    init = jinit.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
    w = init(KEY, (1000, 64))
    assert float(jnp.var(w)) == pytest.approx(1 / 64, rel=0.05)


@pytest.mark.parametrize("arg", ["in_axis", "out_axis", "batch_axis"])
def test_repeated_axis_within_one_argument_fails_at_build_time(arg):
    with pytest.raises(ValueError, match=rf"{arg} lists the same axis twice: \(0, 0\)"):
        jinit.variance_scaling(1.0, "fan_in", "normal", **{arg: (0, 0)})


def test_batch_axis_overlap_fails_at_call_time_naming_axes():
    init = jinit.variance_scaling(1.0, "fan_in", "normal", batch_axis=-1)
    with pytest.raises(ValueError, match=r"batch_axis=-1 overlaps in_axis=-2 or out_axis=-1"):
        init(KEY, (4, 8))
