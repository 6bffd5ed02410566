"""How a worker process starts: ``python -m pytest_gold.worker FD TAG LAUNCHED_NS ENGINE_PID``.

It ties its life to its engine's, waits for its :class:`~pytest_gold.protocol.control.StartRun`
(a worker started ahead of its run waits long), checks that it speaks the supervisor's
protocol version and that nothing it imported changed meanwhile, and runs the pytest
session of :mod:`pytest_gold.worker.runner`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection

import pytest

import pytest_gold.protocol.xdistcompat as xdistcompat
from pytest_gold.protocol.collecting import CollectionPruner, pinned_arguments
from pytest_gold.protocol.control import (
    PROTOCOL_VERSION,
    STACK_DUMP_SIGNAL,
    Channel,
    Exited,
    Stale,
    StartRun,
    WrongProtocol,
    decode,
)
from pytest_gold.worker.freshness import changed_since, loaded_module_times
from pytest_gold.worker.runner import WorkerPlugin


def _die_with_parent(parent: int | None) -> None:
    """Linux: the kernel kills this worker when its engine dies (a lost engine must not
    leave its case running). Elsewhere the socket's end does it, at the next message.

    The engine may have died while this process was still importing, before it could ask
    for that: then its parent is no longer ``parent``, and it ends at once.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(0)


#: prctl option number, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def main() -> int:
    fd, engine_tag = int(sys.argv[1]), sys.argv[2]
    # When the supervisor started this process, before anything was imported.
    launched_ns = int(sys.argv[3]) if len(sys.argv) > 3 else time.time_ns()
    _die_with_parent(int(sys.argv[4]) if len(sys.argv) > 4 else None)
    # The worker's own stderr (a log file the supervisor reads) stays reachable even while
    # pytest captures fd 2: stack dumps on a timeout go there.
    stack_file = os.fdopen(os.dup(2), "w")
    faulthandler.register(STACK_DUMP_SIGNAL, file=stack_file, all_threads=True)
    channel = Channel(Connection(socket.socket(fileno=fd).detach()))
    imported = loaded_module_times()
    # A worker may be started ahead of its run (a standby); the spec comes when it does.
    start = channel.recv_data()
    if start.get("protocol") != PROTOCOL_VERSION:
        # Looked at before decoding: what else the message holds may differ too.
        channel.send(WrongProtocol(protocol=PROTOCOL_VERSION))
        return 0
    message = decode(start)
    assert isinstance(message, StartRun)
    spec = message.spec
    if changed_since(imported, launched_ns):
        channel.send(Stale())
        return 0
    xdistcompat.set_worker_environment(spec)
    plugin = WorkerPlugin(spec, channel, engine_tag)
    plugin.log_fd = stack_file.fileno()
    signal.signal(signal.SIGINT, plugin.on_interrupt)
    pruner = CollectionPruner(spec.collect_paths)
    args = pinned_arguments(spec.args, spec.rootdir, spec.inifile)
    status = pytest.main(args, plugins=[plugin, plugin.quiet_terminal, pruner])
    channel.send(Exited(status=int(status)))
    return 0
