"""Bad inputs of the initializer side: factories, fans, gains, presets, reinit, theory helpers.

Each row makes one bad call; the message must name the argument (and, where useful, the value).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from jinit._src import random_mlp
from tests.bad_inputs import Row

K = jax.random.key(0)
NAN, INF = float("nan"), float("inf")
HUGE = (10**6, 10**6)  # 10^12 elements: JAX would abort the process

# Random factories (name, builder, a valid shape) that get the per-call battery below.
_RANDOM = [
    ("normal", lambda: jinit.normal(0.1), (4, 4)),
    ("uniform", lambda: jinit.uniform(0.1), (4, 4)),
    ("truncated_normal", lambda: jinit.truncated_normal(0.1), (4, 4)),
    ("variance_scaling", lambda: jinit.variance_scaling(1.0, "fan_in", "normal"), (4, 4)),
    ("glorot_uniform", lambda: jinit.glorot_uniform(), (4, 4)),
    ("glorot_normal", lambda: jinit.glorot_normal(), (4, 4)),
    ("lecun_normal", lambda: jinit.lecun_normal(), (4, 4)),
    ("lecun_uniform", lambda: jinit.lecun_uniform(), (4, 4)),
    ("he_normal", lambda: jinit.he_normal(), (4, 4)),
    ("he_uniform", lambda: jinit.he_uniform(), (4, 4)),
    ("orthogonal", lambda: jinit.orthogonal(), (4, 4)),
    ("delta_orthogonal", lambda: jinit.delta_orthogonal(), (3, 3, 4, 4)),
    ("sparse", lambda: jinit.sparse(0.5), (4, 4)),
    ("conv_orthogonal", lambda: jinit.conv_orthogonal(), (3, 3, 4, 4)),
    ("torch_default_kernel", lambda: jinit.torch_default_kernel(), (4, 4)),
    ("keras_variance_scaling", lambda: jinit.keras_variance_scaling(), (4, 4)),
    ("haiku_default_kernel", lambda: jinit.haiku_default_kernel(), (4, 4)),
]


def _battery(name, make, shape):
    return [
        Row(f"init/{name}/key=int", lambda: make()(0, shape), ValueError, ("key", "int")),
        Row(
            f"init/{name}/key=float_array",
            lambda: make()(jnp.zeros(2), shape),
            ValueError,
            ("key", "float32"),
        ),
        Row(
            f"init/{name}/key=batch_of_keys",
            lambda: make()(jax.random.split(K, 3), shape),
            ValueError,
            ("key", "(3,)"),
        ),
        Row(
            f"init/{name}/dtype=int32",
            lambda: make()(K, shape, jnp.int32),
            TypeError,
            ("dtype", "int32"),
        ),
        Row(f"init/{name}/shape=negative", lambda: make()(K, (4, -4)), ValueError, ("shape", "-4")),
        Row(f"init/{name}/shape=huge", lambda: make()(K, HUGE), ValueError, ("shape", "GiB")),
    ]


ROWS: list[Row] = [r for args in _RANDOM for r in _battery(*args)]

ROWS += [
    # Scales, stddevs, bounds: NaN, inf, zero, negative; concrete JAX arrays too.
    Row("init/variance_scaling/scale=jnp(-1)", lambda: jinit.variance_scaling(
        jnp.array(-1.0), "fan_in", "normal"), ValueError, ("scale", "-1.0")),
    Row("init/variance_scaling/scale=0", lambda: jinit.variance_scaling(0.0, "fan_in", "normal"),
        ValueError, ("scale", "> 0")),
    Row("init/variance_scaling/scale=nan", lambda: jinit.variance_scaling(NAN, "fan_in", "normal"),
        ValueError, ("scale", "finite")),
    Row("init/variance_scaling/scale=jnp(inf)", lambda: jinit.variance_scaling(
        jnp.array(INF), "fan_in", "normal"), ValueError, ("scale", "finite")),
    Row("init/variance_scaling/scale=str", lambda: jinit.variance_scaling("2", "fan_in", "normal"),
        TypeError, ("scale",)),
    Row("init/variance_scaling/mode", lambda: jinit.variance_scaling(1.0, "fan_inn", "normal"),
        ValueError, ("mode", "fan_inn", "fan_in")),
    Row("init/variance_scaling/distribution", lambda: jinit.variance_scaling(
        1.0, "fan_in", "gauss"), ValueError, ("distribution", "gauss")),
    Row("init/variance_scaling/groups=0", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", groups=0), ValueError, ("groups", "0")),
    Row("init/variance_scaling/groups=3_not_divisor", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", groups=3)(K, (3, 3, 2, 4)), ValueError, ("groups=3", "4")),
    Row("init/variance_scaling/in_axis=repeated", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", in_axis=(0, 0)), ValueError, ("in_axis",)),
    Row("init/variance_scaling/in_axis=float", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", in_axis=(0, 1.5)), TypeError, ("in_axis",)),
    Row("init/variance_scaling/in_axis=out_of_range", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", in_axis=5)(K, (4, 4)), ValueError, ("in_axis=5", "rank-2")),
    Row("init/variance_scaling/batch_axis=overlap", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", batch_axis=-1)(K, (4, 4)), ValueError, ("batch_axis",)),
    Row("init/variance_scaling/rank1", lambda: jinit.lecun_normal()(K, (5,)), ValueError,
        ("rank 1",)),
    Row("init/variance_scaling/in_axis=str", lambda: jinit.variance_scaling(
        1.0, "fan_in", "normal", in_axis="0"), TypeError, ("in_axis",)),
    Row("init/normal/stddev=-1", lambda: jinit.normal(-1.0), ValueError, ("stddev", "-1.0")),
    Row("init/normal/stddev=0", lambda: jinit.normal(0.0), ValueError, ("stddev", "0.0")),
    Row("init/truncated_normal/stddev=0", lambda: jinit.truncated_normal(0.0), ValueError,
        ("stddev", "> 0")),
    Row("init/normal/stddev=nan", lambda: jinit.normal(NAN), ValueError, ("stddev", "nan")),
    Row("init/normal/stddev=jnp(nan)", lambda: jinit.normal(jnp.array(NAN)), ValueError,
        ("stddev", "finite")),
    Row("init/normal/mean=inf", lambda: jinit.normal(0.1, mean=INF), ValueError, ("mean", "inf")),
    Row("init/uniform/scale=-1", lambda: jinit.uniform(-1.0), ValueError, ("scale", "-1.0")),
    Row("init/uniform/scale=0", lambda: jinit.uniform(0.0), ValueError, ("scale", "> 0")),
    Row("init/uniform/minval>=maxval", lambda: jinit.uniform(minval=1.0, maxval=0.5), ValueError,
        ("minval", "maxval")),
    Row("init/uniform/complex", lambda: jinit.uniform()(K, (2, 2), jnp.complex64), TypeError,
        ("dtype", "complex64")),
    Row("init/uniform_symmetric/bound=0", lambda: jinit.uniform_symmetric(0.0), ValueError,
        ("bound",)),
    Row("init/truncated_normal/lower=-inf", lambda: jinit.truncated_normal(1.0, lower=-INF),
        ValueError, ("lower", "finite")),
    Row("init/truncated_normal/lower>=upper", lambda: jinit.truncated_normal(
        1.0, lower=2.0, upper=-2.0), ValueError, ("lower", "upper")),
    Row("init/truncated_normal/stddev=-0.5", lambda: jinit.truncated_normal(-0.5), ValueError,
        ("stddev", "-0.5")),
    Row("init/he_normal/negative_slope=-1", lambda: jinit.he_normal(negative_slope=-1.0),
        ValueError, ("negative_slope", "-1.0")),
    Row("init/he_normal/negative_slope=nan", lambda: jinit.he_normal(negative_slope=NAN),
        ValueError, ("negative_slope", "nan")),
    Row("init/he_uniform/gain=0", lambda: jinit.he_uniform(gain=0.0), ValueError, ("gain",)),
    Row("init/he_normal/slope_and_gain", lambda: jinit.he_normal(negative_slope=0.2, gain=1.0),
        ValueError, ("negative_slope", "gain")),
    Row("init/orthogonal/scale=0", lambda: jinit.orthogonal(0.0), ValueError, ("scale", "0.0")),
    Row("init/orthogonal/scale=jnp(-2)", lambda: jinit.orthogonal(jnp.array(-2.0)), ValueError,
        ("scale", "-2.0")),
    Row("init/orthogonal/method", lambda: jinit.orthogonal(method="svd"), ValueError,
        ("method", "svd")),
    Row("init/orthogonal/per_gate=0", lambda: jinit.orthogonal(per_gate=0), ValueError,
        ("per_gate", "0")),
    Row("init/orthogonal/per_gate_not_divisor", lambda: jinit.orthogonal(per_gate=3)(K, (4, 8)),
        ValueError, ("per_gate=3",)),
    Row("init/orthogonal/column_axis=float", lambda: jinit.orthogonal(column_axis=1.0),
        TypeError, ("column_axis",)),
    Row("init/orthogonal/rank1", lambda: jinit.orthogonal()(K, (4,)), ValueError, ("rank 1",)),
    Row("init/delta_orthogonal/scale=nan", lambda: jinit.delta_orthogonal(NAN), ValueError,
        ("scale", "nan")),
    Row("init/delta_orthogonal/in>out", lambda: jinit.delta_orthogonal()(K, (3, 3, 8, 4)),
        ValueError, ("in=8",)),
    Row("init/sparse/sparsity=1", lambda: jinit.sparse(1.0), ValueError, ("sparsity", "1.0")),
    Row("init/sparse/sparsity=-0.1", lambda: jinit.sparse(-0.1), ValueError, ("sparsity",)),
    Row("init/sparse/stddev=nan", lambda: jinit.sparse(0.5, stddev=NAN), ValueError,
        ("stddev",)),
    Row("init/dirac/groups=0", lambda: jinit.dirac(groups=0), ValueError, ("groups", "0")),
    Row("init/dirac/layout", lambda: jinit.dirac(layout="NCHW"), ValueError, ("layout", "NCHW")),
    Row("init/identity/gain=inf", lambda: jinit.identity(INF), ValueError, ("gain", "inf")),
    Row("init/zeros/shape=negative", lambda: jinit.zeros(K, (2, -1)), ValueError, ("shape",)),
    Row("init/ones/shape=huge", lambda: jinit.ones(K, HUGE), ValueError, ("shape", "GiB")),
    Row("init/constant/shape=str", lambda: jinit.constant(1.0)(K, "ab"), TypeError, ("shape",)),
    Row("init/zeros/dtype=bogus", lambda: jinit.zeros(K, (2,), "float33"), TypeError,
        ("float33",)),
    # Fans.
    Row("fans/shape=negative", lambda: jinit.compute_fans((3, -4)), ValueError, ("shape", "-4")),
    Row("fans/shape=float", lambda: jinit.compute_fans((3.0, 4)), TypeError, ("shape",)),
    Row("fans/groups=0", lambda: jinit.compute_fans((3, 4), groups=0), ValueError,
        ("groups", "0")),
    Row("fans/groups=-2", lambda: jinit.compute_fans((3, 4), groups=-2), ValueError,
        ("groups", "-2")),
    Row("fans/groups=not_divisor", lambda: jinit.compute_fans((3, 3, 1, 64), groups=5),
        ValueError, ("groups=5", "64")),
    Row("fans/groups=float", lambda: jinit.compute_fans((3, 4), groups=2.0), TypeError,
        ("groups",)),
    Row("fans/rank0", lambda: jinit.compute_fans(()), ValueError, ("rank 0",)),
    Row("fans/out_axis=-3", lambda: jinit.compute_fans((3, 4), out_axis=-3), ValueError,
        ("out_axis=-3",)),
    # Gains.
    Row("gains/leaky_relu/param=nan", lambda: jinit.calculate_gain("leaky_relu", NAN),
        ValueError, ("param", "nan")),
    Row("gains/leaky_relu/param=inf", lambda: jinit.calculate_gain("leaky_relu", INF),
        ValueError, ("param", "inf")),
    Row("gains/leaky_relu/param=-0.1", lambda: jinit.calculate_gain("leaky_relu", -0.1),
        ValueError, ("param", "-0.1")),
    Row("gains/elu/param=0", lambda: jinit.calculate_gain("elu", 0.0), ValueError,
        ("param", "0.0")),
    Row("gains/param=bool", lambda: jinit.calculate_gain("leaky_relu", True), ValueError,
        ("param", "True")),
    Row("gains/unknown", lambda: jinit.calculate_gain("relu7"), ValueError, ("relu7", "relu")),
    Row("gains/nonlinearity=int", lambda: jinit.calculate_gain(3), TypeError,
        ("nonlinearity", "3")),
    Row("gains/compute_gain/num_points=1", lambda: jinit.compute_gain(np.tanh, num_points=1),
        ValueError, ("num_points", "1")),
    Row("gains/compute_gain/fn=str", lambda: jinit.compute_gain("tanh"), TypeError, ("fn",)),
    Row("gains/compute_gain/zero", lambda: jinit.compute_gain(lambda x: 0 * x), ValueError,
        ("E[f(z)^2]",)),
    # Presets.
    Row("presets/torch_default_kernel/OIHW_on_HWIO", lambda: jinit.torch_default_kernel()(
        K, (3, 3, 64, 128)), ValueError, ("layout='OIHW'", "(3, 3, 64, 128)")),
    Row("presets/torch_kaiming_normal/HWIO_on_OIHW", lambda: jinit.torch_kaiming_normal(
        layout="HWIO")(K, (128, 64, 3, 3)), ValueError, ("layout='HWIO'",)),
    Row("presets/torch_xavier_uniform/OIHW_on_HWIO", lambda: jinit.torch_xavier_uniform()(
        K, (5, 5, 16, 32)), ValueError, ("layout='OIHW'",)),
    Row("presets/torch_orthogonal/OIHW_on_HWIO_3d", lambda: jinit.torch_orthogonal()(
        K, (3, 3, 3, 8, 16)), ValueError, ("layout='OIHW'",)),
    Row("presets/torch_kaiming_uniform/layout", lambda: jinit.torch_kaiming_uniform(
        layout="NHWC"), ValueError, ("layout", "NHWC")),
    Row("presets/torch_kaiming_uniform/mode", lambda: jinit.torch_kaiming_uniform(
        mode="fan_avg"), ValueError, ("mode", "fan_avg")),
    Row("presets/torch_kaiming_normal/a=nan", lambda: jinit.torch_kaiming_normal(NAN),
        ValueError, ("param", "nan")),
    Row("presets/torch_xavier_normal/gain=-1", lambda: jinit.torch_xavier_normal(-1.0),
        ValueError, ("gain", "-1.0")),
    Row("presets/torch_trunc_normal/std=0", lambda: jinit.torch_trunc_normal(std=0.0),
        ValueError, ("std",)),
    Row("presets/torch_trunc_normal/a>=b", lambda: jinit.torch_trunc_normal(a=1.0, b=-1.0),
        ValueError, ("a", "b")),
    Row("presets/get_preset/name", lambda: jinit.get_preset("mxnet"), ValueError, ("mxnet",)),
    Row("presets/get_preset/keras_layout", lambda: jinit.get_preset("keras", "OIHW"),
        ValueError, ("layout", "OIHW")),
    # reinit.
    Row("reinit/pattern_matches_nothing", lambda: jinit.reinit(
        {"Dense_0": {"kernel": jnp.ones((2, 2))}}, {r"conv": jinit.zeros()}, K),
        ValueError, ("conv", "Dense_0/kernel")),
    Row("reinit/key=int", lambda: jinit.reinit({"w": jnp.ones((2, 2))}, {"w": jinit.zeros()}, 0),
        ValueError, ("key",)),
    Row("reinit/rule_not_pair", lambda: jinit.reinit({"w": jnp.ones(2)}, [("w",)], K),
        TypeError, ("rule 0",)),
    Row("reinit/init_not_callable", lambda: jinit.reinit({"w": jnp.ones(2)}, {"w": 3}, K),
        TypeError, ("initializer",)),
    # fixup, recommend, theory helpers.
    Row("fixup/num_branches=0", lambda: jinit.fixup_scale(0, 2), ValueError,
        ("num_branches", "0")),
    Row("fixup/branch_depth=1", lambda: jinit.fixup_scale(4, 1), ValueError, ("branch_depth",)),
    Row("recommend/sigma_b=-1", lambda: jinit.recommend("tanh", sigma_b=-1.0), ValueError,
        ("sigma_b", "-1.0")),
    Row("recommend/sigma_b=nan", lambda: jinit.recommend("tanh", sigma_b=NAN), ValueError,
        ("sigma_b", "nan")),
    Row("recommend/depth=0", lambda: jinit.recommend("relu", depth=0), ValueError, ("depth", "0")),
    Row("recommend/distribution", lambda: jinit.recommend("relu", distribution="laplace"),
        ValueError, ("distribution", "laplace")),
    Row("edge_of_chaos/sigma_b=inf", lambda: jinit.edge_of_chaos("tanh", INF), ValueError,
        ("sigma_b", "inf")),
    Row("isometry/width=0", lambda: jinit.mlp_jacobian_singular_values(
        K, "tanh", 1.0, depth=2, width=0), ValueError, ("width", "0")),
    Row("isometry/depth=0", lambda: jinit.mlp_jacobian_singular_values(
        K, "tanh", 1.0, depth=0, width=4), ValueError, ("depth", "0")),
    Row("isometry/key=int", lambda: jinit.mlp_jacobian_singular_values(
        7, "tanh", 1.0, depth=2, width=4), ValueError, ("key",)),
    Row("isometry/num_inputs=0", lambda: jinit.mlp_jacobian_singular_values(
        K, "tanh", 1.0, depth=2, width=4, num_inputs=0), ValueError, ("num_inputs", "0")),
    Row("random_mlp/width=-3", lambda: random_mlp.init_mlp(K, 4, -3, 2, sigma_w=1.0),
        ValueError, ("width", "-3")),
    Row("random_mlp/weights", lambda: random_mlp.init_mlp(K, 4, 4, 2, sigma_w=1.0,
        weights="haar"), ValueError, ("weights", "haar")),
    Row("random_mlp/sigma_w=nan", lambda: random_mlp.init_mlp(K, 4, 4, 2, sigma_w=math.nan),
        ValueError, ("sigma_w",)),
]  # fmt: skip

ROWS += [
    Row("theory/q_star/num_iters=0", lambda: jinit.theory.q_star("tanh", 1.0, num_iters=0),
        ValueError, ("num_iters", "0")),
    Row("theory/q_star/num_points=1", lambda: jinit.theory.q_star("tanh", 1.0, num_points=1),
        ValueError, ("num_points", "1")),
    Row("theory/propagate/depth=0", lambda: jinit.theory.propagate("tanh", 1.0, depth=0),
        ValueError, ("depth", "0")),
    Row("theory/simulate/x_rank1", lambda: jinit.theory.simulate(
        K, jnp.ones(4), "tanh", 1.0, depth=2, width=4), ValueError, ("x", "(4,)")),
    Row("theory/simulate/key=int", lambda: jinit.theory.simulate(
        3, jnp.ones((2, 4)), "tanh", 1.0, depth=2, width=4), ValueError, ("key",)),
    Row("theory/simulate/width=0", lambda: jinit.theory.simulate(
        K, jnp.ones((2, 4)), "tanh", 1.0, depth=2, width=0), ValueError, ("width", "0")),
]  # fmt: skip
