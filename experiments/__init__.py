"""The studies: thin scripts over jinit, with their data readers, models and plots."""

import os
import sys

_FLAG = "--xla_force_host_platform_device_count"


def default_host_devices() -> int:
    """One XLA CPU device per core, at most 4 (padding a sweep to more devices wastes work)."""
    return max(1, min(os.cpu_count() or 1, 4))


def use_host_devices_from_argv(argv=None, default: int | None = None) -> None:
    """``--host-devices N`` (else ``default``) -> N XLA CPU devices; call before importing jax.

    A seed sweep shards its model axis over all devices; on a CPU, N host devices let N cores
    train different models in parallel (XLA gives these small models little parallelism within
    one device). XLA reads the flag once, when jax starts; an ``XLA_FLAGS`` that already sets
    the device count wins over ``default``. GPU and TPU devices are not affected.
    """
    argv = sys.argv if argv is None else argv
    flags = os.environ.get("XLA_FLAGS", "")
    if "--host-devices" in argv:
        n = int(argv[argv.index("--host-devices") + 1])
    elif default is not None and _FLAG not in flags:
        n = default
    else:
        return
    if n >= 1:
        os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()
