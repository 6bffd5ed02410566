import time

import pytest


@pytest.mark.parametrize("n", [16, 32, 64, 128])
@pytest.mark.parametrize("scheme", ["explicit", "implicit", "crank-nicolson"])
def test_heat(scheme, n):
    time.sleep(n / 64)  # stands in for the solver: 0.25 s to 2 s
