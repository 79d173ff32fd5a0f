"""What the paper reproductions share: the data, one-program training of many models, and claims.

Every reproduction states its claims and their pass/fail criteria in code *before* it runs
(a ``Claim`` is built from the criterion's text and a predicate), trains or measures all its
seeds in vmapped programs, and writes ``results.json`` with one entry per claim: the measured
value, the value per seed, and the verdict. A claim passes only if it holds for every seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `python experiments/papers/x.py` puts only its folder on the path
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jinit  # noqa: E402
from experiments import common  # noqa: E402

LN10 = float(np.log(10.0))


# --------------------------------------------------------------------------------------- data


def digits(test_fraction: float = 0.2, split_seed: int = 0, standardize: bool = True):
    """scikit-learn's ``load_digits`` (1,797 real 8x8 digits, 64 features, 10 classes).

    A fixed stratified split; pixels scaled to [0, 1] and, with ``standardize``, centred and
    scaled per pixel with training-set statistics (the unit-variance input the init papers
    assume). Returns ``(train, test)`` dicts of ``x`` float32 ``(n, 64)`` and ``y`` int32.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=test_fraction, random_state=split_seed, stratify=d.target
    )
    if standardize:
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    as_set = lambda a, b: {"x": jnp.asarray(a, jnp.float32), "y": jnp.asarray(b, jnp.int32)}
    return as_set(xtr, ytr), as_set(xte, yte)


def digits_source() -> dict[str, Any]:
    return {"source": "sklearn.datasets.load_digits", "examples": 1797, "features": 64}


# ----------------------------------------------------------------------------------- training


def minibatch_indices(seeds: Sequence[int], steps: int, batch_size: int, n: int) -> jax.Array:
    """``(len(seeds), steps, batch_size)`` example indices; the seed alone fixes the order.

    Arms of one seed get the same minibatches (tile this over arms), so inits are compared
    paired, seed by seed.
    """
    keys = jnp.stack([jax.random.fold_in(jax.random.key(int(s)), 1) for s in seeds])
    return jax.vmap(lambda k: jax.random.randint(k, (steps, batch_size), 0, n))(keys)


def init_keys(seeds: Sequence[int]) -> jax.Array:
    """One init key per seed (``fold_in(key(seed), 0)``), as the studies use."""
    return jnp.stack([jax.random.fold_in(jax.random.key(int(s)), 0) for s in seeds])


def softmax_loss(apply_fn: Callable) -> Callable:
    """``loss_fn(params, batch) -> (mean cross-entropy, {"accuracy"})`` for integer labels."""

    def loss_fn(params, batch):
        logits = apply_fn(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    return loss_fn


def train_models(
    loss_fn: Callable,
    params: Any,
    train: dict,
    idx: jax.Array,
    optimizer: optax.GradientTransformation,
    test: dict | None = None,
) -> dict[str, np.ndarray]:
    """Trains M models (leading axis of every ``params`` leaf) as ONE jitted, vmapped program.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux dict)`` for one model.
      params: pytree, every leaf ``(M, ...)``.
      train: the whole training set (pytree, example axis first), shared by all models.
      idx: int ``(M, steps, batch_size)`` minibatch indices per model.
      optimizer: an optax transformation (same for all models).
      test: optional held-out set, evaluated once at the end on the whole set.

    Returns numpy arrays: ``loss`` and every aux metric ``(M, steps)`` (per-step training values,
    non-finite where a model diverged), ``params`` (the trained stack, as jax arrays), and with
    ``test`` also ``test_loss`` / ``test_<metric>`` ``(M,)``; ``train_s`` the wall time.
    """
    chunk = jinit.make_train_chunk(loss_fn, optimizer)

    @jax.jit
    def run(params, idx):
        state = jax.vmap(lambda p: jinit.init_state(p, optimizer))(params)
        state, metrics = jax.vmap(chunk, in_axes=(0, None, 0))(state, train, idx)
        out = dict(metrics)
        if test is not None:
            tl, tm = jax.vmap(loss_fn, in_axes=(0, None))(state.params, test)
            out["test_loss"] = tl
            out.update({f"test_{k}": v for k, v in tm.items()})
        return state.params, out

    t0 = time.perf_counter()
    new_params, out = jax.block_until_ready(run(params, idx))
    result = {k: np.asarray(v) for k, v in out.items()}
    result["params"] = new_params
    result["train_s"] = time.perf_counter() - t0
    return result


def init_mlp(key: jax.Array, sizes: Sequence[int], kernel_init: Callable) -> list[dict]:
    """A plain MLP's params: ``[{"w": (sizes[i], sizes[i+1]), "b": zeros}]``, float32.

    One key per layer from ``jax.random.split(key, len(sizes) - 1)``; biases start at 0.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": kernel_init(k, (a, b), jnp.float32), "b": jnp.zeros((b,), jnp.float32)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def stack(trees: Sequence[Any]) -> Any:
    """Concatenates model stacks (leading axis) of the same structure: arms after arms."""
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def smooth(curves: np.ndarray, window: int) -> np.ndarray:
    """Mean over consecutive windows of the last axis (a step curve -> a logged curve)."""
    n = curves.shape[-1] // window * window
    return curves[..., :n].reshape(*curves.shape[:-1], -1, window).mean(-1)


# ------------------------------------------------------------------------------------ claims


@dataclasses.dataclass
class Claim:
    """One claim of a paper and the criterion fixed before the run.

    ``criterion`` is the rule in words; the script computes ``per_seed`` (one bool per seed, or
    one value for seed-free measurements) and ``measured`` (a short human-readable value).
    """

    id: str
    paper: str
    claim: str
    setup: str
    criterion: str
    figure: str = ""
    measured: str = ""
    per_seed: list = dataclasses.field(default_factory=list)
    details: dict = dataclasses.field(default_factory=dict)
    passed: bool | None = None

    def judge(self, per_seed_pass: Sequence[bool], measured: str, **details) -> Claim:
        """Records the verdict: PASS only if the criterion held for every seed."""
        self.per_seed = [bool(x) for x in np.atleast_1d(per_seed_pass)]
        self.passed = bool(len(self.per_seed) > 0 and all(self.per_seed))
        self.measured = measured
        self.details.update(details)
        return self

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "NOT RUN"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "verdict": self.verdict}


def parser(description: str, name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out", type=common.writable_dir, default=f"runs/papers/{name}", help="output directory"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run (seconds; verdicts not meaningful)"
    )
    return p


def finish(
    out: str | pathlib.Path,
    name: str,
    claims: Sequence[Claim],
    config: Any,
    started: float,
    quick: bool,
    **extra: Any,
) -> dict[str, Any]:
    """Writes ``results.json`` (atomically) and prints one line per claim; returns the results."""
    out = pathlib.Path(out)
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    results = {
        "reproduction": name,
        "quick": bool(quick),
        "config": cfg,
        "claims": [c.as_dict() for c in claims],
        "verdict": "PASS" if all(c.passed for c in claims) else "FAIL",
        "wall_time_s": time.perf_counter() - started,
        "environment": common.environment(),
        **extra,
    }
    common.write_json_atomic(out / "results.json", strict_json(results))
    for c in claims:
        print(f"[{c.verdict}] {c.id}: {c.measured}")
    print(f"{name}: {results['verdict']} in {results['wall_time_s']:.1f} s; results in {out}")
    if quick:
        print("(a --quick smoke run: too small for the criteria, so its verdicts mean nothing)")
    return results


def strict_json(obj: Any) -> Any:
    """``obj`` with arrays as lists and NaN/inf as ``None``: strict JSON (diverged runs)."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return strict_json(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def pyplot():
    """matplotlib's pyplot on the Agg backend (the core never imports plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | pathlib.Path) -> str:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path.name
