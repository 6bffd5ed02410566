import time

import numpy as np
import pytest


@pytest.mark.parametrize("channel", [23.8, 89.0, 183.3])
@pytest.mark.parametrize("surface", ["ocean", "land"])
def test_bt(surface, channel, gold_record, record_property):
    time.sleep(channel / 100)  # stands in for the model
    gold_record["tb_k"] = np.float64(200.0 + channel / 10)
    gold_record["profile"] = np.arange(3)
    record_property("iterations", 7)
    print(f"solving {surface} at {channel} GHz")
    assert not (surface == "land" and channel == 89.0), "too warm"
