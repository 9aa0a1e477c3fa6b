"""Reference solution of the 1-D Allen-Cahn equation.

Solves ``u_t - d u_xx + k (u^3 - u) = 0`` for x in [-1, 1) (periodic), t in [0, t_end], with
``u(0, x) = x^2 cos(pi x)``, by a Fourier pseudo-spectral discretisation in space and the
fourth-order exponential time-differencing Runge-Kutta scheme ETDRK4 in time, with the
phi-function coefficients evaluated by contour integrals as in

    A.-K. Kassam and L. N. Trefethen, "Fourier spectral methods for stiff PDEs",
    SIAM J. Sci. Comput. 26(4):1214-1233, 2005.

The stiff linear part ``L = -d kx^2`` is integrated exactly; the nonlinear part
``N(u) = k (u - u^3)`` (the +k u term included, as is usual) is evaluated on the grid. There is
no dealiasing. The solution is cached in HDF5 by :func:`load_or_build_allen_cahn`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinn_exp.reference.cache import MODIFIED, read_cached, report, write_atomic_h5
from pinn_exp.reference.checks import check_float as _check_float
from pinn_exp.reference.checks import check_positive_int as _check_positive_int

__all__ = [
    "FORMAT_VERSION",
    "AllenCahnReference",
    "etdrk4_coefficients",
    "load_or_build_allen_cahn",
    "solve_allen_cahn",
]

# Bump when the file layout or the numerical method changes, so old caches are rebuilt.
FORMAT_VERSION = 1

# Contour points for the phi-function integrals. Kassam & Trefethen use 32 on the upper half
# circle for real L; 64 on the full circle is the same accuracy and also valid for complex L.
N_CONTOUR = 64


@dataclass(frozen=True, eq=False)
class AllenCahnReference:
    """Snapshots of the Allen-Cahn solution on a uniform periodic grid.

    ``u[i, j] = u(t[i], x[j])`` with ``x[j] = -1 + 2 j / n``. The arrays are read-only because
    one cached instance may be shared between callers. (``eq=False``: comparing array fields
    with ``==`` would be ambiguous.)
    """

    t: np.ndarray
    x: np.ndarray
    u: np.ndarray
    d: float
    k: float

    def __post_init__(self) -> None:
        # Read-only views, so the caller's own arrays keep their flags.
        for name in ("t", "x", "u"):
            view = np.asarray(getattr(self, name)).view()
            view.setflags(write=False)
            object.__setattr__(self, name, view)


def etdrk4_coefficients(
    lin: np.ndarray, dt: float, n_contour: int = N_CONTOUR
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ETDRK4 coefficients for the diagonal linear operator ``lin`` and step ``dt``.

    Returns ``(E, E2, Q, f1, f2, f3)`` in the notation of Kassam & Trefethen (2005), eq. (2.5)
    and the code ``kursiv.m``: ``E = exp(h L)``, ``E2 = exp(h L / 2)``,
    ``Q = h (e^{z/2} - 1) / z`` and

        f1 = h (-4 - z + e^z (4 - 3 z + z^2)) / z^3
        f2 = h ( 2 + z + e^z (-2 + z)) / z^3
        f3 = h (-4 - 3 z - z^2 + e^z (4 - z)) / z^3,    z = h L.

    The direct formulas lose all accuracy to cancellation for small |z| (and are 0/0 at z=0),
    so each is evaluated as the mean of its values on a circle of radius 1 around z (Cauchy's
    integral formula with the trapezoidal rule, Kassam & Trefethen sec. 2), which converges
    geometrically because the functions are entire.
    """
    if n_contour < 4:
        raise ValueError(f"n_contour must be an integer >= 4, got {n_contour!r}")
    lin = np.asarray(lin)
    z = dt * lin
    roots = np.exp(2j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    lr = z[..., None] + roots
    elr = np.exp(lr)
    lr3 = lr**3
    q = dt * np.mean((np.exp(lr / 2) - 1) / lr, axis=-1)
    f1 = dt * np.mean((-4 - lr + elr * (4 - 3 * lr + lr**2)) / lr3, axis=-1)
    f2 = dt * np.mean((2 + lr + elr * (lr - 2)) / lr3, axis=-1)
    f3 = dt * np.mean((-4 - 3 * lr - lr**2 + elr * (4 - lr)) / lr3, axis=-1)
    if not np.iscomplexobj(lin):
        # Conjugate-symmetric contour: the imaginary parts are pure round-off.
        q, f1, f2, f3 = q.real, f1.real, f2.real, f3.real
    return np.exp(z), np.exp(z / 2), q, f1, f2, f3


def _validate(
    d: object, k: object, n: object, dt: object, t_end: object, n_snapshots: object
) -> tuple[float, float, int, float, float, int, int]:
    """Check the arguments and return them, plus the number of steps between snapshots."""
    d = _check_float("d", d, "a finite float >= 0", lambda v: v >= 0)
    k = _check_float("k", k, "a finite float", lambda v: True)
    n = _check_positive_int("n", n, minimum=2)
    dt = _check_float("dt", dt, "a finite float > 0", lambda v: v > 0)
    t_end = _check_float("t_end", t_end, "a finite float > 0", lambda v: v > 0)
    n_snapshots = _check_positive_int("n_snapshots", n_snapshots, minimum=2)
    interval = t_end / (n_snapshots - 1)
    steps = round(interval / dt)
    # Snapshots must fall exactly on time steps; otherwise they would be at shifted times.
    if steps < 1 or abs(steps * dt - interval) > 1e-9 * interval:
        raise ValueError(
            f"dt must divide the snapshot interval t_end / (n_snapshots - 1) = {interval!r} "
            f"into a whole number of steps, got dt={dt!r}"
        )
    return d, k, n, dt, t_end, n_snapshots, steps


def _grid(n: int, t_end: float, n_snapshots: int) -> tuple[np.ndarray, np.ndarray]:
    x = -1.0 + 2.0 * np.arange(n) / n
    t = np.linspace(0.0, t_end, n_snapshots)
    return t, x


def solve_allen_cahn(
    d: float = 1e-4,
    k: float = 5.0,
    n: int = 512,
    dt: float = 1e-4,
    t_end: float = 1.0,
    n_snapshots: int = 201,
) -> AllenCahnReference:
    """Solve Allen-Cahn by Fourier pseudo-spectral ETDRK4 (Kassam & Trefethen 2005).

    Args:
        d: diffusion coefficient, >= 0.
        k: reaction rate.
        n: number of distinct periodic grid points ``x_j = -1 + 2 j / n``, >= 2.
        dt: time step, > 0; must divide ``t_end / (n_snapshots - 1)`` into whole steps.
        t_end: final time, > 0.
        n_snapshots: number of equally spaced output times in [0, t_end], both included.

    Returns:
        An :class:`AllenCahnReference` with ``u`` of shape ``(n_snapshots, n)``.

    Raises:
        ValueError: naming the offending argument.
    """
    d, k, n, dt, t_end, n_snapshots, steps = _validate(d, k, n, dt, t_end, n_snapshots)
    t, x = _grid(n, t_end, n_snapshots)

    # Domain length 2, so the wavenumbers are pi * (0, 1, ..., n // 2) for the real FFT.
    kx = np.pi * np.arange(n // 2 + 1)
    lin = -d * kx**2
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(lin, dt)

    def nonlinear(v_hat: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v_hat, n)
        return np.fft.rfft(k * (u - u**3))

    u0 = x**2 * np.cos(np.pi * x)
    out = np.empty((n_snapshots, n))
    out[0] = u0
    v = np.fft.rfft(u0)
    # ETDRK4, Kassam & Trefethen (2005) eq. (2.5) / kursiv.m.
    for i in range(1, n_snapshots):
        for _ in range(steps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out[i] = np.fft.irfft(v, n)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(
            f"Allen-Cahn solve diverged (d={d}, k={k}, n={n}, dt={dt}); try a smaller dt"
        )
    return AllenCahnReference(t=t, x=x, u=out, d=d, k=k)


def load_or_build_allen_cahn(
    path: str | Path,
    d: float = 1e-4,
    k: float = 5.0,
    n: int = 512,
    dt: float = 1e-4,
    t_end: float = 1.0,
    n_snapshots: int = 201,
    log: Callable[[str], object] | None = None,
    force: bool = False,
) -> AllenCahnReference:
    """Return the Allen-Cahn reference, from the HDF5 cache at ``path`` when it is valid.

    The file holds datasets ``t``, ``x``, ``u`` and, as root attributes, every parameter plus
    a format version. It is built (and written atomically, creating parent folders) when it is
    missing, was made with other parameters, or is corrupt: not HDF5, missing datasets, wrong
    shapes, non-finite values, values that no longer match their stored checksum, no checksum
    (a cache from before checksums) or a grid that does not match. Each rebuild is reported with
    the file name and the reason through ``log``, by default the ``pinn_exp.reference`` logger
    (see :func:`~pinn_exp.reference.cache.report`; a changed checksum as a warning).
    ``force=True`` rebuilds unconditionally. Arguments as in :func:`solve_allen_cahn` (Kassam &
    Trefethen 2005).
    """
    path = Path(path)
    d, k, n, dt, t_end, n_snapshots, _ = _validate(d, k, n, dt, t_end, n_snapshots)
    attrs = {
        "problem": "allen_cahn",
        "format_version": FORMAT_VERSION,
        "method": "fourier-pseudospectral-etdrk4",
        "initial_condition": "x^2 cos(pi x)",
        "n_contour": N_CONTOUR,
        "d": d,
        "k": k,
        "n": n,
        "dt": dt,
        "t_end": t_end,
        "n_snapshots": n_snapshots,
    }
    t, x = _grid(n, t_end, n_snapshots)

    if force:
        reason = "rebuild forced"
    else:
        arrays, reason = read_cached(
            path, attrs, {"t": t.shape, "x": x.shape, "u": (n_snapshots, n)}
        )
        if arrays is not None:
            if np.allclose(arrays["t"], t, rtol=0, atol=1e-12) and np.allclose(
                arrays["x"], x, rtol=0, atol=1e-12
            ):
                report(f"allen_cahn reference: reusing {path}", log)
                return AllenCahnReference(
                    t=arrays["t"], x=arrays["x"], u=arrays["u"].astype(np.float64), d=d, k=k
                )
            reason = "the stored t or x grid does not match the parameters"

    report(f"allen_cahn reference: building {path} ({reason})", log, warning=MODIFIED in reason)
    ref = solve_allen_cahn(d=d, k=k, n=n, dt=dt, t_end=t_end, n_snapshots=n_snapshots)
    write_atomic_h5(path, {"t": ref.t, "x": ref.x, "u": ref.u}, attrs)
    return ref
