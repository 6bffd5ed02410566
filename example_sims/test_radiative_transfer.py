"""Plane-parallel, non-scattering microwave / thermal-infrared radiative transfer sweep.

A 40-layer atmosphere (fixed grid from ``conftest``) is seen from the top at a given
zenith angle. Each layer emits at its own Planck radiance and absorbs according to the
shared gas absorption tables; the surface emits with emissivity ``e`` and specularly
reflects ``1 - e`` of the downwelling sky, which includes the cosmic background.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pytest

PLANCK_H = 6.62607015e-34
BOLTZMANN_K = 1.380649e-23
LIGHT_C = 2.99792458e8
T_COSMIC = 2.725

Tables = Mapping[str, np.ndarray]
RecordProperty = Callable[[str, object], None]

# name -> list of (centre, half-width) passbands [GHz]; double-sideband channels such as
# 183.31 +- 1 GHz are two passbands. The infrared channel is the 11 um window.
CHANNELS: dict[str, list[tuple[float, float]]] = {
    "ch23.8": [(23.8, 0.135)],
    "ch31.4": [(31.4, 0.09)],
    "ch54.4": [(54.4, 0.2)],
    "ch89.0": [(88.2, 0.5), (89.8, 0.5)],
    "ch183.3": [(182.31, 0.25), (184.31, 0.25)],
    "ir11um": [(27_254.0, 500.0)],
}


class Profile(NamedTuple):
    """Analytic atmosphere: temperatures [K], heights [km], rates [K/km], vapour [g m-3]."""

    t_air: float  # surface air temperature
    inv_dt: float  # warming across a low-level inversion (0: none)
    inv_km: float  # inversion depth
    lapse: float  # tropospheric cooling rate
    z_trop: float  # tropopause height
    strat: float  # stratospheric warming rate
    rho_v0: float  # surface water-vapour density
    h_v: float  # water-vapour scale height
    t_skin: float  # surface skin temperature


PROFILES: dict[str, Profile] = {
    "tropical": Profile(299.7, 0.0, 0.0, 6.5, 16.0, 2.0, 19.0, 2.0, 300.0),
    "midlat-summer": Profile(294.0, 0.0, 0.0, 6.5, 12.5, 1.2, 14.0, 2.2, 295.0),
    "subarctic-winter": Profile(257.0, 4.0, 1.5, 6.0, 9.5, 0.3, 2.0, 1.8, 255.0),
}

# (microwave, infrared) emissivity. Calm ocean is a poor microwave emitter (strong
# reflection of the cold sky), getting slightly better with frequency; snow scatters
# microwave emission away and so is intermediate.
SURFACES: dict[str, tuple[float, float]] = {
    "ocean": (0.50, 0.98),
    "land": (0.95, 0.96),
    "snow": (0.80, 0.99),
}


def channel_freq(channel: str) -> float:
    """Effective monochromatic frequency [GHz]: mean of the passband centres."""
    return float(np.mean([c for c, _ in CHANNELS[channel]]))


def emissivity(surface: str, channel: str) -> float:
    mw, ir = SURFACES[surface]
    freq = channel_freq(channel)
    if freq > 1_000.0:
        return ir
    if surface == "ocean":
        return mw + 0.1 * min(max(freq - 20.0, 0.0) / 170.0, 1.0)
    return mw


def planck(freq_ghz: float, temp: np.ndarray | float) -> np.ndarray:
    """Planck spectral radiance per unit frequency [W m-2 sr-1 Hz-1]."""
    nu = freq_ghz * 1e9
    return 2 * PLANCK_H * nu**3 / LIGHT_C**2 / np.expm1(PLANCK_H * nu / (BOLTZMANN_K * temp))


def brightness_temperature(freq_ghz: float, radiance: np.ndarray | float) -> np.ndarray:
    """Inverse Planck; exact, so a radiance-weighted mean maps back inside [Tmin, Tmax]."""
    nu = freq_ghz * 1e9
    a = PLANCK_H * nu / BOLTZMANN_K
    return a / np.log1p(2 * PLANCK_H * nu**3 / (LIGHT_C**2 * radiance))


def build_profile(name: str, z_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Layer temperatures [K], vapour densities [g m-3] and surface skin temperature."""
    p = PROFILES[name]
    temp = p.t_air - p.lapse * z_km
    if p.inv_km > 0:
        # Winter inversion: the air warms with height up to inv_km before the lapse starts.
        below = z_km < p.inv_km
        ramp = p.inv_dt * z_km / p.inv_km
        temp = np.where(below, p.t_air + ramp, temp + p.inv_dt + p.lapse * p.inv_km)
    t_trop = np.interp(p.z_trop, z_km, temp)
    temp = np.where(z_km > p.z_trop, t_trop + p.strat * (z_km - p.z_trop), temp)
    rho_v = p.rho_v0 * np.exp(-z_km / p.h_v)
    return temp, rho_v, p.t_skin


def layer_optical_depths(
    tables: Tables, channel: str, temp: np.ndarray, rho_v: np.ndarray
) -> np.ndarray:
    """Nadir optical depth per layer, averaging absorption over the channel passbands.

    Averaging the coefficient (not the transmittance) is the usual monochromatic-equivalent
    approximation; it keeps each layer a single exponential, so transmittances multiply
    exactly along the path and the weighting-function identity below is exact.
    """
    freq = tables["freq_ghz"]
    mask = np.zeros(freq.size, dtype=bool)
    for centre, half in CHANNELS[channel]:
        mask |= np.abs(freq - centre) <= half
    ratio = 300.0 / temp
    alpha = (
        tables["wv_line"][:, mask].mean(axis=1) * rho_v * ratio
        + tables["wv_continuum"][:, mask].mean(axis=1) * rho_v * ratio**3
        + tables["wv_self"][mask].mean() * rho_v**2 * ratio**4.5
        + tables["o2"][:, mask].mean(axis=1) * ratio**2
    )
    return alpha * float(tables["layer_thickness_km"])


@dataclass
class Solution:
    radiance: float
    bt: float
    transmittance: np.ndarray  # per layer along the slant path, surface first
    total_transmittance: float
    layer_weights: np.ndarray  # contribution of each layer's Planck radiance to the TOA
    surface_weight: float
    space_weight: float


def solve(
    tau: np.ndarray, temp: np.ndarray, t_skin: float, emis: float, freq: float, mu: float = 1.0
) -> Solution:
    """Integrate the Schwarzschild equation layer by layer, then derive the weights."""
    trans = np.exp(-tau / mu)
    source = planck(freq, temp)
    # Downwelling from space to the surface, then reflect and integrate back up.
    down = planck(freq, T_COSMIC)
    for t_lay, b_lay in zip(trans[::-1], source[::-1], strict=True):
        down = down * t_lay + b_lay * (1.0 - t_lay)
    up = emis * planck(freq, t_skin) + (1.0 - emis) * down
    for t_lay, b_lay in zip(trans, source, strict=True):
        up = up * t_lay + b_lay * (1.0 - t_lay)

    # Independent, closed-form weights: the TOA radiance is a linear combination of
    # the layer, surface and cosmic Planck radiances with these coefficients.
    total = float(np.exp(-tau.sum() / mu))
    above = np.append(np.cumprod(trans[::-1])[::-1][1:], 1.0)  # layers above layer i
    below = np.insert(np.cumprod(trans)[:-1], 0, 1.0)  # layers between i and the surface
    emitted = (1.0 - trans) * above
    reflected = (1.0 - emis) * total * (1.0 - trans) * below
    return Solution(
        radiance=float(up),
        bt=float(brightness_temperature(freq, up)),
        transmittance=trans,
        total_transmittance=total,
        layer_weights=emitted + reflected,
        surface_weight=emis * total,
        space_weight=(1.0 - emis) * total**2,
    )


@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("channel", list(CHANNELS))
def test_toa_brightness_temperature(
    gas_absorption_tables: Tables,
    channel: str,
    profile: str,
    surface: str,
    record_property: RecordProperty,
    gold_record: MutableMapping[str, Any],
) -> None:
    tables = gas_absorption_tables
    temp, rho_v, t_skin = build_profile(profile, tables["z_mid_km"])
    tau = layer_optical_depths(tables, channel, temp, rho_v)
    freq = channel_freq(channel)
    emis = emissivity(surface, channel)
    sol = solve(tau, temp, t_skin, emis, freq)
    record_property("brightness_temperature", sol.bt)
    # What the case computed travels with it to --gold-results: with sweep.zarr, tb_k is a
    # (channel, profile, surface) array and layer_weights one more dimension, layer, whose
    # coordinate is the height of each layer.
    gold_record["tb_k"] = sol.bt
    gold_record["layer_weights"] = sol.layer_weights
    gold_record.dims["layer_weights"] = ("layer",)
    gold_record.coords["layer"] = tables["z_mid_km"]
    gold_record.attrs["tb_k"] = {
        "units": "K",
        "long_name": "top-of-atmosphere brightness temperature",
    }
    gold_record.attrs["layer_weights"] = {"long_name": "weight of each layer's Planck radiance"}
    gold_record.attrs["layer"] = {"units": "km", "long_name": "height of the layer's middle"}

    # Transmittances are probabilities and compose multiplicatively along the path.
    assert np.all(tau >= 0.0)
    assert np.all((sol.transmittance >= 0.0) & (sol.transmittance <= 1.0))
    assert np.prod(sol.transmittance) == pytest.approx(sol.total_transmittance, rel=1e-12)

    # Weighting functions: non-negative and a partition of unity, so the scene is a
    # weighted mean of its sources. Cold space is one of those sources via reflection.
    assert np.all(sol.layer_weights >= 0.0)
    total_weight = sol.layer_weights.sum() + sol.surface_weight + sol.space_weight
    assert total_weight == pytest.approx(1.0, abs=1e-12)
    # The layer-by-layer integration and the closed-form weights must agree.
    sources = (
        sol.layer_weights @ planck(freq, temp)
        + sol.surface_weight * planck(freq, t_skin)
        + sol.space_weight * planck(freq, T_COSMIC)
    )
    assert sol.radiance == pytest.approx(float(sources), rel=1e-10)

    # BT bounds. Without the reflected cosmic term the BT would lie within [Tmin, Tmax] of
    # the atmosphere and surface; with it, that holds for the non-space part of the mean.
    # For a blackbody surface or an opaque channel space_weight -> 0 and this is exactly
    # Tmin <= BT <= Tmax; over ocean in a window channel the BT legitimately drops below.
    scene = np.append(temp, t_skin)
    w_sp = sol.space_weight
    b_space = w_sp * planck(freq, T_COSMIC)
    lo = brightness_temperature(freq, b_space + (1 - w_sp) * planck(freq, scene.min()))
    hi = brightness_temperature(freq, b_space + (1 - w_sp) * planck(freq, scene.max()))
    assert lo - 1e-9 <= sol.bt <= hi + 1e-9
    assert T_COSMIC <= sol.bt <= scene.max()
    if w_sp < 1e-6:
        assert scene.min() - 1e-3 <= sol.bt <= scene.max() + 1e-3


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 60.0], ids=lambda a: f"theta{a:g}")
@pytest.mark.parametrize("tau_total", [0.1, 1.0, 3.0], ids=lambda t: f"tau{t:g}")
def test_beer_lambert_homogeneous(tau_total: float, angle_deg: float) -> None:
    """A homogeneous absorber split over 40 layers must give exp(-tau/mu) exactly."""
    mu = float(np.cos(np.radians(angle_deg)))
    tau = np.full(40, tau_total / 40)
    temp = np.full(40, 250.0)
    sol = solve(tau, temp, 250.0, 1.0, 89.0, mu)
    assert np.prod(sol.transmittance) == pytest.approx(np.exp(-tau_total / mu), rel=1e-12)
    assert sol.total_transmittance == pytest.approx(np.exp(-tau_total / mu), rel=1e-12)
    # Slant paths are longer, so less gets through.
    assert sol.total_transmittance <= np.exp(-tau_total) + 1e-15


@pytest.mark.parametrize("t_iso", [220.0, 300.0], ids=lambda t: f"T{t:g}")
@pytest.mark.parametrize("channel", list(CHANNELS))
def test_isothermal_blackbody_limit(
    gas_absorption_tables: Tables, channel: str, t_iso: float
) -> None:
    """Isothermal atmosphere over a blackbody at the same T: a cavity, so BT == T."""
    tables = gas_absorption_tables
    temp = np.full(tables["z_mid_km"].size, t_iso)
    _, rho_v, _ = build_profile("tropical", tables["z_mid_km"])
    tau = layer_optical_depths(tables, channel, temp, rho_v)
    for mu in (1.0, 0.5):
        sol = solve(tau, temp, t_iso, 1.0, channel_freq(channel), mu)
        assert sol.space_weight == 0.0
        assert sol.bt == pytest.approx(t_iso, rel=1e-12)


@pytest.mark.parametrize("surface", list(SURFACES))
def test_transparent_atmosphere_limit(surface: str) -> None:
    """With no absorber only the surface and reflected cosmic background remain."""
    freq = channel_freq("ch31.4")
    emis = emissivity(surface, "ch31.4")
    temp = np.full(40, 230.0)
    sol = solve(np.zeros(40), temp, 280.0, emis, freq)
    expected = brightness_temperature(
        freq, emis * planck(freq, 280.0) + (1 - emis) * planck(freq, T_COSMIC)
    )
    assert sol.bt == pytest.approx(float(expected), rel=1e-12)
    assert np.all(sol.layer_weights == 0.0)
