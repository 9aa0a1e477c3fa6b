"""Quasi-Newton updates and iteration: convergence on a quadratic and on Rosenbrock, the secant
condition, symmetry and positive definiteness after every update, resets, and exact state."""

import pytest
import torch

from pinn_exp.quasi_newton import (
    BFGS,
    SSBFGS,
    DenseInverseHessian,
    LimitedMemory,
    QuasiNewton,
    SSBroyden,
)

F64 = torch.float64
UPDATES = {
    "bfgs": BFGS,
    "ssbfgs_ab": lambda: SSBFGS("ab"),
    "ssbfgs_ol": lambda: SSBFGS("ol"),
    "ssbroyden": SSBroyden,
}


def curvatures(n: int):
    out = {name: DenseInverseHessian(n, make(), F64, "cpu") for name, make in UPDATES.items()}
    out["lbfgs"] = LimitedMemory(n, F64, "cpu", history_size=20)
    return out


def quadratic(n: int, condition: float = 1e3):
    """A convex quadratic 0.5 (x - b)^T A (x - b) with eigenvalues from 1 to ``condition``.

    Written around its minimiser so that the value goes to 0 with the error: a constant offset
    would bury the line search's sufficient-decrease test in rounding near the optimum."""
    g = torch.Generator().manual_seed(n)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    A = q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(condition)), n, dtype=F64)) @ q.T
    b = torch.randn(n, generator=g, dtype=F64)

    def f(x):
        e = x - b
        return float(0.5 * e @ A @ e), A @ e

    return f, torch.zeros(n, dtype=F64)


def rosenbrock(n: int):
    def f(x):
        x = x.detach().requires_grad_(True)
        value = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
        (grad,) = torch.autograd.grad(value, x)
        return float(value.detach()), grad

    x0 = torch.full((n,), -1.2, dtype=F64)
    x0[1::2] = 1.0
    return f, x0


def minimise(qn: QuasiNewton, f, x, max_iter: int):
    for it in range(1, max_iter + 1):
        x, info = qn.step(f, x)
        if info.grad_norm < 1e-10:
            return x, it
    raise AssertionError(f"no convergence in {max_iter} iterations: |g| = {info.grad_norm:.3e}")


@pytest.mark.parametrize("name", [*UPDATES, "lbfgs"])
@pytest.mark.parametrize(("problem", "n", "max_iter"), [(quadratic, 20, 250), (rosenbrock, 2, 120)])
def test_each_method_reaches_gradient_norm_1e_10(name, problem, n, max_iter):
    f, x0 = problem(n)
    x, _ = minimise(QuasiNewton(curvatures(n)[name]), f, x0, max_iter)
    assert f(x)[1].norm() < 1e-10


@pytest.mark.parametrize("name", list(UPDATES))
def test_secant_condition_symmetry_and_positive_definiteness_after_every_update(name):
    f, x = rosenbrock(6)
    qn = QuasiNewton(curvatures(6)[name])
    updates = 0
    for _ in range(40):
        _, g = f(x)
        x_new, info = qn.step(f, x)
        if info.grad_norm < 1e-10:
            break
        s, y = x_new - x, f(x_new)[1] - g
        H = qn.curvature.H
        if not info.skipped_update:
            updates += 1
            assert torch.allclose(H @ y, s, rtol=1e-7, atol=1e-12 * float(s.norm()))
        assert torch.equal(H, H.T)
        assert torch.linalg.eigvalsh(H).min() > 0
        x = x_new
    assert updates >= 10


def test_self_scaled_broyden_family_members():
    """SSBroyden's phi and tau stay where the theory puts them: tau > 0, and phi = 1 (BFGS)
    when H is exact along s (b = h = 1)."""
    rule = SSBroyden()
    s = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    phi, tau = rule.scaling(b=1.0, h=1.0, first=False, y=s, s=s)
    assert (phi, tau) == (1.0, 1.0)
    for b, h in [(0.5, 3.0), (2.0, 0.8), (10.0, 0.2), (1.1, 1.1)]:
        phi, tau = rule.scaling(b=b, h=h, first=False, y=s, s=s)
        assert tau > 0 and phi == pytest.approx(phi)  # finite


@pytest.mark.parametrize(
    ("H", "reason", "check_every"),
    [
        (-torch.eye(4, dtype=F64), "not a descent direction", 0),
        (torch.diag(torch.tensor([1.0, 1.0, 1.0, -1e-3], dtype=F64)), "not positive definite", 1),
    ],
)
def test_a_non_positive_definite_H_is_reset_and_reported(H, reason, check_every):
    f, x = quadratic(4, condition=10.0)
    qn = QuasiNewton(DenseInverseHessian(4, SSBroyden(), F64, "cpu"), pd_check_every=check_every)
    x, _ = qn.step(f, x)  # a first iteration, so that the periodic check is due
    qn.curvature.H = H.clone()
    _, info = qn.step(f, x)
    assert info.reset == reason
    assert qn.resets == 1
    assert torch.linalg.eigvalsh(qn.curvature.H).min() > 0


def test_dense_H_refuses_too_many_parameters_naming_the_model_keys():
    with pytest.raises(ValueError, match="model.width"):
        DenseInverseHessian(20_001, SSBroyden(), F64, "cpu", max_params=20_000)


@pytest.mark.parametrize("name", ["ssbroyden", "lbfgs"])
def test_state_dict_continues_bit_identically(name):
    f, x = rosenbrock(4)
    a = QuasiNewton(curvatures(4)[name])
    for _ in range(5):
        x, _ = a.step(f, x)
    b = QuasiNewton(curvatures(4)[name])
    b.load_state_dict(a.state_dict())
    xa, xb = x, x.clone()
    for _ in range(5):
        xa, _ = a.step(f, xa)
        xb, _ = b.step(f, xb)
    assert torch.equal(xa, xb)


def test_H_is_carried_across_a_change_of_objective():
    """After objective_changed() the value and gradient are re-evaluated at the new objective,
    and the curvature learned so far is kept (as across collocation resampling)."""
    f, x = quadratic(5)
    qn = QuasiNewton(DenseInverseHessian(5, SSBroyden(), F64, "cpu"))
    for _ in range(8):
        x, _ = qn.step(f, x)
    H = qn.curvature.H.clone()

    def shifted(x):
        value, grad = f(x)
        return value + 1.0, grad  # same curvature, new value

    qn.objective_changed()
    _, info = qn.step(shifted, x)
    assert info.evaluations >= 2  # the fresh evaluation at x, then the line search
    assert not torch.equal(qn.curvature.H, torch.eye(5, dtype=F64))
    assert info.reset == "" and not torch.equal(qn.curvature.H, H)
