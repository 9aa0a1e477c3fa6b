"""Taylor-Hood P2/P1 discretisation of the steady Navier-Stokes equations, and Newton's method.

The dimensional steady equations (density 1) of :mod:`pinn_exp.reference.navier_stokes`,

    (u . grad) u + grad p - nu lap u = 0,    div u = 0,

are discretised with Taylor-Hood P2/P1 elements on the isoparametric quadratic mesh of
:mod:`pinn_exp.reference.mesh` (curved cylinder edges). :class:`Discretisation` holds the
spaces, the Stokes matrices, the convection Jacobian, the residual, the inflow data and the
forces on one mesh; :func:`newton` solves the discrete system by Newton's method on the full
Jacobian, each step by sparse LU (SuperLU, COLAMD ordering). Drag and lift are computed with
the volume-integral (residual) form of the boundary force, which converges at the rate of the
energy error squared instead of the rate of the boundary traces:

    V. John, "Higher order finite element methods and multigrid solvers in a benchmark problem
    for the 3D Navier-Stokes equations", Int. J. Numer. Meth. Fluids 40, 2002, 775-798
    (sec. 2.2), after R. Becker's drag formula (see also V. John and G. Matthies, Int. J.
    Numer. Meth. Fluids 37, 2001, 885-903).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from skfem import (
    Basis,
    BilinearForm,
    ElementTriP1,
    ElementTriP2,
    ElementVector,
    MeshTri2,
    asm,
)
from skfem.helpers import ddot, div, dot, grad, mul

from pinn_exp.reference.mesh import DIAMETER, HEIGHT

__all__ = ["INTORDER", "Discretisation", "newton"]

# Quadrature degree: exact for the Stokes terms on straight cells. The degree-5 convection
# integrand is under-integrated by one degree, which moves the DFG values by < 5e-7 (relative,
# checked against degree 6 at refinement 3), far below the discretisation error.
INTORDER = 4


@BilinearForm
def _laplace(u, v, w):
    return ddot(grad(u), grad(v))


@BilinearForm
def _divergence(u, q, w):
    return div(u) * q


@BilinearForm
def _convection_jacobian(du, v, w):
    # Derivative of (u.grad)u at u0 in direction du: (u0.grad)du + (du.grad)u0.
    # grad(a)[i, j] = d a_i / d x_j, so mul(grad(a), b) = (b.grad) a.
    u0 = w["u0"]
    return dot(mul(grad(du), u0) + mul(grad(u0), du), v)


class Discretisation:
    """Taylor-Hood P2/P1 spaces, the Stokes matrices and the boundary data on one mesh.

    The unknown vector is ``x = (velocity dofs, pressure dofs)``. The residual of the weak form
    ``nu (grad u, grad w) + ((u.grad)u, w) - (p, div w) - (q, div u)`` is
    ``K(nu) x + N(u)`` with ``N(u) = C(u) u / 2``, because the convection Jacobian ``C(u)``
    applied to ``u`` gives ``(u.grad)u`` twice; this saves one assembly per Newton step.
    """

    def __init__(self, mesh: MeshTri2) -> None:
        self.mesh = mesh
        self.ub = Basis(mesh, ElementVector(ElementTriP2()), intorder=INTORDER)
        self.pb = self.ub.with_element(ElementTriP1())
        self.n_u, self.n_p = self.ub.N, self.pb.N
        self.lap = asm(_laplace, self.ub).tocsr()
        self.div = asm(_divergence, self.ub, self.pb).tocsr()
        self.dirichlet = np.unique(
            np.concatenate([self.ub.get_dofs(b).all() for b in ("inlet", "walls", "cylinder")])
        )
        self.free = np.setdiff1d(np.arange(self.n_u + self.n_p), self.dirichlet)
        self.inlet_x = self.ub.get_dofs("inlet").all("u^1")
        self.cyl_x = self.ub.get_dofs("cylinder").all("u^1")
        self.cyl_y = self.ub.get_dofs("cylinder").all("u^2")
        # Scalar P2 numbering = mesh node numbering; vector dofs interleave (u, v) per node.
        # to_nodal/from_nodal rely on both, so check them rather than trust them.
        self.cells = Basis(mesh, ElementTriP2(), intorder=1).element_dofs.T.astype(np.int64)
        locs = self.ub.doflocs
        if not (
            np.array_equal(locs[:, 0::2], mesh.doflocs)
            and np.array_equal(locs[:, 1::2], mesh.doflocs)
            and np.all(self.inlet_x % 2 == 0)
        ):  # pragma: no cover - would mean a scikit-fem numbering change
            raise RuntimeError("unexpected scikit-fem P2 vector dof numbering")

    def stokes(self, nu: float) -> sp.csr_matrix:
        return sp.bmat([[nu * self.lap, -self.div.T], [-self.div, None]], format="csr")

    def boundary_values(self, u_max: float) -> np.ndarray:
        """Vector that is zero except for the inflow profile on the inlet x-velocity dofs."""
        x = np.zeros(self.n_u + self.n_p)
        y = self.ub.doflocs[1, self.inlet_x]
        x[self.inlet_x] = 4.0 * u_max * y * (HEIGHT - y) / HEIGHT**2
        return x

    def convection(self, x: np.ndarray) -> sp.csr_matrix:
        return asm(_convection_jacobian, self.ub, u0=self.ub.interpolate(x[: self.n_u])).tocsr()

    def residual(
        self, x: np.ndarray, nu: float, stokes: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """Full residual (Dirichlet rows included) and the convection Jacobian at ``x``."""
        conv = self.convection(x)
        res = (self.stokes(nu) if stokes is None else stokes) @ x
        res[: self.n_u] += 0.5 * (conv @ x[: self.n_u])
        return res, conv

    def forces(self, x: np.ndarray, nu: float, u_max: float) -> tuple[float, float]:
        """Drag and lift coefficients by the volume-integral form (John 2002, sec. 2.2).

        The force on the cylinder is ``F_i = -R(u, p; w_i)`` for any velocity test function
        ``w_i`` equal to the unit vector e_i on the cylinder and zero on the other Dirichlet
        boundaries; the discrete one is 1 at the cylinder's e_i dofs and 0 elsewhere.
        """
        res, _ = self.residual(x, nu)
        scale = -2.0 / ((2.0 * u_max / 3.0) ** 2 * DIAMETER)
        return scale * float(res[self.cyl_x].sum()), scale * float(res[self.cyl_y].sum())

    def to_nodal(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, p) at the P2 nodes; p's edge-node values are the P1 edge averages."""
        vel = x[: self.n_u].reshape(-1, 2)
        p_vert = x[self.n_u :]
        facets = self.mesh.facets
        p = np.concatenate([p_vert, 0.5 * (p_vert[facets[0]] + p_vert[facets[1]])])
        return vel[:, 0].copy(), vel[:, 1].copy(), p

    def from_nodal(self, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([np.stack([u, v], 1).ravel(), p[: self.mesh.nvertices]])


def newton(
    disc: Discretisation,
    x: np.ndarray,
    nu: float,
    tol: float,
    rel_tol: float,
    max_steps: int,
) -> tuple[np.ndarray, list[float], bool]:
    """Newton's method from ``x`` (which must carry the Dirichlet values).

    Stops when the l2 norm of the residual over the free rows is <= ``max(tol, rel_tol *
    initial norm)``, or on divergence (non-finite or 1e3-fold residual growth). Returns
    ``(x, residual norms, converged)``.
    """
    stokes = disc.stokes(nu)
    free = disc.free
    history: list[float] = []
    for step in range(max_steps + 1):
        res, conv = disc.residual(x, nu, stokes)
        norm = float(np.linalg.norm(res[free]))
        history.append(norm)
        if norm <= max(tol, rel_tol * history[0]):
            return x, history, True
        if not math.isfinite(norm) or norm > 1e3 * max(history[0], tol) or step == max_steps:
            return x, history, False
        jac = stokes + sp.block_diag([conv, sp.csr_matrix((disc.n_p, disc.n_p))], format="csr")
        # COLAMD: the other SuperLU orderings are orders of magnitude slower on this
        # saddle-point matrix (MMD_AT_PLUS_A did not finish a 60k system in minutes).
        lu = splu(jac[free][:, free].tocsc(), permc_spec="COLAMD")
        x = x.copy()
        x[free] -= lu.solve(res[free])
