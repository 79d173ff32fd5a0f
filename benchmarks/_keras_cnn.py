"""The CIFAR-10 CNN's Keras (TensorFlow CPU) train step, timed; prints one JSON line.

Run by ``benchmarks/train_throughput.py`` in a separate process (``--keras-python``), so that
TensorFlow can live in its own environment (it is not a jinit dependency) and its thread pools
never share a process with XLA's. Imports only numpy and tensorflow.

    python benchmarks/_keras_cnn.py --steps 50 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def keras_case(steps: int, repeats: int, batch: int) -> dict:
    import tensorflow as tf

    k = tf.keras
    model = k.Sequential(
        [
            k.layers.Input((32, 32, 3)),
            k.layers.Conv2D(32, 3, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Conv2D(64, 3, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Flatten(),
            k.layers.Dense(64, activation="relu"),
            k.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=k.optimizers.Adam(1e-3),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.rand(steps * batch, 32, 32, 3).astype(np.float32)
    y = np.random.randint(0, 10, steps * batch)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # build + trace
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        times.append(time.perf_counter() - t)
    rate = steps / statistics.median(times)
    return {
        "images_per_s": rate * batch,
        "step_ms": 1e3 / rate,
        "times_s": times,
        "version": tf.__version__,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args()
    print(json.dumps(keras_case(a.steps, a.repeats, a.batch)))
