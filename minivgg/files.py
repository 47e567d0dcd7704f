"""Writing files so that a crash or Ctrl-C never leaves a half-written one.

``atomic_write`` writes to a temporary name in the target's folder and renames it into place with
``os.replace`` (atomic on POSIX and Windows within one file system): readers see the old file or
the complete new one, never a part. Relies on nothing but the standard library.
"""
import os
import secrets
from pathlib import Path


def atomic_write(path, data):
    """Write the bytes ``data`` to ``path`` through a temporary file and a rename; returns a Path.

    The new file gets the permissions any new file gets (the umask decides). The temporary file
    is removed on any failure, KeyboardInterrupt included, even one that arrives the moment after
    the file is made (the open is inside the ``try``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except FileExistsError:
        raise                          # not ours to remove
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
