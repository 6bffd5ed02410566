"""1-D heat equation u_t = D u_xx on a unit rod with finite differences.

Three time-stepping schemes (explicit Euler, implicit Euler, Crank-Nicolson) are swept over
grid resolutions and two boundary conditions: fixed zero temperature (Dirichlet) and
insulated ends (zero flux). The initial state is a sum of two Fourier modes whose analytic
decay ``exp(-k^2 D t)`` comes from the session fixture ``heat_reference_modes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest

Reference = Mapping[tuple[str, int], Mapping[str, np.ndarray]]
RecordProperty = Callable[[str, object], None]

SCHEMES = ("explicit", "implicit", "crank-nicolson")
# Must match the resolutions tabulated by the conftest fixture.
RESOLUTIONS = (16, 32, 64, 128)
BOUNDARIES = ("dirichlet", "insulated")
DIFFUSIVITY = 1.0
T_END = 0.05
# Diffusion number r = D dt / h^2. Below 1/2 every scheme here obeys the discrete maximum
# principle, so the main sweep can assert it for all of them; with dt ~ h^2 all three
# schemes are then second order in h overall.
R_MAIN = 0.4
# Round-off slack for comparisons of O(1) temperatures accumulated over ~2000 steps.
EPS = 1e-12


def laplacian(bc: str, n: int, h: float) -> np.ndarray:
    """Second-difference matrix. Insulated ends use mirrored ghost cells, which makes every
    column sum to zero, hence total heat is conserved exactly by any linear scheme."""
    a = (
        np.diag(np.full(n - 1, 1.0), -1)
        + np.diag(np.full(n, -2.0))
        + np.diag(np.full(n - 1, 1.0), 1)
    )
    if bc == "insulated":
        a[0, 0] = a[-1, -1] = -1.0
    return a / h**2


def propagator(a: np.ndarray, dt: float, scheme: str) -> np.ndarray:
    """One-step matrix; implicit solves are pre-factored once into a dense operator."""
    eye = np.eye(a.shape[0])
    step = DIFFUSIVITY * dt * a
    if scheme == "explicit":
        return eye + step
    if scheme == "implicit":
        return np.linalg.solve(eye - step, eye)
    if scheme == "crank-nicolson":
        return np.linalg.solve(eye - 0.5 * step, eye + 0.5 * step)
    raise ValueError(scheme)


def initial_state(ref: Mapping[str, np.ndarray]) -> np.ndarray:
    return ref["mean"] + ref["amplitudes"] @ ref["modes"]


def exact_state(ref: Mapping[str, np.ndarray], t: float) -> np.ndarray:
    return ref["mean"] + (ref["amplitudes"] * np.exp(-ref["decay_rates"] * t)) @ ref["modes"]


def run(p: np.ndarray, u0: np.ndarray, nsteps: int) -> np.ndarray:
    """Full history, shape (nsteps + 1, n), so checks can look at every step."""
    history = np.empty((nsteps + 1, u0.size))
    history[0] = u0
    for i in range(nsteps):
        history[i + 1] = p @ history[i]
    return history


def simulate(
    ref: Mapping[str, np.ndarray], bc: str, scheme: str, r: float, t_end: float
) -> tuple[np.ndarray, float]:
    """Integrate to exactly t_end with diffusion number at most r; returns (history, dt)."""
    h = float(ref["h"])
    nsteps = int(np.ceil(t_end * DIFFUSIVITY / (r * h**2)))
    dt = t_end / nsteps
    p = propagator(laplacian(bc, ref["x"].size, h), dt, scheme)
    return run(p, initial_state(ref), nsteps), dt


def max_error(ref: Mapping[str, np.ndarray], bc: str, scheme: str) -> float:
    history, _ = simulate(ref, bc, scheme, R_MAIN, T_END)
    return float(np.max(np.abs(history[-1] - exact_state(ref, T_END))))


@pytest.mark.parametrize("bc", BOUNDARIES)
@pytest.mark.parametrize("n", RESOLUTIONS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_heat_equation(
    heat_reference_modes: Reference, scheme: str, n: int, bc: str, record_property: RecordProperty
) -> None:
    ref = heat_reference_modes[(bc, n)]
    h = float(ref["h"])
    history, _ = simulate(ref, bc, scheme, R_MAIN, T_END)
    err = float(np.max(np.abs(history[-1] - exact_state(ref, T_END))))
    record_property("max_error", err)
    assert np.all(np.isfinite(history))

    # Maximum principle: no new extrema, and the range shrinks monotonically. Dirichlet
    # walls at 0 count as part of the data the solution is bounded by.
    wall = [0.0] if bc == "dirichlet" else []
    lo = min([*wall, float(history[0].min())])
    hi = max([*wall, float(history[0].max())])
    assert history.min() >= lo - EPS
    assert history.max() <= hi + EPS
    assert np.all(np.diff(history.max(axis=1)) <= EPS)
    if bc == "insulated":
        assert np.all(np.diff(history.min(axis=1)) >= -EPS)

    heat = history.sum(axis=1) * h
    if bc == "insulated":
        # Closed system: total heat is an invariant of the discrete scheme itself.
        assert np.max(np.abs(heat - heat[0])) <= 1e-12 * abs(heat[0])
        # ...and it is the analytic one: the cosine modes carry no net heat.
        assert heat[-1] == pytest.approx(float(ref["mean"]) * ref["x"].size * h, rel=1e-12)
    else:
        # Positive interior and cold walls: heat only leaves, never enters.
        assert np.all(np.diff(heat) < 0.0)

    # Second-order accuracy against the analytic Fourier-mode decay. Observed constants
    # are ~0.3-1.25 (implicit Euler's O(dt) error is the largest); 2 leaves headroom
    # without letting a first-order-in-h bug through at the finer grids.
    assert err <= 2.0 * h**2


@pytest.mark.parametrize("bc", BOUNDARIES)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_convergence_order(
    heat_reference_modes: Reference, scheme: str, bc: str, record_property: RecordProperty
) -> None:
    """Error must fall with every refinement, at the expected O(h^2) rate."""
    errors = np.array([max_error(heat_reference_modes[(bc, n)], bc, scheme) for n in RESOLUTIONS])
    hs = np.array([float(heat_reference_modes[(bc, n)]["h"]) for n in RESOLUTIONS])
    orders = np.log(errors[:-1] / errors[1:]) / np.log(hs[:-1] / hs[1:])
    record_property("observed_order", float(orders[-1]))
    assert np.all(np.diff(errors) < 0.0)
    assert np.all((orders > 1.8) & (orders < 2.2)), orders


@pytest.mark.parametrize("bc", BOUNDARIES)
@pytest.mark.parametrize("r", [2.0, 20.0, 200.0], ids=lambda r: f"r{r:g}")
@pytest.mark.parametrize("scheme", ["implicit", "crank-nicolson"])
def test_implicit_large_time_step(
    heat_reference_modes: Reference, scheme: str, r: float, bc: str
) -> None:
    """Far beyond the explicit limit r = 1/2 the implicit schemes stay stable."""
    ref = heat_reference_modes[(bc, 32)]
    h = float(ref["h"])
    p = propagator(laplacian(bc, ref["x"].size, h), r * h**2 / DIFFUSIVITY, scheme)
    history = run(p, initial_state(ref), 50)
    assert np.all(np.isfinite(history))
    # Both are unconditionally stable in L2: the norm of the deviation never grows.
    dev = np.linalg.norm(history - float(ref["mean"]), axis=1)
    assert np.all(np.diff(dev) <= EPS)
    if scheme == "implicit":
        # Backward Euler is also monotone at any dt (an M-matrix inverse is non-negative).
        assert history.max() <= history[0].max() + EPS
        assert history.min() >= min(0.0, float(history[0].min())) - EPS
    if bc == "insulated":
        heat = history.sum(axis=1) * h
        assert np.max(np.abs(heat - heat[0])) <= 1e-10 * abs(heat[0])


@pytest.mark.parametrize("bc", BOUNDARIES)
def test_explicit_unstable_control(heat_reference_modes: Reference, bc: str) -> None:
    """Negative control: explicit Euler at r = 1 amplifies the grid-scale mode ~3x a step.

    Shows that the stability checks above have teeth. A 1e-12 checkerboard seeds the
    unstable mode deterministically instead of relying on round-off.
    """
    ref = heat_reference_modes[(bc, 32)]
    h = float(ref["h"])
    u0 = initial_state(ref) + 1e-12 * (-1.0) ** np.arange(ref["x"].size)
    history = run(propagator(laplacian(bc, u0.size, h), h**2 / DIFFUSIVITY, "explicit"), u0, 60)
    assert np.abs(history[-1]).max() > 1e6
