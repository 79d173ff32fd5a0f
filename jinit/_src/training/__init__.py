"""Training: the train step and its guard, the compiled programs, fit, seed sweeps."""
