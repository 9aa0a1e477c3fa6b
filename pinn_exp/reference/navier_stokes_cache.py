"""HDF5 cache of the steady Navier-Stokes reference of :mod:`pinn_exp.reference.navier_stokes`.

:func:`load_or_build_navier_stokes` reuses a cached solution (the DFG cylinder flow of Schaefer
& Turek 1996) when the file was written with the same parameters and its arrays pass both the
generic checks of :mod:`pinn_exp.reference.cache` (shapes, finite values, checksums) and the
consistency checks of a finite-element solution here; otherwise it solves again and rewrites
the file atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from pinn_exp.reference.cache import MODIFIED, read_cached, report, write_atomic_h5
from pinn_exp.reference.checks import check_float as _check_float
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, HEIGHT, LENGTH
from pinn_exp.reference.navier_stokes import (
    WALL_GRADING,
    NavierStokesReference,
    _reference,
    _validate,
    _viscosity,
    eval_grid,
    solve_navier_stokes,
)
from pinn_exp.reference.taylor_hood import INTORDER

__all__ = ["FORMAT_VERSION", "load_or_build_navier_stokes"]

# Bump when the file layout, the mesh or the numerical method changes, so old caches rebuild.
FORMAT_VERSION = 2


def load_or_build_navier_stokes(
    path: str | Path,
    re: float = 100.0,
    u_max: float = 1.5,
    length: float = LENGTH,
    refinement: int = 4,
    re_steps: Sequence[float] = (30.0,),
    tol: float = 1e-10,
    eval_spacing: float = 0.01,
    log: Callable[[str], object] | None = None,
    force: bool = False,
) -> NavierStokesReference:
    """Return the Navier-Stokes reference, from the HDF5 cache at ``path`` when it is valid.

    The file holds the datasets ``nodes``, ``cells``, ``u``, ``v``, ``p``, ``eval_points`` and
    ``eval_values`` and, as root attributes, every parameter that changes the result (``re``,
    ``u_max``, ``nu``, ``length``, ``height``, ``refinement``, ``tol``, ``eval_spacing``, the
    mesh grading, quadrature order and a format version; not ``re_steps``, which changes only the
    path to the same solution). It is rebuilt (and written atomically, creating parent
    folders) when it is missing, was made with other parameters or is corrupt: not HDF5,
    missing datasets, inconsistent shapes, non-finite values, out-of-range cells or another
    evaluation grid, values that no longer match their stored checksum or no checksum (a cache
    from before checksums). Each rebuild is reported with the file name and the reason through
    ``log``, by default the ``pinn_exp.reference`` logger (see
    :func:`~pinn_exp.reference.cache.report`; a changed checksum as a warning), as are the
    solver's progress lines; ``force=True`` rebuilds unconditionally. Arguments as in
    :func:`solve_navier_stokes` (Schaefer & Turek 1996).
    """
    path = Path(path)
    say = partial(report, log=log)
    re, u_max, length, refinement, eval_spacing = _validate(
        re, u_max, length, refinement, eval_spacing
    )
    tol = _check_float("tol", tol, "a finite float > 0", lambda v: v > 0)
    attrs = {
        "problem": "navier_stokes_cylinder",
        "format_version": FORMAT_VERSION,
        "method": "taylor-hood-p2p1-isoparametric-newton",
        "re": re,
        "u_max": u_max,
        "nu": _viscosity(re, u_max),
        "length": length,
        "height": HEIGHT,
        "cylinder_center": np.array(CYLINDER_CENTER),
        "cylinder_radius": CYLINDER_RADIUS,
        "refinement": refinement,
        "wall_grading": WALL_GRADING,
        "intorder": INTORDER,
        "tol": tol,
        "eval_spacing": eval_spacing,
    }
    if force:
        reason = "rebuild forced"
    else:
        pts = eval_grid(length, eval_spacing)
        arrays, reason = read_cached(
            path,
            attrs,
            {
                "nodes": (None, 2),
                "cells": (None, 6),
                "u": (None,),
                "v": (None,),
                "p": (None,),
                "eval_points": pts.shape,
                "eval_values": (pts.shape[0], 3),
            },
        )
        if arrays is not None:
            reason = _inconsistency(arrays, pts)
            if not reason:
                say(f"navier_stokes reference: reusing {path}")
                return _reference(
                    arrays["nodes"].astype(np.float64),
                    arrays["cells"].astype(np.int64),
                    tuple(arrays[k].astype(np.float64) for k in ("u", "v", "p")),
                    re,
                    u_max,
                    length,
                    refinement,
                    eval_spacing,
                    eval_values=arrays["eval_values"].astype(np.float64),
                )

    say(f"navier_stokes reference: building {path} ({reason})", warning=MODIFIED in reason)
    ref = solve_navier_stokes(
        re=re,
        u_max=u_max,
        length=length,
        refinement=refinement,
        re_steps=re_steps,
        tol=tol,
        eval_spacing=eval_spacing,
        log=say,
    )
    arrays = {
        name: getattr(ref, name)
        for name in ("nodes", "cells", "u", "v", "p", "eval_points", "eval_values")
    }
    write_atomic_h5(path, arrays, attrs)
    return ref


def _inconsistency(arrays: dict[str, np.ndarray], pts: np.ndarray) -> str:
    """Why cached arrays cannot be a solution for these parameters ("" if they can)."""
    n_nodes = arrays["nodes"].shape[0]
    for name in ("u", "v", "p"):
        if arrays[name].shape != (n_nodes,):
            return f"dataset {name!r} has shape {arrays[name].shape}, expected ({n_nodes},)"
    cells = arrays["cells"]
    if not np.issubdtype(cells.dtype, np.integer) or cells.size == 0:
        return "dataset 'cells' is empty or not integer"
    if cells.min() < 0 or cells.max() >= n_nodes:
        return "dataset 'cells' indexes nodes out of range"
    if not np.allclose(arrays["eval_points"], pts, rtol=0, atol=1e-12):
        return "the stored evaluation grid does not match the parameters"
    return ""
