"""jinit: weight initialization for JAX and Flax.

Public names are re-exported here; the logic lives in ``jinit._src``.
"""

# --- initializers (jinit/_src/initializers*.py) ---

# --- LSUV and data-dependent initialization (jinit/_src/lsuv*.py) ---

# --- training loops and seed sweeps (jinit/_src/train.py, jinit/_src/sweep.py) ---

# --- diagnostics and theory (jinit/_src/diagnostics.py, jinit/_src/theory.py) ---

__version__ = "0.1.0"
