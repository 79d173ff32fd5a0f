"""The studies: thin scripts over jinit, with their data readers, models and plots."""

import os
import sys


def use_host_devices_from_argv(argv=None) -> None:
    """``--host-devices N`` on the command line -> N XLA CPU devices (before jax is imported).

    A seed sweep shards its model axis over all devices; on a CPU, N host devices let N cores
    train different models in parallel. XLA reads the flag once, when jax starts.
    """
    argv = sys.argv if argv is None else argv
    if "--host-devices" in argv:
        n = int(argv[argv.index("--host-devices") + 1])
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
