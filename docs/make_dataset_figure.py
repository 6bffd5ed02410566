"""Make docs/_static/dataset-example.png, the figure of docs/dataset.rst.

Runs the example radiative transfer sweep (plain pytest, no cluster needed) into a zarr
store, then plots from it with the recipe of the page. Needs pytest-gold[xarray] and
matplotlib:

    python docs/make_dataset_figure.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "_static" / "dataset-example.png"
GROUP = "test_toa_brightness_temperature"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "example.zarr"
        subprocess.run(
            [sys.executable, "-m", "pytest", "example_sims", "-k", "toa_brightness", "-q",
             "-p", "no:cacheprovider", f"--gold-results={store}"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        # The recipe of docs/dataset.rst:
        ds = xr.open_zarr(store, group=GROUP)
        ok = ds.where(ds.outcome == "passed")
        weights = ok.layer_weights.sel(profile="tropical", surface="ocean")

        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        tb = ok.tb_k.sel(surface="ocean")
        for profile in tb.profile.values:
            left.plot(tb.channel.values, tb.sel(profile=profile), "o-", label=str(profile))
        left.set_xlabel("channel")
        left.set_ylabel("tb_k [K]")
        left.set_title("tb_k over ocean")
        left.legend(fontsize="small")
        for channel in weights.channel.values:
            weights.sel(channel=channel).plot(ax=right, y="layer", label=str(channel))
        right.set_title("layer_weights, tropical profile over ocean")
        right.legend(fontsize="small")
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(OUTPUT, dpi=80)
        ds.close()
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
