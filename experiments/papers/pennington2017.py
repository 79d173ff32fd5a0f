"""Pennington et al. 2017 / Xiao et al. 2018: dynamical isometry from orthogonal weights.

Papers: Jeffrey Pennington, Samuel S. Schoenholz, Surya Ganguli, "Resurrecting the sigmoid in
deep learning through dynamical isometry: theory and practice", NeurIPS 2017, arXiv:1711.04735.
Lechao Xiao, Yasaman Bahri, Jascha Sohl-Dickstein, Samuel S. Schoenholz, Jeffrey Pennington,
"Dynamical Isometry and a Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla
Convolutional Neural Networks", ICML 2018, arXiv:1806.05393.

Claims (Pennington et al., section 2-3 and Fig. 1-2): for a deep tanh network at criticality
(chi_1 = sigma_w^2 mu_1 = 1, mu_k = E[phi'(h)^{2k}] at the fixed point q*) the squared singular
values lambda of the input-output Jacobian J have mean 1 at every depth L and, by free
probability, variance ``sigma^2_{JJ^T} = L (mu_2 / mu_1^2 - 1 - s_1)``, with s_1 = -1 for
Gaussian and s_1 = 0 for orthogonal weights. So with orthogonal weights and small q* (tanh
nearly linear, mu_2 / mu_1^2 -> 1) the spectrum stays concentrated at 1 ("dynamical isometry"),
while with Gaussian weights its variance grows linearly with depth. Xiao et al. (section 2.3):
the delta-orthogonal kernel (orthogonal centre tap, all other taps 0) makes a convolution an
orthogonal map, so a deep linear CNN preserves the norm of every input exactly.

Our setup, (a) Jacobian spectra: tanh MLPs of width 400, depths L = 8, 32, 128 (L weight
matrices), at the critical point with q* = 1/64 (a value the paper uses): sigma_w^2 =
1 / E[tanh'(sqrt(q*) z)^2] and sigma_b^2 = q* - sigma_w^2 E[tanh(sqrt(q*) z)^2]; Gaussian
weights N(0, sigma_w^2 / N) or sigma_w times a Haar orthogonal matrix (``jinit.orthogonal``);
J = D_L W_L^T ... D_1 W_1^T at one input x_0 = tanh(sqrt(q*) z) (so h_1 starts at q*);
5 seeds, all seeds of an ensemble one vmapped program. (b) Norm ratios: linear 2-D CNNs of
64 layers of 3x3 convolutions with 16 channels on 32x32 inputs, circular padding (wrap pad +
VALID conv, so every layer is a square map and the padding adds no energy); kernels from
``jinit.delta_orthogonal()``, ``jinit.orthogonal()`` on the whole kernel (a (9C, C) matrix with
orthonormal columns), ``jinit.glorot_normal()`` (variance 1/fan_in here, since fan_in =
fan_out: norm-preserving on average) and ``jinit.he_normal()`` (variance 2/fan_in: the ReLU
gain, shown for reference); per seed 4 Gaussian inputs N(0, 1) and 4 CIFAR-10 test images
(standardized per channel, zero-padded from 3 to 16 channels, which keeps their norm; Gaussian
inputs only when the data are missing); all (init, seed) pairs one vmapped program.

Criteria (fixed before the run; a claim passes only if it holds for every seed):

1. ``pennington2017.orthogonal_isometry``: orthogonal, at every depth: mean lambda in
   [0.9, 1.1], var lambda within [0.5, 2] x the prediction L (mu_2/mu_1^2 - 1) and the largest
   singular value < 3.
2. ``pennington2017.gaussian_spread_grows``: Gaussian, at every depth: var lambda within
   [1/3, 3] x the prediction L mu_2/mu_1^2, and increasing with depth. The band is wide on
   purpose, from the size of the effects known before the run: at width N the expected
   variance of a linear Gaussian product is (N+1)((1+1/N)^L - 1), +18% over the N -> inf
   value at L = 128, N = 400, and a variance estimated from 400 heavy-tailed eigenvalues has a
   relative sampling error up to sqrt(m_4 / (m_2^2 N)) ~ sqrt(2.7 L / N) ~ 0.9 at L = 128
   (Fuss-Catalan moments).
3. ``pennington2017.orthogonal_vs_gaussian``: at the largest depth var lambda (Gaussian) >=
   50 x var lambda (orthogonal) (predicted ratio ~500 at q* = 1/64).
4. ``xiao2018.delta_orthogonal_norm``: delta-orthogonal, |f_l(x)| / |x| within 1e-4 of 1 for
   every input and every layer l = 1..64 (float32).
5. ``xiao2018.other_inits_drift``: Glorot normal, He normal and orthogonal-kernel stacks are not
   norm preserving: for each, the largest |ratio - 1| over the inputs at depth 64 exceeds 0.1
   (1000 x the delta-orthogonal tolerance).

Writes ``results.json``, ``pennington2017_spectra.png`` and ``xiao2018_norm_ratio.png`` to
``--out`` (default ``runs/papers/pennington2017``).

Usage::

    python experiments/papers/pennington2017.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg  # noqa: F401  (holds the OpenBLAS that jax's CPU LAPACK calls)
import threadpoolctl

import jinit
from experiments import common
from experiments.data import cifar10, repo_data_dir
from jinit import theory

NAME = "pennington2017"
PENNINGTON = "Pennington et al. 2017"
XIAO = "Xiao et al. 2018"
ENSEMBLES = ("orthogonal", "gaussian")
CONV_INITS = {
    "delta_orthogonal": jinit.delta_orthogonal(),
    "orthogonal_kernel": jinit.orthogonal(),
    "glorot_normal": jinit.glorot_normal(),
    "he_normal": jinit.he_normal(),
}
COLORS = {
    "orthogonal": "C3",
    "gaussian": "C0",
    "delta_orthogonal": "C3",
    "orthogonal_kernel": "C2",
    "glorot_normal": "C0",
    "he_normal": "C1",
}
# Programs that only draw weights run once: XLA's -O0 compiles them ~10x faster (8 s -> 0.7 s).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
# LAPACK_NOTE: on XLA:CPU (jax 0.10.2, scipy 1.17 OpenBLAS) a program holding two independent
# LAPACK calls (two QRs, or QRs and SVDs) can deadlock at 0% CPU, whatever the BLAS thread
# count: XLA runs them concurrently. So every QR or SVD here sits in a program of its own.
SPECTRA_FIGURE = "pennington2017_spectra.png"
NORM_FIGURE = "xiao2018_norm_ratio.png"


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    width: int = 400
    depths: tuple[int, ...] = (8, 32, 128)
    q_star: float = 1.0 / 64.0
    conv_depth: int = 64
    conv_channels: int = 16
    conv_size: int = 32
    gaussian_inputs: int = 4
    cifar_inputs: int = 4
    input_seed: int = 10_000  # the conv inputs, shared by all seeds
    # Criteria (fixed before the run).
    orthogonal_mean_band: tuple[float, float] = (0.9, 1.1)
    orthogonal_var_band: tuple[float, float] = (0.5, 2.0)
    orthogonal_max_singular_value: float = 3.0
    gaussian_var_band: tuple[float, float] = (1.0 / 3.0, 3.0)
    min_variance_ratio: float = 50.0
    norm_tolerance: float = 1e-4
    min_drift: float = 0.1


QUICK = Config(
    seeds=(0, 1),
    width=64,
    depths=(2, 4, 8),
    conv_depth=4,
    conv_channels=4,
    conv_size=8,
    gaussian_inputs=2,
    cifar_inputs=2,
)


# ------------------------------------------------------------------ (a) Jacobian spectra


def critical_tanh(q_star: float) -> dict[str, float]:
    """sigma_w, sigma_b putting tanh at chi_1 = 1 with fixed point q*, and mu_1, mu_2 there."""
    ex = lambda f: float(theory.gaussian_expectation(f, q_star))
    dphi2 = lambda h: 1.0 / jnp.cosh(h) ** 4  # tanh'(h)^2
    mu1, mu2 = ex(dphi2), ex(lambda h: dphi2(h) ** 2)
    sigma_w2 = 1.0 / mu1
    sigma_b2 = q_star - sigma_w2 * ex(lambda h: jnp.tanh(h) ** 2)
    return {
        "sigma_w": math.sqrt(sigma_w2),
        "sigma_b": math.sqrt(sigma_b2),
        "mu_1": mu1,
        "mu_2": mu2,
    }


def mlp_weights(keys, ensemble: str, crit: dict, depth: int, width: int):
    """Kernels ``(seeds, depth, N, N)`` and biases ``(seeds, depth, N)`` at the critical point."""
    sw, sb = crit["sigma_w"], crit["sigma_b"]
    kernel = jinit.orthogonal(sw) if ensemble == "orthogonal" else jinit.normal(sw / width**0.5)

    def one(key):
        k_w, k_b = jax.random.split(jax.random.fold_in(key, ENSEMBLES.index(ensemble)))
        w = jax.vmap(lambda k: kernel(k, (width, width), jnp.float32))(jax.random.split(k_w, depth))
        return w, sb * jax.random.normal(k_b, (depth, width))

    return jax.jit(jax.vmap(one), compiler_options=FAST_COMPILE)(keys)


def jacobians(w, b, x0, depths: tuple[int, ...]):
    """``J^T`` at each depth for one net: ``J^T = W_1 D_1 ... W_L D_L``, shape (depths, N, N)."""
    dphi = lambda h: 1.0 - jnp.tanh(h) ** 2

    def layer(carry, wb):
        x, jac_t = carry  # x_{l-1}, and J^T of x_{l-1} with respect to x_0
        h = x @ wb[0] + wb[1]
        return (jnp.tanh(h), (jac_t @ wb[0]) * dphi(h)[None, :]), None

    carry, out, done = (x0, jnp.eye(x0.shape[0])), [], 0
    for d in depths:
        carry, _ = jax.lax.scan(layer, carry, (w[done:d], b[done:d]))
        out.append(carry[1])
        done = d
    return jnp.stack(out)


def spectra(cfg: Config, crit: dict) -> dict[str, np.ndarray]:
    """Singular values ``(seeds, depths, N)`` per ensemble: init, scan and SVD, each vmapped."""
    keys = common.init_keys(cfg.seeds)
    x0 = jnp.tanh(
        math.sqrt(cfg.q_star)
        * jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 7), (cfg.width,)))(keys)
    )
    jac = jax.jit(jax.vmap(jacobians, in_axes=(0, 0, 0, None)), static_argnums=3)
    svd = jax.jit(lambda j: jnp.linalg.svd(j, compute_uv=False))
    out = {}
    for ens in ENSEMBLES:  # separate programs: see LAPACK_NOTE
        w, b = mlp_weights(keys, ens, crit, cfg.depths[-1], cfg.width)
        out[ens] = np.asarray(svd(jac(w, b, x0, tuple(cfg.depths))))
    return out


# ------------------------------------------------------------- (b) linear CNN norm ratios


def conv_inputs(cfg: Config) -> tuple[jax.Array, int]:
    """Gaussian N(0, 1) inputs, then CIFAR-10 test images if a local copy is found."""
    shape = (cfg.conv_size, cfg.conv_size, cfg.conv_channels)
    gauss = np.random.default_rng(cfg.input_seed).standard_normal((cfg.gaussian_inputs, *shape))
    data_dir = repo_data_dir()
    local = None if data_dir is None else cifar10.find_local_copy(data_dir)
    if local is None or not local.is_dir():
        return jnp.asarray(gauss, jnp.float32), 0
    images, _ = cifar10.read_file(local / cifar10.TEST_FILES[0])  # all 10,000, checked
    images = images[:1000].astype(np.float32) / 255.0  # per-channel stats from 1000 images
    images = (images - images.mean((0, 1, 2))) / images.std((0, 1, 2))
    c = min(3, cfg.conv_channels)
    cifar = np.zeros((cfg.cifar_inputs, *shape))  # extra channels stay 0: the norm is unchanged
    cifar[..., :c] = images[: cfg.cifar_inputs, : cfg.conv_size, : cfg.conv_size, :c]
    return jnp.asarray(np.concatenate([gauss, cifar]), jnp.float32), cfg.cifar_inputs


def norm_ratios(kernels, x):
    """``|f_l(x)| / |x|`` for l = 1..depth, shape (depth, inputs): circular 3x3 convs, no bias."""

    def layer(h, k):
        h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
        h = jax.lax.conv_general_dilated(
            h,
            k,
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return h, jnp.sqrt(jnp.sum(h * h, axis=(1, 2, 3)))

    _, norms = jax.lax.scan(layer, x, kernels)
    return norms / jnp.sqrt(jnp.sum(x * x, axis=(1, 2, 3)))


def conv_ratios(cfg: Config, x) -> dict[str, np.ndarray]:
    """Norm ratios ``(seeds, depth, inputs)`` per init; all (init, seed) one vmapped program."""
    shape = (3, 3, cfg.conv_channels, cfg.conv_channels)
    keys = common.init_keys(cfg.seeds)
    stacks = []
    for init in CONV_INITS.values():  # one program per init: see LAPACK_NOTE

        def stack(key, init=init):  # (depth, 3, 3, C, C)
            return jax.vmap(lambda k: init(k, shape, jnp.float32))(
                jax.random.split(key, cfg.conv_depth)
            )

        stacks.append(jax.jit(jax.vmap(stack), compiler_options=FAST_COMPILE)(keys))
    ratios = jax.jit(jax.vmap(norm_ratios, in_axes=(0, None)))(jnp.concatenate(stacks), x)
    ratios = np.asarray(ratios).reshape(len(CONV_INITS), len(cfg.seeds), cfg.conv_depth, -1)
    return dict(zip(CONV_INITS, ratios, strict=True))


# ----------------------------------------------------------------------------------- main


def fmt(values, spec=".3g"):
    return "[" + ", ".join(format(float(v), spec) for v in np.ravel(values)) + "]"


def main(argv=None) -> dict:
    args = common.paper_parser(__doc__.splitlines()[0], NAME).parse_args(argv)
    cfg = QUICK if args.quick else Config()
    started = time.perf_counter()
    out = pathlib.Path(args.out)
    crit = critical_tanh(cfg.q_star)
    slope = {"orthogonal": crit["mu_2"] / crit["mu_1"] ** 2 - 1.0}  # var(lambda) / L
    slope["gaussian"] = slope["orthogonal"] + 1.0
    deep = cfg.depths[-1]
    mlp_setup = (
        f"tanh MLP width {cfg.width}, depths {list(cfg.depths)}, critical point q* = "
        f"{cfg.q_star:.4g} (sigma_w = {crit['sigma_w']:.4f}, sigma_b = {crit['sigma_b']:.4f}), "
        f"one input at q*, seeds {list(cfg.seeds)}; lambda = squared singular values of J"
    )
    conv_setup = (
        f"linear CNN, {cfg.conv_depth} circular 3x3 convs, {cfg.conv_channels} channels, "
        f"{cfg.conv_size}x{cfg.conv_size} inputs: {cfg.gaussian_inputs} Gaussian + up to "
        f"{cfg.cifar_inputs} CIFAR-10 test images per seed, float32; seeds {list(cfg.seeds)}"
    )
    claims = {
        "orthogonal": common.Claim(
            id=f"{NAME}.orthogonal_isometry",
            paper=PENNINGTON,
            claim="Orthogonal weights at criticality with small q* give dynamical isometry: the "
            "Jacobian's squared singular values keep mean 1 and a variance "
            "L (mu_2/mu_1^2 - 1) that stays near 0 (s_1 = 0; Fig. 1-2).",
            setup=mlp_setup + "; orthogonal weights",
            criterion=f"at every depth: mean lambda in {list(cfg.orthogonal_mean_band)}, var "
            f"lambda within {list(cfg.orthogonal_var_band)} x L (mu_2/mu_1^2 - 1), largest "
            f"singular value < {cfg.orthogonal_max_singular_value:g}; every seed",
            figure=SPECTRA_FIGURE,
        ),
        "gaussian": common.Claim(
            id=f"{NAME}.gaussian_spread_grows",
            paper=PENNINGTON,
            claim="Gaussian weights at the same criticality cannot be isometric: the variance "
            "of the squared singular values grows linearly with depth, L mu_2/mu_1^2 "
            "(s_1 = -1; Fig. 1-2).",
            setup=mlp_setup + "; Gaussian weights",
            criterion="at every depth var lambda within "
            f"[{cfg.gaussian_var_band[0]:.3g}, {cfg.gaussian_var_band[1]:.3g}] x L mu_2/mu_1^2 "
            "(wide: finite-width bias and heavy-tail sampling error, see the docstring), and "
            "var lambda increasing with depth; every seed",
            figure=SPECTRA_FIGURE,
        ),
        "ratio": common.Claim(
            id=f"{NAME}.orthogonal_vs_gaussian",
            paper=PENNINGTON,
            claim="At equal depth the Gaussian spectrum is far wider than the orthogonal one.",
            setup=mlp_setup,
            criterion=f"at depth {deep}: var lambda (Gaussian) >= {cfg.min_variance_ratio:g} x "
            "var lambda (orthogonal); every seed",
            figure=SPECTRA_FIGURE,
        ),
        "delta": common.Claim(
            id="xiao2018.delta_orthogonal_norm",
            paper=XIAO,
            claim="A delta-orthogonal kernel makes each convolution an orthogonal map, so a deep "
            "linear CNN preserves every input's norm exactly (section 2.3).",
            setup=conv_setup + "; jinit.delta_orthogonal()",
            criterion=f"| |f_l(x)| / |x| - 1 | < {cfg.norm_tolerance:g} for every input and every "
            f"layer l = 1..{cfg.conv_depth}; every seed",
            figure=NORM_FIGURE,
        ),
        "drift": common.Claim(
            id="xiao2018.other_inits_drift",
            paper=XIAO,
            claim="Without the delta structure the stack is not norm preserving, even when "
            "norm-preserving on average (Glorot, orthogonal kernel) (section 2.3).",
            setup=conv_setup + "; glorot_normal, he_normal, orthogonal on the whole kernel",
            criterion=f"for each of the three inits, max over inputs of | ratio - 1 | at depth "
            f"{cfg.conv_depth} > {cfg.min_drift:g}; every seed",
            figure=NORM_FIGURE,
        ),
    }

    # LAPACK (QR, SVD) in a multi-threaded OpenBLAS on a busy 2-core machine ran 5-30x slower.
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        t0 = time.perf_counter()
        sv = spectra(cfg, crit)
        spectra_s = time.perf_counter() - t0
        x, n_cifar = conv_inputs(cfg)
        t0 = time.perf_counter()
        ratios = conv_ratios(cfg, x)
        conv_s = time.perf_counter() - t0

    depths = np.asarray(cfg.depths, float)
    lam = {e: sv[e].astype(np.float64) ** 2 for e in ENSEMBLES}  # (seeds, depths, N)
    mean = {e: lam[e].mean(-1) for e in ENSEMBLES}
    var = {e: lam[e].var(-1) for e in ENSEMBLES}
    smax = {e: sv[e].max(-1) for e in ENSEMBLES}
    pred = {e: slope[e] * depths for e in ENSEMBLES}
    rel = {e: var[e] / pred[e] for e in ENSEMBLES}
    n = cfg.width
    finite_width = (n + 1) * ((1 + 1 / n) ** depths - 1)  # E var, linear Gaussian product

    lo, hi = cfg.orthogonal_mean_band
    vlo, vhi = cfg.orthogonal_var_band
    claims["orthogonal"].judge(
        ((mean["orthogonal"] >= lo) & (mean["orthogonal"] <= hi)).all(-1)
        & ((rel["orthogonal"] >= vlo) & (rel["orthogonal"] <= vhi)).all(-1)
        & (smax["orthogonal"] < cfg.orthogonal_max_singular_value).all(-1),
        f"var lambda / prediction per depth {list(cfg.depths)} (range over seeds): "
        + ", ".join(
            f"{rel['orthogonal'][:, i].min():.2f}-{rel['orthogonal'][:, i].max():.2f}"
            for i in range(len(depths))
        )
        + f"; max s at depth {deep}: {fmt(smax['orthogonal'][:, -1])}",
        predicted_var=pred["orthogonal"].tolist(),
        var_lambda=var["orthogonal"].tolist(),
        mean_lambda=mean["orthogonal"].tolist(),
        max_singular_value=smax["orthogonal"].tolist(),
        # One outlier per net (the direction of the signal's own length, which the stable
        # q-map contracts) sits below the bulk; the free-probability bulk ignores it.
        min_singular_value=sv["orthogonal"].min(-1).tolist(),
        var_over_prediction=rel["orthogonal"].tolist(),
    )
    glo, ghi = cfg.gaussian_var_band
    claims["gaussian"].judge(
        ((rel["gaussian"] >= glo) & (rel["gaussian"] <= ghi)).all(-1)
        & (np.diff(var["gaussian"], axis=-1) > 0).all(-1),
        f"var lambda / (L mu_2/mu_1^2) per depth {list(cfg.depths)} (range over seeds): "
        + ", ".join(
            f"{rel['gaussian'][:, i].min():.2f}-{rel['gaussian'][:, i].max():.2f}"
            for i in range(len(depths))
        )
        + f"; var lambda at depth {deep}: {fmt(var['gaussian'][:, -1])}",
        predicted_var=pred["gaussian"].tolist(),
        finite_width_linear_expectation=finite_width.tolist(),
        var_lambda=var["gaussian"].tolist(),
        mean_lambda=mean["gaussian"].tolist(),
        max_singular_value=smax["gaussian"].tolist(),
        var_over_prediction=rel["gaussian"].tolist(),
    )
    ratio = var["gaussian"][:, -1] / var["orthogonal"][:, -1]
    claims["ratio"].judge(
        ratio >= cfg.min_variance_ratio,
        f"var ratio Gaussian / orthogonal at depth {deep}: {fmt(ratio)} (predicted "
        f"{slope['gaussian'] / slope['orthogonal']:.0f})",
        variance_ratio=ratio.tolist(),
        predicted_ratio=slope["gaussian"] / slope["orthogonal"],
    )
    dev = {k: np.abs(r - 1.0) for k, r in ratios.items()}  # (seeds, depth, inputs)
    delta_max = dev["delta_orthogonal"].max((1, 2))
    claims["delta"].judge(
        delta_max < cfg.norm_tolerance,
        f"max | ratio - 1 | over layers and inputs: {fmt(delta_max, '.2e')}",
        max_deviation=delta_max.tolist(),
        cifar_inputs=n_cifar,
    )
    drift = {k: dev[k][:, -1].max(-1) for k in CONV_INITS if k != "delta_orthogonal"}
    claims["drift"].judge(
        np.all([d > cfg.min_drift for d in drift.values()], axis=0),
        "; ".join(f"{k}: {fmt(d, '.2g')}" for k, d in drift.items()),
        max_deviation_at_depth=({k: d.tolist() for k, d in drift.items()}),
        ratio_at_depth={k: r[:, -1].tolist() for k, r in ratios.items()},
        cifar_inputs=n_cifar,
    )
    for c in claims.values():
        if not c.passed:
            c.details["analysis"] = analysis(c, rel, var, mean, smax, slope, cfg)

    figures = [
        plot_spectra(sv, var, pred, finite_width, cfg, crit, out / SPECTRA_FIGURE),
        plot_norms(ratios, n_cifar, cfg, out / NORM_FIGURE),
    ]
    return common.finish(
        out,
        NAME,
        list(claims.values()),
        cfg,
        started,
        args.quick,
        figures=figures,
        critical_point=crit,
        variance_slope=slope,
        data={
            "mlp": "Gaussian inputs (the paper's setting)",
            "conv": f"Gaussian inputs + {n_cifar} CIFAR-10 test images",
        },
        spectra_s=spectra_s,
        conv_s=conv_s,
    )


def analysis(claim, rel, var, mean, smax, slope, cfg) -> str:
    """What the numbers say when a claim fails (written from the measured values)."""
    if claim.id.endswith("orthogonal_isometry"):
        return (
            f"orthogonal: var/prediction per seed and depth {np.round(rel['orthogonal'], 2)}, "
            f"mean lambda {np.round(mean['orthogonal'], 3)}, max s {np.round(smax['orthogonal'], 2)}"
        )
    if claim.id.endswith("gaussian_spread_grows"):
        # The formula assumes mean lambda = 1; at finite width the overall gain of J itself
        # fluctuates (relative std ~ L/N for a Gaussian product), and var scales with its square.
        normalized = var["gaussian"] / mean["gaussian"] ** 2 / np.asarray(cfg.depths)
        return (
            f"Gaussian: var/prediction per seed (rows) and depth {list(cfg.depths)} "
            f"{np.round(rel['gaussian'], 2).tolist()}; var lambda increases with depth in "
            f"{int((np.diff(var['gaussian'], axis=-1) > 0).all(-1).sum())} of {len(cfg.seeds)} "
            f"seeds; mean lambda "
            f"{np.round(mean['gaussian'], 2).tolist()}. At the largest depth (L/N = "
            f"{cfg.depths[-1] / cfg.width:.2f}) mean lambda itself is far from 1 in single "
            "networks (finite-width fluctuation of the overall gain of a Gaussian product), and "
            "var lambda, dominated by the few top eigenvalues of a heavy-tailed spectrum, falls "
            "mostly below its expectation (which rare large draws dominate). Not part of the "
            "criterion, for diagnosis only: var / (mean^2 L) per seed and depth = "
            f"{np.round(normalized, 2).tolist()} (free probability: mu_2/mu_1^2 = "
            f"{slope['gaussian']:.3f})."
        )
    return f"measured: {claim.measured}"


# ---------------------------------------------------------------------------------- plots


def plot_spectra(sv, var, pred, finite_width, cfg, crit, path):
    plt = common.pyplot()
    n_d = len(cfg.depths)
    fig, axes = plt.subplots(1, n_d + 1, figsize=(4.2 * (n_d + 1), 4.2))
    for i, d in enumerate(cfg.depths):
        ax = axes[i]
        for ens in ENSEMBLES:
            s = np.log10(np.maximum(sv[ens][:, i].ravel(), 1e-8))
            ax.hist(s, bins=60, density=True, histtype="stepfilled", alpha=0.35,
                    color=COLORS[ens], label=f"{ens} (all seeds pooled)")  # fmt: skip
        ax.axvline(0.0, color="k", lw=0.8, ls=":", label="s = 1 (isometry)")
        ax.set_yscale("log")
        ax.set_xlabel("log10 singular value of J")
        ax.set_ylabel("density (log scale)")
        ax.set_title(f"depth L = {d}")
    axes[0].legend(fontsize=8)
    axes[n_d - 1].text(
        0.02, 0.97, "float32 SVD resolves s down to\n~1e-7 x max s; smaller ones pile\nup there",
        transform=axes[n_d - 1].transAxes, fontsize=7, va="top",
    )  # fmt: skip
    ax = axes[-1]
    depths = np.asarray(cfg.depths)
    for ens in ENSEMBLES:
        for s in range(len(cfg.seeds)):
            ax.plot(depths, var[ens][s], "o", color=COLORS[ens], ms=4, alpha=0.6)
        ax.plot(depths, pred[ens], "-", color=COLORS[ens], label=f"{ens}: free-probability L x "
                f"{pred[ens][0] / depths[0]:.3g}")  # fmt: skip
    ax.plot(depths, finite_width, "--", color=COLORS["gaussian"], lw=1,
            label=f"linear Gaussian, width {cfg.width} (exact mean)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("depth L")
    ax.set_ylabel("variance of squared singular values")
    ax.set_title("var(lambda) vs depth (dots = seeds)")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"Pennington et al. 2017: critical tanh (q* = {cfg.q_star:.3g}, sigma_w = "
        f"{crit['sigma_w']:.3f}, sigma_b = {crit['sigma_b']:.3f}), width {cfg.width}: orthogonal "
        "weights stay isometric, Gaussian spread grows with depth"
    )
    fig.tight_layout()
    return common.save(fig, path)


def plot_norms(ratios, n_cifar, cfg, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    layers = np.arange(1, cfg.conv_depth + 1)
    n_gauss = cfg.gaussian_inputs
    for name, r in ratios.items():
        flat = r.transpose(1, 0, 2).reshape(cfg.conv_depth, -1)  # (depth, seeds * inputs)
        is_gauss = np.tile(np.arange(r.shape[-1]) < n_gauss, r.shape[0])
        for j in range(flat.shape[1]):
            delta = name == "delta_orthogonal"  # on top, or the others hide it at exactly 1
            axes[0].plot(layers, flat[:, j], color=COLORS[name], lw=2 if delta else 0.7,
                         alpha=0.5, ls="-" if is_gauss[j] else "--", zorder=5 if delta else 2)  # fmt: skip
        far = name == "he_normal"  # variance 2/fan_in: the ReLU gain, ~2^(l/2) in a linear net
        axes[0].plot([], [], color=COLORS[name], label=name + (" (leaves the plot)" if far else ""))
        dev = np.maximum(np.abs(r - 1.0), 1e-9).max(-1)  # (seeds, depth): worst input
        for s in range(dev.shape[0]):
            axes[1].plot(layers, dev[s], color=COLORS[name], lw=1, alpha=0.7,
                         label=name if s == 0 else None)  # fmt: skip
    axes[0].plot([], [], color="grey", ls="-", label="Gaussian inputs")
    if n_cifar:
        axes[0].plot([], [], color="grey", ls="--", label="CIFAR-10 images")
    axes[0].set_yscale("log")
    axes[0].set_ylim(0.1, 10)
    axes[0].set_xlabel("layer l")
    axes[0].set_ylabel("|f_l(x)| / |x|")
    axes[0].set_title("norm ratio per input and seed")
    axes[0].legend(fontsize=8)
    axes[1].axhline(cfg.norm_tolerance, color="k", ls=":", lw=1, label="criterion 1e-4")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("layer l")
    axes[1].set_ylabel("max over inputs of | ratio - 1 |  (0 drawn at 1e-9)")
    axes[1].set_title("deviation from isometry, one line per seed")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"Xiao et al. 2018: delta-orthogonal linear CNN ({cfg.conv_depth} circular 3x3 convs, "
        f"{cfg.conv_channels} channels) preserves every input's norm; other inits drift"
    )
    fig.tight_layout()
    return common.save(fig, path)


if __name__ == "__main__":
    main()
