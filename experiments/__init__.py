"""The studies: thin scripts over jinit, with their data readers, models and plots."""

import dataclasses
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
    given = _flag_value(argv, "--host-devices")
    if given is not None:
        try:
            n = int(given)
        except ValueError:
            return  # argparse rejects it, naming --host-devices
    elif default is not None and _FLAG not in flags:
        n = default
    else:
        return
    if n >= 1:  # argparse rejects n < 1 when the script parses its arguments
        os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()


def _flag_value(argv, flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag N`` or ``--flag=N``; the last one wins, as
    in argparse), else ``None``."""
    value = None
    for i, a in enumerate(argv):
        if a == flag:
            value = argv[i + 1] if i + 1 < len(argv) else ""  # "": argparse reports it
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
    return value


def with_overrides(cfg, quick_values: dict, quick: bool, **explicit):
    """A study's config (a dataclass) with its ``--quick`` values applied if ``quick``, then
    every explicit value that is not ``None`` (a flag the user gave wins over ``--quick``)."""
    if quick:
        cfg = dataclasses.replace(cfg, **quick_values)
    given = {k: v for k, v in explicit.items() if v is not None}
    return dataclasses.replace(cfg, **given) if given else cfg
