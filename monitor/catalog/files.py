"""Reading a file the operator names (the catalog, a `<NAME>_FILE` key file) with bounds.

Only a regular file is read (a symlink to one is fine): a device such as `/dev/zero` or a FIFO
is refused before any byte is read, and it is opened non-blocking so a FIFO cannot hang the
caller. At most `limit + 1` bytes are read, so a file over the limit is refused without reading
it whole. Blocking file I/O only: safe to call from a worker thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileRefused(Exception):
    """The file cannot be used; `str()` says why in a few words (never its content)."""


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The file's bytes; FileRefused when it is not a regular file or holds more than `limit`.

    OSError (missing file, no permission, a directory) propagates for the caller to word.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(mode):
            raise FileRefused("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileRefused(f"larger than the limit of {limit:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
