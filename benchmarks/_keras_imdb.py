"""The seed's Keras IMDB study on given token arrays, timed; prints one JSON line.

Run by ``benchmarks/imdb_keras.py`` in a separate process (``--keras-python``), so TensorFlow
lives in its own environment (it is never a jinit dependency). Imports only numpy and
tensorflow. The study: Embedding(10000, 32, embeddings_initializer=init) -> SimpleRNN(32) ->
Dense(1, sigmoid); Adam(1e-3), binary cross-entropy, batch 32, 5 epochs,
``validation_split=0.2``; test accuracy on the 25,000 test reviews. One model per initializer,
one after the other, as the seed script does.

    python benchmarks/_keras_imdb.py --arrays imdb.npz --inits uniform,glorot_uniform,he_normal
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

KERAS_INITS = {
    "uniform": ("RandomUniform", {"minval": -0.05, "maxval": 0.05}),
    "glorot_uniform": ("GlorotUniform", {}),
    "he_normal": ("HeNormal", {}),
    "orthogonal": ("Orthogonal", {}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arrays", required=True, help="npz with x_train, y_train, x_test, y_test")
    p.add_argument("--inits", default="uniform,glorot_uniform,he_normal")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0 = time.perf_counter()
    import tensorflow as tf

    k = tf.keras
    d = np.load(args.arrays)
    rows = {}
    for name in args.inits.split(","):
        t = time.perf_counter()
        k.utils.set_random_seed(args.seed)
        cls, kw = KERAS_INITS[name]
        model = k.Sequential(
            [
                k.layers.Input((d["x_train"].shape[1],), dtype="int32"),
                k.layers.Embedding(
                    10_000, 32, embeddings_initializer=getattr(k.initializers, cls)(**kw)
                ),
                k.layers.SimpleRNN(32),
                k.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(
            optimizer=k.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"]
        )
        hist = model.fit(
            d["x_train"],
            d["y_train"],
            batch_size=32,
            epochs=args.epochs,
            validation_split=0.2,
            verbose=0,
        )
        _, test_acc = model.evaluate(d["x_test"], d["y_test"], batch_size=1000, verbose=0)
        rows[name] = {
            "wall_s": time.perf_counter() - t,
            "val_accuracy": [float(v) for v in hist.history["val_accuracy"]],
            "test_accuracy": float(test_acc),
        }
    out = {"tensorflow": tf.__version__, "total_s": time.perf_counter() - t0, "inits": rows}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
