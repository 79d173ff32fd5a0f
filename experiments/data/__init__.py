"""Input pipelines of the studies: the real datasets, read in place, never partial."""

from __future__ import annotations

import os
import pathlib
import tarfile
import zlib
from collections.abc import Callable, Iterator


def repo_data_dir() -> pathlib.Path | None:
    """The data folder a study uses when ``--data-dir`` is not given.

    ``$JINIT_DATA_DIR`` if set, else ``shared/data`` beside the repository (where this
    project's archives are kept) if it exists, else ``None``: the loaders' own default
    (``~/.cache/jinit/data``, then a tensorflow-datasets download).
    """
    if os.environ.get("JINIT_DATA_DIR"):
        return pathlib.Path(os.environ["JINIT_DATA_DIR"])
    shared = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return shared if shared.is_dir() else None


class DataNotFoundError(FileNotFoundError):
    """No local copy of a dataset (or a given folder that does not exist), and no download."""


class CorruptDataError(ValueError):
    """A local copy is truncated, corrupt or incomplete; the message names the file."""


def read_tar(source: pathlib.Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yields ``(name, bytes)`` of the wanted regular members of a (compressed) tar archive.

    tarfile alone takes a truncated or garbled header for the end of the archive; here the
    archive must end in its end-of-archive zero blocks, and a compressed stream is read to its
    end, so that its checksum is verified.

    Raises:
      CorruptDataError: naming ``source``, what was wrong and the last member read.
    """
    last = None
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if member.isfile() and wanted(member.name):
                    data = tar.extractfile(member).read()
                    if len(data) != member.size:
                        raise EOFError(f"{member.name!r} holds {len(data)} of {member.size} bytes")
                    last = member.name
                    yield member.name, data
            # The block that stopped tarfile and everything after it must be zeros (>= 2 blocks).
            stop = tar.offset
            tail = tar.fileobj.tell() - stop
            while chunk := tar.fileobj.read(1 << 20):
                tail += len(chunk)
                if chunk.count(0) != len(chunk):
                    raise EOFError(f"unreadable tar header at byte {stop} (garbled data)")
            if tail < 2 * tarfile.BLOCKSIZE:
                raise EOFError(f"the archive ends at byte {stop} without its end-of-archive blocks")
    except (EOFError, tarfile.TarError, zlib.error, OSError) as e:
        where = f"after member {last!r}" if last else "before the first wanted member"
        raise CorruptDataError(
            f"{source}: truncated or corrupt archive ({type(e).__name__}: {e}; {where}); "
            "download it again"
        ) from e
