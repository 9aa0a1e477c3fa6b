"""Point location and interpolation on (curved) P1/P2 triangle meshes.

A cell is given by 3 vertex indices (straight triangle) or 6 node indices in scikit-fem's
``ElementTriP2`` order ``(v0, v1, v2, m01, m12, m02)``; the 6-node cell is the image of the
reference triangle {xi >= 0, eta >= 0, xi + eta <= 1} under the isoparametric quadratic map
``F(xi) = sum_k N_k(xi) X_k``, so its edges are parabolic arcs (curved boundary cells). See
e.g. P. G. Ciarlet and P.-A. Raviart, "The combined effect of curved boundaries and numerical
integration in isoparametric finite element methods", in: The Mathematical Foundations of the
Finite Element Method, Academic Press, 1972, pp. 409-474.

:class:`TriangleLocator` finds, for each query point, a cell containing it and the reference
coordinates of the point in that cell. Candidate cells come from a k-d tree on the cell
centres; each candidate is tested by inverting its map (Newton's method, exact in one step for
straight cells) and checking the barycentric coordinates. Every cell whose enclosing disc
(centre, radius bound below) contains the point is eventually tested, so a point is reported
outside (-1) only if no cell contains it. This is written here because scikit-fem's probes
assume straight cells and its fallback search over all cells can exhaust memory.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "TriangleLocator",
    "cell_map",
    "interpolate",
    "lagrange_basis",
    "lagrange_basis_grad",
]


def lagrange_basis(ref: np.ndarray, order: int) -> np.ndarray:
    """Lagrange basis on the reference triangle at ``ref`` (n, 2): (n, 3) for P1, (n, 6) for P2.

    Node order as in scikit-fem's ``ElementTriP1``/``ElementTriP2``: vertices (0, 0), (1, 0),
    (0, 1), then the midpoints of edges 0-1, 1-2, 0-2.
    """
    x, y = np.asarray(ref, dtype=np.float64).T
    l0 = 1.0 - x - y
    if order == 1:
        return np.stack([l0, x, y], axis=1)
    if order == 2:
        return np.stack(
            [
                l0 * (2 * l0 - 1),
                x * (2 * x - 1),
                y * (2 * y - 1),
                4 * x * l0,
                4 * x * y,
                4 * y * l0,
            ],
            axis=1,
        )
    raise ValueError(f"order must be 1 or 2, got {order!r}")


def lagrange_basis_grad(ref: np.ndarray, order: int) -> np.ndarray:
    """Reference gradients of :func:`lagrange_basis`: (n, 3 or 6, 2)."""
    x, y = np.asarray(ref, dtype=np.float64).T
    zero = np.zeros_like(x)
    if order == 1:
        return np.broadcast_to(
            np.array([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]]), (x.size, 3, 2)
        ).copy()
    if order == 2:
        l0 = 1.0 - x - y
        dl0 = 1.0 - 4 * l0  # d/dxi of l0 (2 l0 - 1) = -(4 l0 - 1), same for d/deta
        gx = [dl0, 4 * x - 1, zero, 4 * (l0 - x), 4 * y, -4 * y]
        gy = [dl0, zero, 4 * y - 1, -4 * x, 4 * x, 4 * (l0 - y)]
        return np.stack([np.stack(gx, 1), np.stack(gy, 1)], axis=2)
    raise ValueError(f"order must be 1 or 2, got {order!r}")


def _order(cells: np.ndarray) -> int:
    if cells.ndim != 2 or cells.shape[1] not in (3, 6):
        raise ValueError(f"cells must have shape (n, 3) or (n, 6), got {cells.shape}")
    return 1 if cells.shape[1] == 3 else 2


def cell_map(
    nodes: np.ndarray, cells: np.ndarray, cell_idx: np.ndarray, ref: np.ndarray
) -> np.ndarray:
    """Physical coordinates ``F_c(ref)`` (n, 2) of reference points in cells ``cell_idx``."""
    cells = np.asarray(cells)
    basis = lagrange_basis(ref, _order(cells))
    return np.einsum("nk,nkd->nd", basis, np.asarray(nodes)[cells[cell_idx]])


def interpolate(
    values: np.ndarray, cells: np.ndarray, cell_idx: np.ndarray, ref: np.ndarray
) -> np.ndarray:
    """Evaluate the finite-element field with nodal ``values`` (n_nodes, ...) at reference points.

    ``cells`` (n_cells, 3) gives P1 and (n_cells, 6) gives P2 interpolation; a P1 field on a P2
    mesh is evaluated by passing ``cells[:, :3]``. Returns shape (n,) + values.shape[1:].
    """
    cells = np.asarray(cells)
    basis = lagrange_basis(ref, _order(cells))
    return np.einsum("nk,nk...->n...", basis, np.asarray(values)[cells[cell_idx]])


class TriangleLocator:
    """Find the cell and reference coordinates of points in a (curved) triangle mesh.

    Args:
        nodes: (n_nodes, 2) node coordinates.
        cells: (n_cells, 3) straight or (n_cells, 6) quadratic cells (see module docstring).
            The cells must not be inverted; their orientation does not matter.
    """

    # Newton steps for the inverse map: 1 suffices for straight cells, and for the mildly
    # curved cells of a boundary-fitted mesh the error squares each step from ~sagitta/h.
    NEWTON_STEPS = 6
    FIRST_K = 8
    CHUNK = 20000

    def __init__(self, nodes: np.ndarray, cells: np.ndarray) -> None:
        nodes = np.asarray(nodes, dtype=np.float64)
        cells = np.asarray(cells)
        if nodes.ndim != 2 or nodes.shape[1] != 2:
            raise ValueError(f"nodes must have shape (n_nodes, 2), got {nodes.shape}")
        self.order = _order(cells)
        if cells.size and (cells.min() < 0 or cells.max() >= nodes.shape[0]):
            raise ValueError(f"cells must index nodes in [0, {nodes.shape[0]}), got out-of-range")
        if cells.shape[0] == 0:
            raise ValueError("cells must hold at least one cell, got none")
        self.nodes = nodes
        self.cells = cells.astype(np.int64)
        xy = nodes[self.cells]  # (n_cells, 3 or 6, 2)
        vert = xy[:, :3]
        self.centres = vert.mean(axis=1)
        radius = np.linalg.norm(vert - self.centres[:, None], axis=2).max(axis=1)
        if self.order == 2:
            # F = affine part + sum_e 4 l_i l_j delta_e with delta_e the midpoint's offset from
            # the chord midpoint; sum_e 4 l_i l_j <= 4/3, which bounds the bulge of the cell.
            chord_mid = 0.5 * (vert + vert[:, [1, 2, 0]])  # edges 01, 12, 20
            delta = np.linalg.norm(xy[:, 3:] - chord_mid, axis=2).max(axis=1)
            radius = radius + 4.0 / 3.0 * delta
            # Cells whose midpoints sit on the chords have an affine map: no Newton needed.
            self.curved = delta > 1e-13 * radius
        else:
            self.curved = np.zeros(cells.shape[0], dtype=bool)
        self.radius = radius * (1 + 1e-12) + 1e-15
        self.max_radius = float(self.radius.max())
        self.tree = cKDTree(self.centres)

    def _invert(self, cand: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference coordinates of ``pts`` (m, 2) in cells ``cand`` (m,), and the map residual."""
        xy = self.nodes[self.cells[cand]]
        v0, v1, v2 = xy[:, 0], xy[:, 1], xy[:, 2]
        # Start from the straight triangle's barycentric solution.
        a = np.stack([v1 - v0, v2 - v0], axis=2)  # (m, 2, 2): columns dF/dxi, dF/deta
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        rhs = pts - v0
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = np.stack(
                [
                    (a[:, 1, 1] * rhs[:, 0] - a[:, 0, 1] * rhs[:, 1]) / det,
                    (a[:, 0, 0] * rhs[:, 1] - a[:, 1, 0] * rhs[:, 0]) / det,
                ],
                axis=1,
            )
        resid = np.zeros(len(cand))
        curved = np.nonzero(self.curved[cand])[0]
        if curved.size:
            ref[curved], resid[curved] = self._newton(xy[curved], pts[curved], ref[curved])
        return ref, resid

    def _newton(
        self, xy: np.ndarray, pts: np.ndarray, ref: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Newton's method for ``F(ref) = pts`` on quadratic cells with nodes ``xy`` (m, 6, 2)."""
        with np.errstate(all="ignore"):
            for _ in range(self.NEWTON_STEPS):
                # Far-away candidates only need to be rejected; keep their iterates bounded.
                ref = np.clip(ref, -2.0, 3.0)
                r = np.einsum("nk,nkd->nd", lagrange_basis(ref, 2), xy) - pts
                jac = np.einsum("nkd,nke->nde", xy, lagrange_basis_grad(ref, 2))
                det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
                step = np.stack(
                    [
                        (jac[:, 1, 1] * r[:, 0] - jac[:, 0, 1] * r[:, 1]) / det,
                        (jac[:, 0, 0] * r[:, 1] - jac[:, 1, 0] * r[:, 0]) / det,
                    ],
                    axis=1,
                )
                ref = ref - np.where(np.isfinite(step), step, 0.0)
            resid = np.linalg.norm(
                np.einsum("nk,nkd->nd", lagrange_basis(ref, 2), xy) - pts, axis=1
            )
        return ref, resid

    def locate(self, points: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
        """Locate ``points`` (n, 2).

        Args:
            points: query points.
            tol: a point counts as inside a cell when all its barycentric coordinates are
                >= -tol (points on shared edges are given to one of the cells).

        Returns:
            ``(cell, ref)``: cell index (n,) with -1 for points in no cell, and reference
            coordinates (n, 2) (NaN where the cell is -1).
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points must be finite, got NaN or inf coordinates")
        if not (isinstance(tol, (int, float)) and 0 <= tol < 0.5):
            raise ValueError(f"tol must be a float in [0, 0.5), got {tol!r}")
        cell = np.full(pts.shape[0], -1, dtype=np.int64)
        ref = np.full((pts.shape[0], 2), np.nan)
        # Chunks bound the memory of the candidate pairs (~100 bytes each, per round).
        for start in range(0, pts.shape[0], self.CHUNK):
            stop = start + self.CHUNK
            cell[start:stop], ref[start:stop] = self._locate(pts[start:stop], tol)
        return cell, ref

    def _locate(self, pts: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        n = pts.shape[0]
        cell = np.full(n, -1, dtype=np.int64)
        ref = np.full((n, 2), np.nan)
        todo = np.arange(n)
        n_cells = self.cells.shape[0]
        k_done, k = 0, min(self.FIRST_K, n_cells)
        while todo.size:
            dist, idx = self.tree.query(pts[todo], k=k)
            dist, idx = dist.reshape(todo.size, k), idx.reshape(todo.size, k)
            # Only the candidates not tested in an earlier round, and only those whose
            # enclosing disc contains the point.
            dist, idx = dist[:, k_done:], idx[:, k_done:]
            rows, cols = np.nonzero(dist <= self.radius[idx])
            found = np.full(todo.size, -1, dtype=np.int64)
            found_ref = np.full((todo.size, 2), np.nan)
            if rows.size:
                cand = idx[rows, cols]
                r, resid = self._invert(cand, pts[todo[rows]])
                lam_min = np.minimum(np.minimum(r[:, 0], r[:, 1]), 1.0 - r[:, 0] - r[:, 1])
                scale = self.radius[cand]
                inside = (lam_min >= -tol) & (resid <= 1e-10 * scale)
                # Pairs come row by row, nearest candidate first: keep each row's first hit.
                hits = np.nonzero(inside)[0]
                _, first = np.unique(rows[hits], return_index=True)
                sel = hits[first]
                found[rows[sel]] = cand[sel]
                found_ref[rows[sel]] = r[sel]
            hit = found >= 0
            cell[todo[hit]] = found[hit]
            ref[todo[hit]] = found_ref[hit]
            # Unfound points are outside once every cell whose disc could reach them is tested.
            exhausted = (k >= n_cells) | (dist[:, -1] > self.max_radius)
            todo = todo[~hit & ~exhausted]
            k_done, k = k, min(4 * k, n_cells)
        return cell, ref
