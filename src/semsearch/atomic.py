"""Writing a file so that a reader, or a crash, never sees half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Creates path's folder, calls write(tmp) on a temporary file beside path, then renames
    it over path; the temporary file is removed if anything fails. Its name carries this
    process's id, so one left by a killed process can be recognised and removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def process_alive(pid: int) -> bool:
    """Gives whether a process of this id runs on this machine (any user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Deletes the temporary files write_atomically left in folder when its process was
    killed (their process is gone); gives how many went. Process ids are this machine's:
    the folder is meant to be local, beside its catalogue."""
    removed = 0
    for tmp in folder.glob("*.tmp") if folder.is_dir() else ():
        parts = tmp.name[:-len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[1].isdigit() and not process_alive(int(parts[1])):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _umask() -> int:
    # Read without changing it (os.umask sets it, which races with other threads).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Writes data to path atomically, with the permissions a newly created file gets."""

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)
        os.chmod(tmp, 0o666 & ~_umask())

    write_atomically(path, write)
