"""The POSIX shell scripts that start, watch, signal and stop one host's engines over ssh.

Each ``*_script`` function is pure: it returns the text given to ``sh -s`` on the host,
and :func:`parse_marks` reads back what such a script printed; :func:`run_on_host` runs
one. Plain ``sh`` and ``kill`` rather than a remote Python (ipyparallel imports itself on
the host for every command, a second or more each): a script is one ssh round trip,
whatever the number of engines.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Each script's first line: what it is, for whoever reads it in a log or a process list.
TITLE = "# pytest-gold:"
#: What the scripts print for the launcher, e.g. ``__pid_0=4242__`` or ``__exited=4242__``.
MARK = re.compile(r"__([a-z][a-z0-9_]*)=([A-Za-z0-9.-]*)__")
#: Seconds between two looks at the engines while stopping them.
STOP_STEP_SECONDS = 0.2
#: How long what the engines started (their nannies) gets after the engines stopped.
CHILD_GRACE_SECONDS = 2.0
#: Seconds between two looks at running engines (a lost engine is the controller's to
#: notice first; this only tells the launcher, e.g. ``ipcluster start``).
WATCH_STEP_SECONDS = 1.0


def parse_marks(output: str) -> list[tuple[str, str]]:
    return MARK.findall(output)


def start_script(engines: Sequence[tuple[Sequence[str], Mapping[str, str], str]]) -> str:
    """Start each engine (command, environment, output file) detached from the ssh session
    (``nohup``, in a session of its own where ``setsid`` exists, as ipyparallel does) and
    print ``__pid_<index>=<pid>__`` for each."""
    lines = [
        f"{TITLE} start engines",
        "set -u",
        # Never a prompt or a pager from here: the engines' input is /dev/null.
        "if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi",
    ]
    for directory in sorted({_dirname(output) for _, _, output in engines}):
        lines.append(f"mkdir -p {shlex.quote(directory)} 2>/dev/null")
    for index, (command, env, output) in enumerate(engines):
        assignments = " ".join(shlex.quote(f"{key}={value}") for key, value in env.items())
        # A background job of a shell without job control is no group leader, so setsid
        # makes the session without forking: $! stays the engine's own pid.
        lines.append(
            f"nohup $detach env {assignments} {shlex.join(command)} "
            f"> {shlex.quote(output)} 2>&1 < /dev/null &"
        )
        lines.append(f'echo "__pid_{index}=$!__"')
    return "\n".join(lines) + "\n"


def watch_script(pids: Iterable[int], seconds: float) -> str:
    """Print ``__exited=<pid>__`` as each engine exits; return after ``seconds`` (the
    launcher looks again), so that a watcher whose launcher went away ends by itself."""
    return (
        f"{TITLE} watch engines\n"
        + _pids_line(pids)
        + _WATCH.format(steps=_steps(seconds, WATCH_STEP_SECONDS), sleep=_sleep(WATCH_STEP_SECONDS))
    )


_WATCH = """\
steps={steps}
while [ -n "$pids" ] && [ $steps -gt 0 ]; do
  running=
  for p in $pids; do
    if alive "$p"; then running="$running $p"; else echo "__exited=${{p}}__"; fi
  done
  pids=$running
  steps=$((steps - 1))
  [ -n "$pids" ] && {{ {sleep}; }}
done
echo __watched=1__
"""


def signal_script(pids: Iterable[int], signal_name: str) -> str:
    """Send a signal to the engines that are still there (gone ones are no error)."""
    return (
        f"{TITLE} signal engines\n"
        + _pids_line(pids)
        + f'for p in $pids; do kill -{signal_name} "$p" 2>/dev/null; done\n'
        + "exit 0\n"  # gone engines are no error: a failure is ssh's
    )


def stop_script(pids: Iterable[int], seconds_until_kill: float) -> str:
    """SIGTERM every engine, give them ``seconds_until_kill`` together, SIGKILL the rest,
    and print ``__killed=<pid>__`` for those; then end what the engines had started and
    left running (their nannies), SIGKILL after ``CHILD_GRACE_SECONDS``."""
    return (
        f"{TITLE} stop engines\n"
        + _pids_line(pids)
        + _STOP.format(
            steps=_steps(seconds_until_kill, STOP_STEP_SECONDS),
            kid_steps=_steps(CHILD_GRACE_SECONDS, STOP_STEP_SECONDS),
            sleep=_sleep(STOP_STEP_SECONDS),
        )
    )


_STOP = """\
kids=
for p in $pids; do
  c=
  [ -r "/proc/$p/task/$p/children" ] && read -r c < "/proc/$p/task/$p/children" 2>/dev/null
  kids="$kids $c"
done
for p in $pids; do kill -TERM "$p" 2>/dev/null; done
steps={steps}
while :; do
  running=
  for p in $pids; do alive "$p" && running="$running $p"; done
  pids=$running; [ -z "$pids" ] && break
  steps=$((steps - 1)); [ $steps -le 0 ] && break
  {sleep}
done
for p in $pids; do kill -KILL "$p" 2>/dev/null && echo "__killed=${{p}}__"; done
# The engines' own children (ipyparallel's nanny runs in a session of its own and can
# outlive its engine for a long while when the controller is gone): ended with them.
left=
for k in $kids; do alive "$k" && kill -TERM "$k" 2>/dev/null && left="$left $k"; done
steps={kid_steps}
while [ -n "$left" ] && [ $steps -gt 0 ]; do
  {sleep}
  running=
  for k in $left; do alive "$k" && running="$running $k"; done
  left=$running; steps=$((steps - 1))
done
for k in $left; do kill -KILL "$k" 2>/dev/null; done
echo __stopped=1__
"""


def _pids_line(pids: Iterable[int]) -> str:
    return "pids=" + shlex.quote(" ".join(str(int(pid)) for pid in pids)) + "\n" + _ALIVE


#: Whether a process is there: kill -0 alone counts a zombie (exited, not yet reaped, as
#: where no init process reaps them, e.g. some containers) as running. Linux's /proc
#: tells them apart, read by the shell itself (no process per look).
_ALIVE = """\
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ] && read -r stat < "/proc/$1/stat" 2>/dev/null; then
    case "$stat" in *") Z "* | *") X "*) return 1 ;; esac
  fi
  return 0
}
"""


def _steps(seconds: float, step: float) -> int:
    return max(1, round(seconds / step))


def _sleep(step: float) -> str:
    # Fractional sleep is not POSIX: fall back to whole seconds where it is missing.
    return f"sleep {step:g} 2>/dev/null || sleep 1"


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


#: How many characters of ssh's own error output go into a log message.
SSH_ERROR_CHARS = 500
#: What ssh says when it has not accepted the host's key yet.
UNKNOWN_HOST_KEY = "Host key verification failed"


@dataclass
class HostResult:
    output: str
    error: str
    returncode: int


def run_on_host(
    command: list[str],
    script: str,
    timeout: float,
    running: set[subprocess.Popen[str]] | None = None,
) -> HostResult:
    """Run ``script`` with ``sh -s`` over ssh (in ``running`` meanwhile, so that another
    thread can end it). ssh's own messages are captured in a file, not a pipe: a
    multiplexing master that ssh starts in the background may keep its stderr open."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        try:
            process = subprocess.Popen(
                [*command, "sh", "-s"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                start_new_session=True,  # Ctrl-C in a terminal is for ipcluster, not ssh
            )
        except OSError as error:
            return HostResult(output="", error=str(error), returncode=-1)
        if running is not None:
            running.add(process)
        try:
            output, _ = process.communicate(script, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            errors.seek(0)
            text = errors.read().strip()
            return HostResult(
                output=output or "",
                error=f"no answer within {timeout:g} s" + (f": {text}" if text else ""),
                returncode=-1,
            )
        finally:
            if running is not None:
                running.discard(process)
        errors.seek(0)
        return HostResult(output or "", errors.read().strip(), process.returncode)


def explain_ssh_error(location: str, error: str) -> str:
    text = error[-SSH_ERROR_CHARS:] or "no message"
    if UNKNOWN_HOST_KEY in error:
        text += (
            f" (accept {location}'s host key once: 'ssh {location} true' answered with yes, "
            f"or 'ssh-keyscan HOST >> ~/.ssh/known_hosts')"
        )
    return text
