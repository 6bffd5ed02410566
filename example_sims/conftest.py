"""Shared, expensive-looking set-up for the example simulation sweeps.

Both fixtures are session-scoped. With plain ``pytest`` they are built once per run. With
``pytest --gold`` every cluster engine is its own worker process with its own session, so
each engine builds them once and every case scheduled on that engine reuses the result.

The fixtures return plain dicts of numpy arrays so they pickle cleanly and the test modules
never need to import from this conftest.
"""

from __future__ import annotations

import numpy as np
import pytest

# Fixed atmospheric grid shared by every profile: 40 layers of 1 km. Pressure follows a
# fixed scale height so the absorption tables do not depend on the profile being run.
N_LAYERS = 40
LAYER_THICKNESS_KM = 1.0
SURFACE_PRESSURE_HPA = 1013.25
PRESSURE_SCALE_HEIGHT_KM = 7.5

# Spectral grid: a fine microwave segment (to resolve pressure-broadened lines near the
# tropopause) plus a coarse thermal-infrared window segment.
MW_GRID_GHZ = (1.0, 200.0, 0.02)
IR_GRID_GHZ = (25_000.0, 35_000.0, 5.0)

# Water-vapour lines: centre [GHz], integrated strength [Np/km per g/m^3 * GHz],
# width at surface pressure [GHz]. Tuned so zenith opacities are the right order of
# magnitude (22 GHz ~0.3 and 183 GHz >> 1 in the tropics), not to reproduce HITRAN.
WV_LINES = np.array(
    [
        [22.235, 0.040, 2.8],
        [183.310, 6.600, 3.0],
    ]
)
# Microwave water-vapour continuum [Np/km per g/m^3 per GHz^2] (foreign-broadened, ~nu^2).
WV_MW_CONTINUUM = 1.15e-6
# Infrared window self-continuum at 27 THz [Np/km per (g/m^3)^2]; it is why the 11 um
# window is much more opaque in the tropics than in subarctic winter.
WV_IR_SELF_CONTINUUM = 2.0e-3
# Oxygen: the 60 GHz complex as a comb of lines under a Gaussian envelope, plus 118.75 GHz.
O2_BAND_LINES_GHZ = (51.5, 67.9, 25)
O2_BAND_PEAK_STRENGTH = 1.1  # [Np/km * GHz] per line at the band centre, at 300 K
O2_118_STRENGTH = 1.5
O2_WIDTH_GHZ = 1.0


def _layer_pressures_hpa() -> tuple[np.ndarray, np.ndarray]:
    """Mid-layer altitudes [km] and pressures [hPa] of the fixed model grid."""
    z_mid = (np.arange(N_LAYERS) + 0.5) * LAYER_THICKNESS_KM
    return z_mid, SURFACE_PRESSURE_HPA * np.exp(-z_mid / PRESSURE_SCALE_HEIGHT_KM)


def _add_line(
    out: np.ndarray,
    freq: np.ndarray,
    centre: float,
    strength: float,
    width: np.ndarray,
    work: tuple[np.ndarray, np.ndarray],
) -> None:
    """Add one area-normalised Van Vleck-Weisskopf line, shape (layers, freq), to ``out``.

    The mirror term at -centre keeps the far wings of low-frequency lines from being
    over-counted, which matters for the 22 GHz line seen from the 31 GHz window.
    Everything is done in preallocated buffers: this is the hot loop of the table build and
    fresh (layers x freq) temporaries per line cost about three times as much.
    """
    w = width[:, None]
    w2 = w * w
    near, mirror = work
    np.subtract(freq, centre, out=near)
    np.square(near, out=near)
    near += w2
    np.reciprocal(near, out=near)
    np.add(freq, centre, out=mirror)
    np.square(mirror, out=mirror)
    mirror += w2
    np.reciprocal(mirror, out=mirror)
    near += mirror
    near *= w * (strength / (centre * np.pi))
    near *= freq
    out += near


@pytest.fixture(scope="session")
def gas_absorption_tables() -> dict[str, np.ndarray]:
    """Absorption coefficient tables on the spectral grid, at a 300 K reference temperature.

    Keys: ``freq_ghz`` (F,), ``z_mid_km`` / ``pressure_hpa`` (L,), ``wv_line`` (L, F) per unit
    vapour density, ``wv_continuum`` (L, F) per unit vapour density, ``wv_self`` (F,) per unit
    density squared, ``o2`` (L, F) absolute. Temperature scaling is applied per profile at
    run time, which is what lets a single table serve every case.
    """
    mw = np.arange(*MW_GRID_GHZ)
    freq = np.concatenate([mw, np.arange(*IR_GRID_GHZ)])
    is_mw = freq < 1_000.0
    # Lines are only evaluated on the microwave segment (a contiguous slice, so updates are
    # in place); their infrared wings are negligible.
    lines = np.s_[:, : mw.size]
    z_mid, pressure = _layer_pressures_hpa()
    p_rel = pressure / SURFACE_PRESSURE_HPA

    work = (np.empty((N_LAYERS, mw.size)), np.empty((N_LAYERS, mw.size)))
    wv_line = np.zeros((N_LAYERS, freq.size))
    for centre, strength, width0 in WV_LINES:
        _add_line(wv_line[lines], mw, centre, strength, width0 * p_rel, work)

    # Continuum scales with total pressure (foreign broadening) and freq^2 in the microwave.
    wv_continuum = WV_MW_CONTINUUM * np.outer(p_rel, np.where(is_mw, freq**2, 0.0))
    wv_self = np.where(is_mw, 0.0, WV_IR_SELF_CONTINUUM * (27_000.0 / freq) ** 2)

    band = np.linspace(*O2_BAND_LINES_GHZ)
    envelope = O2_BAND_PEAK_STRENGTH * np.exp(-0.5 * ((band - 60.0) / 4.0) ** 2)
    o2 = np.zeros((N_LAYERS, freq.size))
    for centre, strength in [*zip(band, envelope, strict=True), (118.75, O2_118_STRENGTH)]:
        _add_line(o2[lines], mw, float(centre), float(strength), O2_WIDTH_GHZ * p_rel, work)
    # O2 number density is proportional to pressure (fixed mixing ratio).
    o2 *= p_rel[:, None]

    return {
        "freq_ghz": freq,
        "z_mid_km": z_mid,
        "pressure_hpa": pressure,
        "layer_thickness_km": np.array(LAYER_THICKNESS_KM),
        "wv_line": wv_line,
        "wv_continuum": wv_continuum,
        "wv_self": wv_self,
        "o2": o2,
    }


# Heat-diffusion reference set-up: unit rod, unit diffusivity.
ROD_LENGTH = 1.0
DIFFUSIVITY = 1.0
HEAT_RESOLUTIONS = (16, 32, 64, 128)
# Two Fourier modes so that the maximum-principle check is not trivially a single sine.
MODE_NUMBERS = (1, 3)
MODE_AMPLITUDES = (1.0, 0.3)


@pytest.fixture(scope="session")
def heat_reference_modes() -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Grid nodes, Fourier mode shapes and analytic decay rates per (boundary, resolution).

    Dirichlet (u=0 at both ends) uses interior nodes and sine modes; insulated (zero flux)
    uses cell centres and cosine modes plus a unit mean, because those are exactly the
    eigenvectors of the matching second-difference operators. That makes the analytic
    answer ``sum a_m exp(-k_m^2 D t) phi_m`` the natural reference for every scheme.
    """
    table: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    wavenumbers = np.array(MODE_NUMBERS) * np.pi / ROD_LENGTH
    for n in HEAT_RESOLUTIONS:
        h_dir = ROD_LENGTH / (n + 1)
        h_ins = ROD_LENGTH / n
        grids = {
            "dirichlet": (np.arange(1, n + 1) * h_dir, h_dir, np.sin, 0.0),
            "insulated": ((np.arange(n) + 0.5) * h_ins, h_ins, np.cos, 1.0),
        }
        for bc, (x, h, shape, mean) in grids.items():
            modes = np.array([shape(k * x) for k in wavenumbers])
            table[(bc, n)] = {
                "x": x,
                "h": np.array(h),
                "modes": modes,
                "amplitudes": np.array(MODE_AMPLITUDES),
                "decay_rates": DIFFUSIVITY * wavenumbers**2,
                "mean": np.array(mean),
            }
    return table
