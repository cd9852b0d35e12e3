"""Keep the garbage collector off the objects a process starts with.

CPython's full collection walks every tracked object, and it runs whenever the objects that
survived younger collections reach a quarter of the older ones. A pass creates many
survivors (documents, rendered resources, state rows), so a push of 500 series set off
full collections over the ~150,000 objects the imports, the configuration and the CRM's
documents had left behind: about 80 ms of the pass's 0.3 s outside HTTP on Radicale
(``benchmarks.bench_sync --n 500``; timed per function, ``gc.freeze`` before the pass took
the write intents' transaction from 96 ms to 18 ms).

``gc.freeze`` moves what exists now to the permanent generation, which no collection
visits; it is a list splice, not a collection. Done once per process, at its first pass,
when the imports are in: what it keeps forever is what the process started with, never
what a pass leaves behind.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_startup_objects() -> None:
    """Freeze the objects alive now, the first time this is called in a process.

    Later calls (every later pass) do nothing, so the garbage of a pass is collected as
    always; the lock keeps two passes starting at once on the daemon's threads from both
    freezing.
    """
    global _frozen
    with _lock:
        if not _frozen:
            gc.freeze()
            _frozen = True
