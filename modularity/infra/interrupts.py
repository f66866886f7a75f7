"""Ctrl-C and SIGTERM stop a command-line run in any phase, with one line and status 130.

Both signals raise ``KeyboardInterrupt`` at the next Python step of whatever runs (data
preparation, tokenisation, collection, k-means, writing). Python drops an exception raised
inside a finaliser (a ``__del__`` or weakref callback, which garbage collection runs
between any two steps) after printing it, so a single signal can be lost: until the entry
point reports the interrupt (:func:`exit_interrupted`), it is raised again every
``REPEAT_SECONDS``.
"""

from __future__ import annotations

import _thread
import ctypes
import signal
import sys
import threading
from typing import Any, NoReturn

INTERRUPTED = "interrupted; nothing cached was lost (finished statistics stay cached)"
REPEAT_SECONDS = 2.0
_EVAL_INPUT = 258  # Py_eval_input: PyRun_String evaluates one expression

_received = threading.Event()
_reported = threading.Event()


def _raise_again(signum: int) -> None:
    """Signal the main thread again (a real signal also cuts short a sleep or a read)."""
    main = threading.main_thread().ident
    while not _reported.wait(REPEAT_SECONDS):
        if hasattr(signal, "pthread_kill") and main is not None:
            signal.pthread_kill(main, signum)
        else:
            _thread.interrupt_main(signum)


def _on_signal(signum: int, frame: Any) -> None:
    if _reported.is_set():  # already on the way out
        return
    if not _received.is_set():
        _received.set()
        threading.Thread(target=_raise_again, args=(signum,), daemon=True).start()
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` (main thread only). Lightning's
    loops keep this handler beside their own, which only records a SIGTERM, and
    :func:`modularity.infra.trainer.run_loop` keeps the interrupt a ``KeyboardInterrupt``."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _forget_escaped_interrupts() -> None:
    """Keep the exit status 130 once the interrupt is handled.

    CPython remembers, in a process-wide flag, a ``KeyboardInterrupt`` that escaped any
    ``PyRun_String`` call (which C extensions use to run snippets); under ``python -m`` it
    then ends the process by SIGINT whatever status ``sys.exit`` gave, even after the
    interrupt was caught. Each ``PyRun_String`` call clears the flag first, so a harmless
    one clears it (there is no public API for it).
    """
    # A prototype of our own: setting argtypes on ``ctypes.pythonapi.PyRun_String`` would
    # change it for every other user of that shared function object.
    prototype = ctypes.PYFUNCTYPE(
        ctypes.py_object, ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object
    )
    try:
        run_string = prototype(("PyRun_String", ctypes.pythonapi))
    except AttributeError:  # not CPython: no such flag
        return
    run_string(b"None", _EVAL_INPUT, {}, {})


def exit_interrupted(detail: str = "") -> NoReturn:
    """Print the one line of an interrupted run (``detail`` appended) and exit with 130."""
    _reported.set()
    _forget_escaped_interrupts()
    print(f"error: {INTERRUPTED}{detail}", file=sys.stderr)
    sys.exit(130)
