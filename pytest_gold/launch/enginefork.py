"""The embedded cluster's engine launcher: all engines forked from one zygote process.

ipyparallel's local launcher starts each engine as a Python process of its own, which
imports ipyparallel, ipykernel, IPython and zmq again (about 0.3 s of CPU time each).
This launcher is ipyparallel's MPI engine-set launcher (one command for the whole set)
with :mod:`pytest_gold.launch.enginezygote` in place of ``mpiexec``: one process that
imports them once and forks the engines. The set is one process group (the zygote's
session), which is what :class:`pytest_gold.launch.cluster.ClusterHandle` kills at close.
"""

from __future__ import annotations

import sys
from typing import Any

from ipyparallel.cluster.launcher import LocalProcessLauncher, MPIEngineSetLauncher
from traitlets import List


class ForkingEngineSetLauncher(MPIEngineSetLauncher):  # type: ignore[misc]
    """Start N engines as ``python -m pytest_gold.launch.enginezygote -n N PYTHON -m
    ipyparallel.engine ARGS``: forked, not each started anew."""

    mpi_cmd = List(
        [sys.executable, "-m", "pytest_gold.launch.enginezygote"],
        config=True,
        help="The zygote command (in place of mpiexec).",
    )

    @property
    def program(self) -> list[str]:
        # The engine command as the local launcher has it: no --mpi (no MPI here).
        return list(self.engine_cmd)

    def _log_output(self, stop_data: Any = None) -> None:
        # The base class looks for mpiexec's own error blocks in the output; the
        # zygote writes none, so the engines' output is logged as a local launcher's is.
        LocalProcessLauncher._log_output(self, stop_data)
