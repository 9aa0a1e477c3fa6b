"""Point location and interpolation on curved P2 triangle meshes."""

from __future__ import annotations

import numpy as np
import pytest
from skfem import Basis, ElementTriP2

from pinn_exp.reference.locate import (
    TriangleLocator,
    cell_map,
    interpolate,
    lagrange_basis,
    lagrange_basis_grad,
)
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, HEIGHT, LENGTH
from pinn_exp.reference.mesh import channel_cylinder_mesh as make_mesh

CX, CY = CYLINDER_CENTER
R = CYLINDER_RADIUS


@pytest.fixture(scope="module")
def mesh_arrays() -> tuple[np.ndarray, np.ndarray]:
    mesh = make_mesh(1)
    cells = Basis(mesh, ElementTriP2(), intorder=1).element_dofs.T
    return mesh.doflocs.T.copy(), cells


@pytest.fixture(scope="module")
def locator(mesh_arrays) -> TriangleLocator:
    return TriangleLocator(*mesh_arrays)


def _barycentric_min(ref: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(ref[:, 0], ref[:, 1]), 1 - ref[:, 0] - ref[:, 1])


def test_lagrange_basis_is_nodal_and_gradients_match_finite_differences():
    nodes = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0], [0.5, 0.5], [0, 0.5]], dtype=float)
    np.testing.assert_allclose(lagrange_basis(nodes, 2), np.eye(6), atol=1e-15)
    np.testing.assert_allclose(lagrange_basis(nodes[:3], 1), np.eye(3), atol=1e-15)
    rng = np.random.default_rng(0)
    ref = rng.random((20, 2)) * 0.5
    eps = 1e-6
    for order in (1, 2):
        g = lagrange_basis_grad(ref, order)
        for d in range(2):
            shift = np.zeros(2)
            shift[d] = eps
            fd = (lagrange_basis(ref + shift, order) - lagrange_basis(ref - shift, order)) / (
                2 * eps
            )
            np.testing.assert_allclose(g[:, :, d], fd, atol=1e-8)
    with pytest.raises(ValueError, match="order"):
        lagrange_basis(ref, 3)


def test_random_fluid_points_are_located_and_round_trip(mesh_arrays, locator):
    nodes, cells = mesh_arrays
    rng = np.random.default_rng(1)
    pts = rng.random((5000, 2)) * [LENGTH, HEIGHT]
    pts = pts[np.hypot(pts[:, 0] - CX, pts[:, 1] - CY) > R + 1e-9]
    cell, ref = locator.locate(pts)
    assert np.all(cell >= 0)
    assert np.all(_barycentric_min(ref) >= -1e-9)
    np.testing.assert_allclose(cell_map(nodes, cells, cell, ref), pts, rtol=0, atol=1e-13)


def test_boundary_layer_points_land_in_the_curved_cells(mesh_arrays, locator):
    nodes, cells = mesh_arrays
    # Points on and just outside the circle, where the cells are curved: the inverse of the
    # quadratic map must round-trip (inverting the straight triangle instead is off by up to
    # the sagitta, ~2e-4 here).
    theta = np.linspace(0, 2 * np.pi, 997, endpoint=False)
    gap = np.array([0.0, 1e-9, 1e-6, 1e-4])
    rr = (R + gap[:, None]) * np.ones_like(theta)
    pts = np.stack([CX + rr * np.cos(theta), CY + rr * np.sin(theta)], -1).reshape(-1, 2)
    cell, ref = locator.locate(pts)
    assert np.all(cell >= 0)
    np.testing.assert_allclose(cell_map(nodes, cells, cell, ref), pts, rtol=0, atol=1e-13)
    assert np.all(_barycentric_min(ref) >= -1e-9)
    # Every point is in a cell touching the cylinder (a curved one, or one with a single
    # vertex on the circle, for points next to that vertex).
    vert = nodes[cells[cell, :3]]
    assert np.all(np.abs(np.hypot(vert[..., 0] - CX, vert[..., 1] - CY) - R).min(axis=1) < 1e-12)


def test_curved_cells_exclude_the_sliver_between_chord_and_arc(mesh_arrays, locator):
    # Just inside the circle but outside the polygon of chords: the straight triangles contain
    # these points, the curved cells (whose edges are the arcs) correctly do not.
    nodes, cells = mesh_arrays
    theta = np.linspace(0, 2 * np.pi, 997, endpoint=False)
    pts = np.stack([CX + (R - 1e-6) * np.cos(theta), CY + (R - 1e-6) * np.sin(theta)], 1)
    cell, _ = locator.locate(pts)
    assert np.all(cell == -1)
    s_cell, _ = TriangleLocator(nodes, cells[:, :3]).locate(pts)
    assert np.mean(s_cell >= 0) > 0.8


def test_points_inside_the_cylinder_or_outside_the_channel_are_minus_one(locator):
    rng = np.random.default_rng(2)
    rad = R * np.sqrt(rng.random(500)) * (1 - 1e-6)
    ang = 2 * np.pi * rng.random(500)
    inside = np.stack([CX + rad * np.cos(ang), CY + rad * np.sin(ang)], 1)
    outside = np.array(
        [[-1e-6, 0.2], [LENGTH + 1e-6, 0.2], [1.0, -1e-6], [1.0, HEIGHT + 1e-6], [5.0, 5.0]]
    )
    cell, ref = locator.locate(np.concatenate([inside, outside]))
    assert np.all(cell == -1)
    assert np.all(np.isnan(ref))


def test_negative_answers_agree_with_brute_force(mesh_arrays, locator):
    # A point is -1 only if no cell at all contains it: check against inverting every cell.
    nodes, cells = mesh_arrays
    rng = np.random.default_rng(3)
    pts = np.concatenate(
        [
            [CX, CY] + (R - 1e-7) * np.stack([np.cos(a), np.sin(a)], 1)
            for a in [rng.random(20) * 2 * np.pi]
        ]
        + [rng.random((20, 2)) * [LENGTH, HEIGHT]]
    )
    cell, _ = locator.locate(pts)
    n_cells = cells.shape[0]
    for i, point in enumerate(pts):
        ref, resid = locator._invert(np.arange(n_cells), np.repeat(point[None], n_cells, 0))
        contains = (_barycentric_min(ref) >= -1e-9) & (resid <= 1e-10 * locator.radius)
        assert contains.any() == (cell[i] >= 0)


def test_interpolation_reproduces_linear_fields_on_curved_cells(mesh_arrays, locator):
    nodes, cells = mesh_arrays
    f = 1.5 - 2.0 * nodes[:, 0] + 0.7 * nodes[:, 1]
    theta = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    pts = np.stack([CX + 1.01 * R * np.cos(theta), CY + 1.01 * R * np.sin(theta)], 1)
    cell, ref = locator.locate(pts)
    exact = 1.5 - 2.0 * pts[:, 0] + 0.7 * pts[:, 1]
    np.testing.assert_allclose(interpolate(f, cells, cell, ref), exact, atol=1e-12)


def test_bad_arguments_raise_value_error(mesh_arrays, locator):
    nodes, cells = mesh_arrays
    with pytest.raises(ValueError, match="cells must have shape"):
        TriangleLocator(nodes, cells[:, :4])
    with pytest.raises(ValueError, match="nodes must have shape"):
        TriangleLocator(nodes[:, :1], cells)
    with pytest.raises(ValueError, match="cells must index nodes"):
        TriangleLocator(nodes[:10], cells)
    with pytest.raises(ValueError, match="points must have shape"):
        locator.locate(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points must be finite"):
        locator.locate(np.array([[np.nan, 0.1]]))
    with pytest.raises(ValueError, match="tol must be"):
        locator.locate(np.zeros((1, 2)), tol=-1.0)


def test_chunked_location_gives_the_same_answer(mesh_arrays):
    rng = np.random.default_rng(4)
    pts = rng.random((500, 2)) * [LENGTH + 0.2, HEIGHT + 0.1] - [0.1, 0.05]
    whole = TriangleLocator(*mesh_arrays)
    chunked = TriangleLocator(*mesh_arrays)
    chunked.CHUNK = 37
    (c1, r1), (c2, r2) = whole.locate(pts), chunked.locate(pts)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(r1, r2)
    assert (c1 < 0).sum() > 50 and (c1 >= 0).sum() > 300
