"""The controller's garbage collector over a large run's heap.

A run of N cases keeps its N items, and every replayed report and JUnit XML element, to
the end. Python's collector scans every tracked object in each full collection, and at
the interpreter's exit it makes full collections over all of them once more: at 10^6
cases that took minutes after the run had ended. What lives on is moved out of its sight
(``gc.freeze``) after a collection, so that whatever is garbage by then is collected (and
finalized) as before.
"""

from __future__ import annotations

import atexit
import gc

_state = {"frozen": False, "exit_registered": False}


def freeze_survivors() -> None:
    """Collect what is garbage now, then leave what is left out of later collections."""
    gc.collect()
    gc.freeze()


def freeze_run() -> None:
    """A run starts with its collected items: they live to its end."""
    freeze_survivors()
    _state["frozen"] = True


def thaw_and_freeze_at_exit() -> None:
    """The run is over: its objects are the collector's again (pytest may run again in
    this process, as pytester does), and the heap is frozen when the interpreter exits,
    before its own collections (atexit runs this before the handlers registered earlier:
    the last in runs first).

    A config cleanup that runs after pytest's own (its unraisable-exception plugin makes
    full collections at the end of a session, which on a thawed heap walk every module
    the run imported: 0.5 to 1 s on a 12-engine run's busy end). Objects of the frozen
    heap that became cyclic garbage during the run are collected at the exit instead;
    they are the controller's own (the cases run on the engines)."""
    if not _state["frozen"]:
        return
    _state["frozen"] = False
    gc.unfreeze()
    if not _state["exit_registered"]:
        _state["exit_registered"] = True
        atexit.register(freeze_survivors)
