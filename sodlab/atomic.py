"""Writing files whole or not at all: every file sodlab writes goes through `atomic_path`."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def finish_cleanup(cleanup: Callable[[], None]) -> None:
    """Run an idempotent ``cleanup`` to its end even if Ctrl-C comes again meanwhile (an
    impatient user; `timeout -s INT` signals the process and then its whole group, i.e. twice),
    then raise that KeyboardInterrupt. A cleanup cut short leaves half a folder behind, or a
    worker process writing into one."""
    interrupted = False
    while True:
        try:
            cleanup()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed over ``path`` only when the block
    succeeds, so readers never see a half-written file and an interrupted run leaves nothing
    behind. The temporary file keeps the target's suffix (libraries that infer the format
    from it keep working). ``fsync`` flushes the data to disk before the rename (checkpoints:
    a power cut must not leave an empty file where the last good one was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the permissions a plain open()
        # would have.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        finish_cleanup(lambda: os.path.exists(tmp) and os.unlink(tmp))


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
