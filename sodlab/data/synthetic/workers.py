"""Writing images: `_write_chunk` renders and saves a task's benchmark images, and
`run_tasks` runs tasks of any such writer (the pre-training corpus has its own) in worker
processes (fresh interpreters, see `_WORKER_CODE`), relaying each image written back to the
parent's progress bar."""
from __future__ import annotations

import importlib
import json
import logging
import math
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np
from PIL import Image

from ...atomic import finish_cleanup
from .params import SynthParams, image_rng, image_stem
from .render import _Assets, render

log = logging.getLogger(__name__)

Item = TypeVar("Item")
# A writer: (parameters as JSON, output folder, split, items, on_image) -> images written. It
# must be a module-level function: worker processes import it by module and name.
Writer = Callable[..., int]


def save_image(image: np.ndarray, stem: Path, image_format: str) -> None:
    """Write ``image`` to ``stem``.jpg (quality 92) or ``stem``.png."""
    if image_format == "jpg":
        Image.fromarray(image).save(stem.with_name(stem.name + ".jpg"), format="JPEG", quality=92)
    else:
        Image.fromarray(image).save(stem.with_name(stem.name + ".png"), format="PNG")


def _write_chunk(pj: dict[str, Any], out: str, split: str, items: Sequence[tuple[int, str]],
                 on_image: Optional[Callable[[], None]] = None) -> int:
    """Render and write the images ``items`` (index, category) of ``split``; returns how many
    were written."""
    params = SynthParams(**{**pj, "categories": tuple(pj["categories"]), "photos": tuple(pj["photos"])})
    assets = _Assets(params.photos)
    root = Path(out) / split
    for index, category in items:
        image, mask = render(assets, params, category, image_rng(params.seed, split, index))
        stem = image_stem(split, index)
        save_image(image, root / "images" / stem, params.image_format)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "GT" / f"{stem}.png", format="PNG")
        if on_image is not None:
            on_image()
    return len(items)


# A worker is a fresh interpreter running this, not a multiprocessing child: multiprocessing
# (spawn) re-runs the caller's main script in every worker, so a script calling generate()
# without the `if __name__ == "__main__":` guard printed its output again and failed in each
# worker. Ctrl-C reaches every process of the terminal's group: the workers ignore it and the
# parent stops them, so that none is left writing into a folder the parent removes.
# `python -c` puts the working folder first on sys.path: the worker replaces it with the folder
# this sodlab lives in, so that it never imports another sodlab that happens to be there.
_WORKER_CODE = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "import sys; sys.path[0] = {root!r}\n"
                "from sodlab.data.synthetic.workers import _worker_main; _worker_main()\n")


def _worker_main() -> None:
    """Body of a worker process: reads its job (JSON) from stdin, writes its tasks, and prints
    the key of the task of every image written."""
    job = json.load(sys.stdin)
    module, name = job["writer"].split(":")
    writer = getattr(importlib.import_module(module), name)
    for key, split, items in job["tasks"]:
        writer(job["params"], job["out"], split, items, on_image=lambda: print(key, flush=True))


def _start_worker() -> tuple[subprocess.Popen, Any]:
    code = _WORKER_CODE.format(root=str(Path(__file__).resolve().parents[3]))
    err = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=err, text=True, encoding="utf-8")
    return proc, err


def _relay(proc: subprocess.Popen, job: str, events: queue.Queue) -> None:
    """Send ``job`` to a worker, then pass on the task key of each image it writes and finally
    None (always: the parent counts the workers that are done)."""
    try:
        try:
            proc.stdin.write(job)
            proc.stdin.close()
        except OSError:  # the worker died at once; its exit code tells the parent
            pass
        for line in proc.stdout:
            if line.strip().isdigit():  # anything else a library prints is not ours
                events.put(int(line))
    finally:
        events.put(None)

@contextmanager
def sigint_held() -> Iterator[None]:
    """Ctrl-C held back during the block, then delivered (KeyboardInterrupt raised at its
    end), for steps that must not be cut in two: starting a worker and listing it for the
    cleanup, or swapping a finished folder into place. A Python handler rather than a blocked
    signal mask: the kernel hands a signal blocked in the main thread to any other thread (a
    relay thread, torch's), whose C handler still makes Python raise in the main thread."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or threading.current_thread() is not threading.main_thread():
        yield  # a handler set outside Python cannot be restored; other threads never see Ctrl-C
        return
    caught: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def split_into_tasks(splits: Sequence[tuple[str, list[Item]]], workers: int, max_chunk: int) -> list[tuple[str, list[Item]]]:
    """(split, items) tasks: about four per worker, of 32 to ``max_chunk`` items (each task
    loads the photographs and templates once)."""
    total = sum(len(items) for _, items in splits)
    chunk = min(max_chunk, max(32, math.ceil(total / (4 * max(1, workers)))))
    return [(split, items[k:k + chunk]) for split, items in splits for k in range(0, len(items), chunk)]


def run_tasks(pj: dict[str, Any], out: str, tasks: list[tuple[str, list]], workers: int, progress: bool, desc: str,
              writer: Writer = _write_chunk) -> None:
    """Write ``tasks`` with ``writer``, in ``workers`` processes when there are more than one
    (and more than one task), with a progress bar; this process writes what a failed worker
    left."""
    from tqdm import tqdm

    total = sum(len(items) for _, items in tasks)
    with tqdm(total=total, unit="img", desc=desc, disable=not progress) as bar:
        left = dict(enumerate(tasks))
        if workers > 1 and len(tasks) > 1 and sys.executable:
            _write_in_processes(pj, out, left, min(workers, len(tasks)), bar, writer, desc)
        for k in sorted(left):
            bar.update(writer(pj, out, *left.pop(k)))


def _write_in_processes(pj: dict[str, Any], out: str, left: dict[int, tuple[str, list]], workers: int, bar: Any,
                        writer: Writer, desc: str) -> None:
    """Write the tasks (split, items) in ``left`` in worker processes, removing each one
    written. Tasks of a worker that failed stay in ``left`` for the caller, with a warning."""
    keys = sorted(left)
    done = dict.fromkeys(keys, 0)
    events: queue.Queue = queue.Queue()
    started: list[tuple[subprocess.Popen, Any, threading.Thread]] = []
    try:
        with sigint_held():
            for w in range(workers):
                mine = keys[w::workers]
                job = {"params": pj, "out": out, "writer": f"{writer.__module__}:{writer.__name__}",
                       "tasks": [[k, *left[k]] for k in mine]}
                proc, err = _start_worker()
                relay = threading.Thread(target=_relay, args=(proc, json.dumps(job), events), daemon=True)
                started.append((proc, err, relay))
                relay.start()
        running = len(started)
        while running:
            try:
                key = events.get(timeout=0.5)  # a timeout keeps Ctrl-C deliverable on every platform
            except queue.Empty:
                continue
            if key is None:
                running -= 1
                continue
            done[key] += 1
            bar.update(1)
            if done[key] == len(left[key][1]):
                del left[key]
        if left:
            failed = []
            for proc, err, _ in started:
                if proc.wait() != 0:
                    err.seek(0)
                    lines = [ln for ln in err.read().splitlines() if ln.strip()]
                    failed.append(f"exit code {proc.returncode}" + (f": {lines[-1].strip()}" if lines else ""))
            partial = sum(done[k] for k in left)
            bar.update(-partial)  # those tasks are written again, whole
            log.warning("%s: %s; writing the remaining %d images in this process", desc,
                        "a worker process failed (" + "; ".join(failed) + ")" if failed else "the worker processes stopped early",
                        sum(len(items) for _, items in left.values()))
    finally:  # Ctrl-C or an error: stop the workers before the caller removes their folder
        finish_cleanup(lambda: _stop(started))


def _stop(started: list[tuple[subprocess.Popen, Any, threading.Thread]]) -> None:
    for proc, _, _ in started:
        if proc.poll() is None:
            proc.kill()
    for proc, err, relay in started:
        proc.wait()
        relay.join()  # it reads the pipe to its end, which has come with the process
        for f in (proc.stdin, proc.stdout, err):
            f.close()

