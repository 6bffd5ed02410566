"""Timeouts and poll intervals shared by the controller, the supervisors and the workers.

One named constant per purpose: each side waits on the other, so the limits are set
here together (a supervisor's wait must fit in the controller's, a worker's grace in the
supervisor's).
"""

from __future__ import annotations

#: How often an engine's supervisor looks at its worker (and at its clocks: time limits,
#: interruptions) while it waits for the worker's next message.
SUPERVISOR_POLL_SECONDS = 0.5
#: How long the controller waits for ipyparallel results at a time before it looks at its
#: own clocks again (stop requests, lost engines, time limits).
CONTROLLER_POLL_SECONDS = 0.2
#: How long a worker gets to start up (import, collect) or to finish its end-of-run
#: teardown.
WORKER_FINISH_SECONDS = 300.0
#: After the end-of-run teardown, the longest a worker may take to finish its session.
WORKER_EXIT_GRACE_SECONDS = 60.0
#: How long an interrupted case gets to stop before its worker is killed.
INTERRUPT_GRACE_SECONDS = 5.0
#: How long a worker gets to print its stacks before a timed-out case is killed.
STACK_DUMP_WAIT_SECONDS = 1.0
#: How often a running batch looks whether its controller is still there.
CONTROLLER_LOOK_SECONDS = 1.0
