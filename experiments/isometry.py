"""Dynamical isometry: singular values of the input-output Jacobian of random MLPs at init.

Four initializations, all at the critical point chi_1 = 1 (mean squared singular value 1 at
every depth): tanh with Gaussian or orthogonal weights at the edge of chaos with a small
sigma_b (so q* is small and tanh nearly linear), and ReLU with He-scaled Gaussian or
orthogonal weights. Pennington et al. (2017) predict that only orthogonal tanh keeps the
spectrum concentrated as depth grows.

    python experiments/isometry.py            # full run
    python experiments/isometry.py --quick    # smoke run

Writes ``results.json`` and ``isometry.png`` to ``--out`` (default ``runs/isometry``).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import numpy as np

import jinit
from experiments import common
from jinit import theory


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=common.writable_dir, default="runs/isometry")
    p.add_argument("--quick", action="store_true", help="smoke run: shallow, narrow")
    p.add_argument("--seed", type=common.nonnegative_int, default=0)
    p.add_argument(
        "--sigma-b", type=common.nonnegative_float, default=0.005, help="tanh bias std (sets q*)"
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    depths, width, n_inputs = ((2, 4), 32, 1) if args.quick else ((2, 8, 32, 128), 256, 4)
    crit = theory.critical_point("tanh", args.sigma_b)
    sw_tanh, q_star = float(crit["sigma_w"]), float(crit["q_star"])
    configs = {
        "tanh, Gaussian, critical": ("tanh", sw_tanh, args.sigma_b, "gaussian", q_star),
        "tanh, orthogonal, critical": ("tanh", sw_tanh, args.sigma_b, "orthogonal", q_star),
        "ReLU, Gaussian, He": ("relu", math.sqrt(2), 0.0, "gaussian", 1.0),
        "ReLU, orthogonal, He": ("relu", math.sqrt(2), 0.0, "orthogonal", 1.0),
    }
    key = jax.random.key(args.seed)
    t0 = time.time()
    results = {
        "config": {
            "depths": depths,
            "width": width,
            "inputs": n_inputs,
            "tanh_sigma_w": sw_tanh,
            "tanh_sigma_b": args.sigma_b,
            "tanh_q_star": q_star,
            "quick": args.quick,
        },
        "spectra": {},
    }
    spectra = {}
    for name, (act, sw, sb, weights, q_in) in configs.items():
        per_depth = {}
        s_all = jinit.mlp_jacobian_singular_values(
            key,
            act,
            sw,
            sb,
            depth=tuple(depths),
            width=width,
            weights=weights,
            num_inputs=n_inputs,
            q_in=q_in,
        )
        for depth, s in zip(depths, s_all, strict=True):
            spectra[(name, depth)] = np.asarray(s).ravel()
            stats = jinit.spectrum_stats(s)
            per_depth[str(depth)] = {k.rsplit("/", 1)[1]: float(v) for k, v in stats.items()}
        results["spectra"][name] = per_depth
    results["seconds"] = time.time() - t0
    results["environment"] = common.environment()
    common.write_json_atomic(out / "results.json", results)
    plot(results, spectra, out)
    return results


def plot(results, spectra, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = results["config"]["depths"]
    deepest = max(depths)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for name in results["spectra"]:
        s = spectra[(name, deepest)]
        axes[0].hist(
            np.log10(np.maximum(s, 1e-8)),
            bins=60,
            histtype="step",
            density=True,
            lw=1.5,
            label=name,
        )
        stds = [results["spectra"][name][str(d)]["std_sq"] for d in depths]
        maxs = [results["spectra"][name][str(d)]["max"] for d in depths]
        axes[1].plot(depths, maxs, "o-", label=name)
        axes[2].plot(depths, stds, "o-", label=name)
    axes[0].set_xlabel("log10 singular value (zeros shown at -8)")
    axes[0].set_title(f"Jacobian singular values, depth {deepest}")
    axes[1].set_title("largest singular value vs depth")
    axes[2].set_title("std of squared singular values vs depth")
    for ax in axes[1:]:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth")
    axes[0].legend(fontsize=8)
    cfg = results["config"]
    fig.suptitle(
        f"width {cfg['width']}; tanh at sigma_w = {cfg['tanh_sigma_w']:.4f}, sigma_b = "
        f"{cfg['tanh_sigma_b']} (q* = {cfg['tanh_q_star']:.3g}); ReLU at sigma_w = sqrt(2)"
    )
    fig.tight_layout()
    fig.savefig(out / "isometry.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
