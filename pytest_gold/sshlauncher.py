"""Kept so that profiles written by ``profile create`` before the package layout changed
(they name ``pytest_gold.sshlauncher.GoldSSHEngineSetLauncher``) still start."""

from pytest_gold.launch.sshlauncher import GoldSSHEngineSetLauncher

__all__ = ["GoldSSHEngineSetLauncher"]
