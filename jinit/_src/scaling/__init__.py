"""Width- and depth-aware initialization: muP parametrizations, transformer presets, coord checks."""
