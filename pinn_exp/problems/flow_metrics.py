"""How a PINN's cylinder flow is scored against the finite-element reference.

:func:`flow_errors` gives the relative L2 errors of the dimensional fields on the reference's
evaluation grid; :func:`against_reference` puts the DFG quantities of the benchmark (Schaefer
& Turek 1996: drag and lift coefficients and the pressure difference, computed by
:mod:`pinn_exp.problems.forces`) next to the reference's values and their relative errors.
"""

from __future__ import annotations

import numpy as np

from pinn_exp.problems.base import rel_l2

__all__ = ["against_reference", "flow_errors"]


def flow_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Relative L2 errors of the predicted ``(u, v, p)`` (m, 3) against the reference's.

    ``rel_l2`` is the error of the speed ``|(u, v)|``; ``rel_l2_velocity`` that of the
    velocity vector. The do-nothing outlet fixes the pressure level, so ``rel_l2_p``
    compares p directly (a PINN with the right shape but the wrong level is penalised);
    ``rel_l2_p_mean_free`` subtracts each field's mean first, as usual where p is only
    defined up to a constant (Raissi et al. 2019, J. Comput. Phys. 378:686-707).
    """
    metrics = {"rel_l2": rel_l2(np.hypot(*pred[:, :2].T), np.hypot(*true[:, :2].T))}
    metrics |= {f"rel_l2_{f}": rel_l2(pred[:, i], true[:, i]) for i, f in enumerate("uvp")}
    metrics["rel_l2_velocity"] = rel_l2(pred[:, :2], true[:, :2])
    p, p_ref = pred[:, 2], true[:, 2]
    metrics["rel_l2_p_mean_free"] = rel_l2(p - p.mean(), p_ref - p_ref.mean())
    return metrics


def against_reference(values: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Each ``name: value``, its reference value (``<name>_ref``) and its relative error
    (``<name>_rel_error``)."""
    out = {}
    for name, value in values.items():
        ref = reference[name]
        out |= {
            name: value,
            f"{name}_ref": ref,
            f"{name}_rel_error": abs(value - ref) / abs(ref),
        }
    return out
