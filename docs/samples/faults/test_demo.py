import ctypes
import sys
import threading
import time

import pytest


def test_segfaults():
    print("solver: step 41, dt=1e-09", file=sys.stderr)
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a bug in a C or Fortran core would


@pytest.mark.gold(timeout=2)
def test_hangs():
    threading.Thread(target=time.sleep, args=(600,), name="helper", daemon=True).start()
    time.sleep(600)  # never converges


@pytest.mark.parametrize("i", range(3))
def test_fine(i):
    pass
