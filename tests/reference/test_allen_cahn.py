"""Tests for the Allen-Cahn ETDRK4 reference (Kassam & Trefethen 2005) and its HDF5 cache."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

import pinn_exp.reference.allen_cahn as ac
from pinn_exp.reference.allen_cahn import (
    AllenCahnReference,
    etdrk4_coefficients,
    load_or_build_allen_cahn,
    solve_allen_cahn,
)
from pinn_exp.reference.cache import CHECKSUM_ATTR, checksum, read_cached, write_atomic_h5

# Cheap parameters for the cache tests: 20 steps on 64 points.
SMALL = {"n": 64, "dt": 1e-3, "t_end": 0.01, "n_snapshots": 3}


@pytest.fixture(scope="module")
def ref() -> AllenCahnReference:
    return solve_allen_cahn()


@pytest.fixture(scope="module")
def ref_half_dt() -> AllenCahnReference:
    return solve_allen_cahn(dt=5e-5)


@pytest.fixture(scope="module")
def ref_fine() -> AllenCahnReference:
    return solve_allen_cahn(n=1024)


@pytest.fixture
def counted_solves(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record every call load_or_build makes to the solver."""
    calls: list[dict] = []
    real = ac.solve_allen_cahn

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(ac, "solve_allen_cahn", counting)
    return calls


# --- solution --------------------------------------------------------------------------------


def test_grid_and_initial_snapshot(ref: AllenCahnReference) -> None:
    assert ref.t.shape == (201,)
    assert ref.x.shape == (512,)
    assert ref.u.shape == (201, 512)
    assert ref.u.dtype == np.float64
    np.testing.assert_allclose(ref.t, np.arange(201) * 0.005, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ref.x, -1 + 2 * np.arange(512) / 512, rtol=0, atol=0)
    np.testing.assert_allclose(ref.u[0], ref.x**2 * np.cos(np.pi * ref.x), rtol=0, atol=1e-15)
    assert (ref.d, ref.k) == (1e-4, 5.0)


def test_halving_dt_changes_solution_by_less_than_1e_9(
    ref: AllenCahnReference, ref_half_dt: AllenCahnReference
) -> None:
    # Measured: about 7e-12 (ETDRK4 error at dt=1e-4 is at round-off level).
    assert np.max(np.abs(ref.u - ref_half_dt.u)) < 1e-9


def test_doubling_n_changes_solution_by_less_than_1e_3(
    ref: AllenCahnReference, ref_fine: AllenCahnReference
) -> None:
    # The grid of n=1024 contains that of n=512 at its even indices.
    np.testing.assert_array_equal(ref_fine.x[::2], ref.x)
    diff = np.abs(ref.u - ref_fine.u[:, ::2])
    # Measured: about 5.8e-4, at t=0.015. u0 is only C^0 as a periodic function
    # (u0'(-1) = 2, u0'(1) = -2), so the Fourier convergence is algebraic until the reaction has
    # flattened the kink; by t=1 the two agree to about 1e-6.
    assert np.max(diff) < 1e-3
    assert np.max(diff[-1]) < 1e-5


def test_solution_is_bounded_and_reaches_metastable_state(ref: AllenCahnReference) -> None:
    assert np.all(np.abs(ref.u) <= 1.05)
    u_end = ref.u[-1]
    assert np.max(np.abs(u_end)) > 0.95
    # u0 is even and the equation preserves that: u(x_j) = u(x_{n-j}) = u(-x_j).
    np.testing.assert_allclose(u_end[1:], u_end[1:][::-1], rtol=0, atol=1e-10)
    # Known shape at t=1: a -1 plateau around the periodic boundary, +1 plateaus around
    # x = +-0.3, and a small value at x = 0 where u0 has its double root.
    x = ref.x
    assert np.all(np.abs(u_end[np.abs(x) > 0.7] + 1) < 1e-2)
    assert np.all(u_end[(np.abs(x) > 0.25) & (np.abs(x) < 0.35)] > 0.95)
    assert abs(u_end[x == 0][0]) < 0.1


def test_reference_arrays_are_read_only(ref: AllenCahnReference) -> None:
    with pytest.raises(ValueError):
        ref.u[0, 0] = 1.0


# --- ETDRK4 coefficients ---------------------------------------------------------------------


def _direct(z: np.ndarray, h: float) -> tuple[np.ndarray, ...]:
    ez = np.exp(z)
    q = h * (np.exp(z / 2) - 1) / z
    f1 = h * (-4 - z + ez * (4 - 3 * z + z**2)) / z**3
    f2 = h * (2 + z + ez * (z - 2)) / z**3
    f3 = h * (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3
    return ez, np.exp(z / 2), q, f1, f2, f3


@pytest.mark.parametrize(
    "lin", [np.array([-20.0, -50.0, -100.0, -400.0, 30.0]), np.array([-30.0 + 20.0j, 5.0 - 40.0j])]
)
def test_etdrk4_coefficients_match_direct_formula_for_large_z(lin: np.ndarray) -> None:
    h = 0.1  # |z| = |h L| from 2 to 40: no cancellation in the direct formulas.
    got = etdrk4_coefficients(lin, h)
    for name, g, w in zip(
        ("E", "E2", "Q", "f1", "f2", "f3"), got, _direct(h * lin, h), strict=True
    ):
        assert np.iscomplexobj(g) == np.iscomplexobj(lin), name
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=0, err_msg=name)


def test_etdrk4_coefficients_reduce_to_rk4_at_zero() -> None:
    h = 1e-4
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(np.array([0.0, -1e-12]), h)
    # With L = 0, ETDRK4 is classical RK4 (Kassam & Trefethen 2005, sec. 2).
    np.testing.assert_allclose(e, 1.0, rtol=1e-12)
    np.testing.assert_allclose(e2, 1.0, rtol=1e-12)
    np.testing.assert_allclose(q, h / 2, rtol=1e-13)
    for f in (f1, f2, f3):
        np.testing.assert_allclose(f, h / 6, rtol=1e-13)


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": -4}, "n"),
        ({"n": 64.0}, "n"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -1e-4}, "dt"),
        ({"dt": float("nan")}, "dt"),
        ({"d": -1e-4}, "d"),
        ({"k": float("inf")}, "k"),
        ({"t_end": 0.0}, "t_end"),
        ({"n_snapshots": 1}, "n_snapshots"),
        ({"dt": 3e-4}, "dt"),  # does not divide the snapshot interval 0.005
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str, tmp_path) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must"):
        solve_allen_cahn(**kwargs)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        load_or_build_allen_cahn(tmp_path / "ac.h5", **kwargs)
    assert not (tmp_path / "ac.h5").exists()


# --- cache -----------------------------------------------------------------------------------


def test_cache_is_built_then_reused(tmp_path, counted_solves) -> None:
    path = tmp_path / "nested" / "dir" / "ac.h5"
    messages: list[str] = []
    first = load_or_build_allen_cahn(path, log=messages.append, **SMALL)
    assert path.is_file()
    assert len(counted_solves) == 1
    mtime = path.stat().st_mtime_ns
    second = load_or_build_allen_cahn(path, log=messages.append, **SMALL)
    assert len(counted_solves) == 1
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first.u, second.u)
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.t, second.t)
    assert (second.d, second.k) == (1e-4, 5.0)
    assert "building" in messages[0] and str(path) in messages[0]
    assert "reusing" in messages[1]
    # No temporary files left next to the cache.
    assert [p.name for p in path.parent.iterdir()] == ["ac.h5"]
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == ac.FORMAT_VERSION
        for key, value in SMALL.items():
            assert f.attrs[key] == value
        assert f.attrs["d"] == 1e-4 and f.attrs["k"] == 5.0


def test_cache_is_rebuilt_when_parameters_change(tmp_path, counted_solves) -> None:
    path = tmp_path / "ac.h5"
    load_or_build_allen_cahn(path, log=lambda m: None, **SMALL)
    messages: list[str] = []
    ref = load_or_build_allen_cahn(path, d=1e-3, log=messages.append, **SMALL)
    assert len(counted_solves) == 2
    assert ref.d == 1e-3
    assert len(messages) == 1
    assert str(path) in messages[0] and "'d'" in messages[0] and "0.001" in messages[0]
    # The rebuilt file now serves the new parameters.
    load_or_build_allen_cahn(path, d=1e-3, log=lambda m: None, **SMALL)
    assert len(counted_solves) == 2


def test_force_rebuilds(tmp_path, counted_solves) -> None:
    path = tmp_path / "ac.h5"
    load_or_build_allen_cahn(path, log=lambda m: None, **SMALL)
    messages: list[str] = []
    load_or_build_allen_cahn(path, log=messages.append, force=True, **SMALL)
    assert len(counted_solves) == 2
    assert "forced" in messages[0]


def _garbage(path) -> None:
    path.write_bytes(b"this is not an HDF5 file \x00\x01\x02" * 10)


def _drop_u(path) -> None:
    with h5py.File(path, "a") as f:
        del f["u"]


def _reshape_u(path) -> None:
    with h5py.File(path, "a") as f:
        u = f["u"][()]
        del f["u"]
        f["u"] = u[:, :-1]


def _nan_u(path) -> None:
    with h5py.File(path, "a") as f:
        f["u"][1, 3] = np.nan


def _flip_u(path) -> None:
    """One stored value changed in place: shape, dtype and finiteness all still fine."""
    with h5py.File(path, "a") as f:
        f["u"][1, 3] = -f["u"][1, 3] + 1e-3


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("corrupt", "why"),
    [
        (_garbage, "not a readable HDF5"),
        (_truncate, "not a readable HDF5"),
        (_drop_u, "dataset 'u' is missing"),
        (_reshape_u, "dataset 'u' has shape"),
        (_nan_u, "non-finite"),
        (_flip_u, "dataset 'u' does not match its checksum"),
    ],
)
def test_corrupt_cache_is_reported_and_rebuilt(tmp_path, counted_solves, corrupt, why) -> None:
    path = tmp_path / "ac.h5"
    good = load_or_build_allen_cahn(path, log=lambda m: None, **SMALL)
    corrupt(path)
    messages: list[str] = []
    rebuilt = load_or_build_allen_cahn(path, log=messages.append, **SMALL)
    assert len(counted_solves) == 2
    assert len(messages) == 1
    assert str(path) in messages[0] and why in messages[0]
    np.testing.assert_array_equal(rebuilt.u, good.u)
    # The rebuilt file is valid again.
    load_or_build_allen_cahn(path, log=lambda m: None, **SMALL)
    assert len(counted_solves) == 2


def test_changed_value_is_rebuilt_with_a_warning(tmp_path, counted_solves, caplog) -> None:
    """With the default log, a cache whose values changed is reported through logging."""
    path = tmp_path / "ac.h5"
    good = load_or_build_allen_cahn(path, **SMALL)
    with h5py.File(path, "r") as f:
        assert all(f[n].attrs[CHECKSUM_ATTR] == checksum(f[n][()]) for n in ("t", "x", "u"))
    _flip_u(path)
    caplog.set_level(logging.INFO, logger="pinn_exp.reference")
    rebuilt = load_or_build_allen_cahn(path, **SMALL)
    assert len(counted_solves) == 2
    (record,) = [r for r in caplog.records if "building" in r.getMessage()]
    assert record.name == "pinn_exp.reference" and record.levelno == logging.WARNING
    assert str(path) in record.getMessage() and "values changed" in record.getMessage()
    np.testing.assert_array_equal(rebuilt.u, good.u)


def test_cache_without_checksums_is_rebuilt_once(tmp_path, counted_solves) -> None:
    path = tmp_path / "ac.h5"
    load_or_build_allen_cahn(path, log=lambda m: None, **SMALL)
    with h5py.File(path, "a") as f:  # as written before checksums were stored
        for name in ("t", "x", "u"):
            del f[name].attrs[CHECKSUM_ATTR]
    messages: list[str] = []
    load_or_build_allen_cahn(path, log=messages.append, **SMALL)
    load_or_build_allen_cahn(path, log=messages.append, **SMALL)
    assert len(counted_solves) == 2
    assert "has no checksum" in messages[0] and "reusing" in messages[1]


def test_checksum_covers_dtype_shape_and_bytes() -> None:
    a = np.arange(6.0)
    assert checksum(a) == checksum(a.copy()) == checksum(a.astype(">f8"))
    assert checksum(a) != checksum(a.reshape(2, 3))
    assert checksum(a) != checksum(a.astype(np.float32))
    b = a.copy()
    b[4] = np.nextafter(b[4], 10)
    assert checksum(a) != checksum(b)


def test_generic_cache_nested_names_and_free_axes(tmp_path) -> None:
    # The finite-element reference stores meshes: nested names and shapes known only in part.
    path = tmp_path / "fe.h5"
    points = np.random.default_rng(0).random((7, 2))
    cells = np.arange(9, dtype=np.int64).reshape(3, 3) % 7
    write_atomic_h5(path, {"mesh/points": points, "mesh/cells": cells}, {"version": 2, "nu": 0.1})
    required = {"mesh/points": (None, 2), "mesh/cells": (None, 3)}
    arrays, reason = read_cached(path, {"version": 2, "nu": 0.1}, required)
    assert reason == ""
    np.testing.assert_array_equal(arrays["mesh/points"], points)
    np.testing.assert_array_equal(arrays["mesh/cells"], cells)
    arrays, reason = read_cached(path, {"version": 2, "nu": 0.1}, {"mesh/cells": (None, 4)})
    assert arrays is None and "mesh/cells" in reason
    arrays, reason = read_cached(path, {"version": 3}, required)
    assert arrays is None and "'version'" in reason
    arrays, reason = read_cached(path, {"scheme": "P2P1"}, required)
    assert arrays is None and "'scheme' is missing" in reason
    arrays, reason = read_cached(tmp_path / "absent.h5", {}, required)
    assert arrays is None and "no file" in reason
