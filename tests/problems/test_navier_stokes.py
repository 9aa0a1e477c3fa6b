"""Navier-Stokes problems: residuals vanish on an exact solution, the stacked and nested
derivative paths agree, points and sensors are where they should be, runs write their metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from pinn_exp.anchors import SoftplusAnchor
from pinn_exp.models import MLP, SIREN
from pinn_exp.noise import GaussianNoise, NoNoise
from pinn_exp.problems.navier_stokes import CYLINDER_CENTER, CYLINDER_RADIUS, NavierStokes
from pinn_exp.problems.navier_stokes_inverse import WAKE_BOX, NavierStokesInverse
from pinn_exp.run import train

F64 = torch.float64
RE_KOVASZNAY = 40.0


def kovasznay(xy: torch.Tensor, re: float = RE_KOVASZNAY) -> dict[str, torch.Tensor]:
    """Kovasznay (1948) flow in non-dimensional coordinates, with the x-derivatives the outlet
    condition needs: an exact steady Navier-Stokes solution for any Re."""
    lam = re / 2 - math.sqrt(re**2 / 4 + 4 * math.pi**2)
    e = torch.exp(lam * xy[:, 0])
    c, s = torch.cos(2 * math.pi * xy[:, 1]), torch.sin(2 * math.pi * xy[:, 1])
    return {
        "u": 1 - e * c,
        "v": lam / (2 * math.pi) * e * s,
        "p": (1 - e**2) / 2,
        "u_x": -lam * e * c,
        "v_x": lam**2 / (2 * math.pi) * e * s,
    }


class Kovasznay(nn.Module):
    """Maps the problem's features back to non-dimensional (x*, y*) and returns (u*, v*, p*)."""

    def __init__(self, size_nd: tuple[float, float]):
        super().__init__()
        self.size_nd = size_nd

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        xy = torch.stack([(f[:, i] + 1) * self.size_nd[i] / 2 for i in range(2)], 1)
        k = kovasznay(xy)
        return torch.stack([k["u"], k["v"], k["p"]], 1)


class KovasznayStream(Kovasznay):
    """The same flow as (psi*, p*): psi = y - exp(lam x) sin(2 pi y) / (2 pi)."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        xy = torch.stack([(f[:, i] + 1) * self.size_nd[i] / 2 for i in range(2)], 1)
        lam = RE_KOVASZNAY / 2 - math.sqrt(RE_KOVASZNAY**2 / 4 + 4 * math.pi**2)
        e = torch.exp(lam * xy[:, 0])
        psi = xy[:, 1] - e * torch.sin(2 * math.pi * xy[:, 1]) / (2 * math.pi)
        return torch.stack([psi, kovasznay(xy)["p"]], 1)


def kovasznay_problem(tmp_path, formulation: str = "velocity") -> NavierStokes:
    def velocity(xy):
        k = kovasznay(xy)
        return torch.stack([k["u"], k["v"]], 1)

    def outlet(xy):
        k = kovasznay(xy)
        return torch.stack([k["u_x"] / RE_KOVASZNAY - k["p"], k["v_x"]], 1)

    def stream(xy):
        lam = RE_KOVASZNAY / 2 - math.sqrt(RE_KOVASZNAY**2 / 4 + 4 * math.pi**2)
        return xy[:, 1] - torch.exp(lam * xy[:, 0]) * torch.sin(2 * math.pi * xy[:, 1]) / (
            2 * math.pi
        )

    return NavierStokes(
        torch.Generator().manual_seed(0),
        tmp_path,
        re=RE_KOVASZNAY,
        derivatives="autograd",
        formulation=formulation,
        stream_data=stream,
        dirichlet_velocity=velocity,
        outlet_data=outlet,
    )


def test_residual_and_boundary_terms_vanish_on_kovasznay_flow(tmp_path):
    problem = kovasznay_problem(tmp_path)
    model = Kovasznay(problem.size_nd)
    x = problem.sample_domain(500, torch.Generator().manual_seed(1))
    r = problem.residual_components(model, x)
    # Sanity: the terms of the residual are O(1-10), so 1e-10 means cancellation to rounding.
    assert r.abs().max() < 1e-10
    terms = problem.losses(model, x)
    assert list(terms)[:3] == list(problem.residual_terms)
    assert set(terms) == {*problem.residual_terms, "inlet", "walls", "cylinder", "outlet"}
    assert all(float(v.detach()) < 1e-20 for v in terms.values()), terms
    # ... and the residual is not trivially zero: at another Re it is not.
    assert problem.residual_components(model, x, inv_re=1 / 10.0).abs().max() > 1e-2
    assert not (tmp_path / problem.reference_path.name).exists()  # the FE reference is lazy


def test_to_moves_every_fixed_tensor(tmp_path):
    """``to(device)`` moves the boundary sets and both kinds of their targets (the stream
    formulation's psi targets too); the meta device stands in for a GPU."""
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path).to(torch.device("meta"))
    fixed = {
        **{f"boundary/{k}": v for k, v in problem.boundary.items()},
        **{f"boundary_targets/{k}": v for k, v in problem.boundary_targets.items()},
        **{f"stream_targets/{k}": v for k, v in problem.stream_targets.items()},
    }
    assert any(k.startswith("stream_targets/") for k in fixed)
    assert {k: v.device.type for k, v in fixed.items()} == dict.fromkeys(fixed, "meta")


def test_stream_formulation_vanishes_on_kovasznay_flow(tmp_path):
    problem = kovasznay_problem(tmp_path, formulation="stream")
    assert problem.out_dim == 2 and problem.residual_terms == ("momentum_x", "momentum_y")
    model = KovasznayStream(problem.size_nd)
    x = problem.sample_domain(500, torch.Generator().manual_seed(1))
    # The velocity it derives from psi is Kovasznay's (u, v) and p.
    y, dy, _ = problem.outputs_and_derivatives(model, x, order=1)
    k = kovasznay(x / 0.1)
    torch.testing.assert_close(y.detach(), torch.stack([k["u"], k["v"], k["p"]], 1))
    torch.testing.assert_close(dy[:, 0, 0].detach(), k["u_x"])
    # Continuity holds identically: u_x + v_y = psi_yx - psi_xy.
    assert (dy[:, 0, 0] + dy[:, 1, 1]).abs().max() < 1e-12
    r = problem.residual_components(model, x)
    assert r.shape == (500, 3) and r.abs().max() < 1e-10
    terms = problem.losses(model, x)
    assert set(terms) == {"momentum_x", "momentum_y", "inlet", "walls", "cylinder", "outlet"}
    assert all(float(v.detach()) < 1e-20 for v in terms.values()), terms
    assert problem.residual_components(model, x, inv_re=1 / 10.0).abs().max() > 1e-2
    pred = problem.predict(model, x)
    torch.testing.assert_close(pred[:, 0], problem.u_mean * k["u"])


@pytest.mark.parametrize("formulation", ["velocity", "stream"])
def test_preferred_re_of_an_exact_solution_is_its_re(tmp_path, formulation):
    """The diagnostic of scripts/re_consistency.py: Kovasznay flow fits only its own Re."""
    problem = kovasznay_problem(tmp_path, formulation=formulation)
    model = (Kovasznay if formulation == "velocity" else KovasznayStream)(problem.size_nd)
    x = problem.sample_domain(2000, torch.Generator().manual_seed(2))
    re = problem.preferred_re(model, x)
    assert set(re) == {"all", "near", "away"}
    assert re["all"] == pytest.approx(RE_KOVASZNAY, rel=1e-8)
    assert re["near"] == pytest.approx(RE_KOVASZNAY, rel=1e-8)


@pytest.mark.parametrize("model_cls", [SIREN, MLP])
def test_stream_stacked_and_autograd_paths_agree(tmp_path, model_cls):
    gen = torch.Generator().manual_seed(0)
    model = model_cls(2, 2, gen, width=32, depth=3)
    problems = [
        NavierStokes(
            torch.Generator().manual_seed(0), tmp_path, derivatives=d, formulation="stream"
        )
        for d in ("stacked", "autograd")
    ]
    x = problems[0].sample_domain(200, gen)
    losses = [p.losses(model, x) for p in problems]
    for name in losses[0]:
        a, b = (float(lo[name].detach()) for lo in losses)
        assert a == pytest.approx(b, rel=1e-11)
    grads = [torch.autograd.grad(sum(lo.values()), list(model.parameters())) for lo in losses]
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-10 * float(b.abs().max())
    pointwise = [p.pointwise_residual(model, x) for p in problems]
    assert torch.allclose(pointwise[0], pointwise[1], rtol=1e-11, atol=0)
    preds = [p.predict(model, x) for p in problems]
    assert not preds[0].requires_grad and not preds[1].requires_grad
    torch.testing.assert_close(preds[0], preds[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("model_cls", [SIREN, MLP])
def test_stacked_and_autograd_paths_agree(tmp_path, model_cls):
    gen = torch.Generator().manual_seed(0)
    model = model_cls(2, 3, gen, width=32, depth=3)
    problems = [
        NavierStokes(torch.Generator().manual_seed(0), tmp_path, derivatives=d)
        for d in ("stacked", "autograd")
    ]
    x = problems[0].sample_domain(200, gen)
    r_stacked, r_nested = (p.residual_components(model, x).detach() for p in problems)
    scale = r_nested.abs().max()
    assert float((r_stacked - r_nested).abs().max() / scale) < 1e-12
    losses = [p.losses(model, x) for p in problems]
    for name in losses[0]:
        a, b = (float(lo[name].detach()) for lo in losses)
        assert a == pytest.approx(b, rel=1e-12)
    grads = [torch.autograd.grad(sum(lo.values()), list(model.parameters())) for lo in losses]
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-11 * float(b.abs().max())
    pointwise = [p.pointwise_residual(model, x) for p in problems]
    assert pointwise[0].shape == (200,) and not pointwise[0].requires_grad
    assert torch.allclose(pointwise[0], pointwise[1], rtol=1e-12, atol=0)


def test_other_models_fall_back_to_autograd(tmp_path):
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path)
    model = Kovasznay(problem.size_nd)
    x = problem.sample_domain(10, torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="nested autograd"):
        r = problem.residual_components(model, x)
    assert r.shape == (10, 3)


def test_points_lie_in_the_fluid_and_on_the_boundaries(tmp_path):
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path, length=2.2)
    x = problem.sample_domain(5000, torch.Generator().manual_seed(3))
    assert x.shape == (5000, 2) and x.dtype == F64
    assert (x[:, 0] >= 0).all() and (x[:, 0] <= 2.2).all()
    assert (x[:, 1] >= 0).all() and (x[:, 1] <= 0.41).all()
    assert ((x - torch.tensor(CYLINDER_CENTER, dtype=F64)).norm(dim=1) > CYLINDER_RADIUS).all()
    # Same generator state, same points: all randomness comes from the generator.
    again = problem.sample_domain(5000, torch.Generator().manual_seed(3))
    assert torch.equal(x, again)
    b = problem.boundary
    assert (b["inlet"][:, 0] == 0).all() and (b["outlet"][:, 0] == 2.2).all()
    assert set(b["walls"][:, 1].tolist()) == {0.0, 0.41}
    dist = (b["cylinder"] - torch.tensor(CYLINDER_CENTER, dtype=F64)).norm(dim=1)
    assert torch.allclose(dist, torch.full_like(dist, CYLINDER_RADIUS))
    # Inflow u* = 6 s (1 - s): peak U_m / U_mean = 1.5 at mid-height, zero at the walls.
    target = problem.boundary_targets["inlet"]
    s = b["inlet"][:, 1] / 0.41
    assert torch.allclose(target[:, 0], 6 * s * (1 - s)) and (target[:, 1] == 0).all()
    assert target[:, 0].max() <= 1.5
    assert (problem.boundary_targets["walls"] == 0).all()


class Constant(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=F64)

    def forward(self, f):
        # 0 * f: a constant that autograd can still differentiate (to zero) w.r.t. the inputs.
        return self.values.expand(f.shape[0], -1) + 0 * f[:, :1]


class FakeReference:
    def __init__(self, points, values):
        self.eval_points, self.eval_values = points, values


def test_evaluate_converts_to_dimensional_units(tmp_path):
    # u_max = 3: U_mean = 2, so non-dimensional (1, 1, 1) is (2, 2, 4) in dimensional units.
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path, u_max=3.0)
    pts = problem.sample_domain(300, torch.Generator().manual_seed(2)).numpy()
    values = np.tile([2.0, 2.0, 4.0], (300, 1))
    values[:, 2] += np.linspace(-1, 1, 300)  # so that the mean-free pressure is not zero
    problem.__dict__["reference"] = FakeReference(pts, values)
    problem.__dict__["reference_forces"] = {"cd": 3.0, "cl": 0.1, "dp": 0.5}
    ev = problem.evaluate(Constant([1.0, 1.0, 1.0]))
    # A uniform pressure exerts no force; U_mean^2 (p*(front) - p*(rear)) = 0 as well.
    assert ev.metrics["cd"] == pytest.approx(0, abs=1e-12) and ev.metrics["cd_ref"] == 3.0
    assert ev.metrics["cd_rel_error"] == pytest.approx(1.0) and ev.metrics["dp"] == 0
    assert ev.metrics["rel_l2_u"] == pytest.approx(0, abs=1e-14)
    assert ev.metrics["rel_l2_v"] == pytest.approx(0, abs=1e-14)
    assert ev.metrics["rel_l2"] == pytest.approx(0, abs=1e-14)
    assert ev.metrics["rel_l2_velocity"] == pytest.approx(0, abs=1e-14)
    assert ev.metrics["rel_l2_p"] == pytest.approx(
        np.linalg.norm(values[:, 2] - 4) / np.linalg.norm(values[:, 2])
    )
    assert ev.metrics["rel_l2_p_mean_free"] == pytest.approx(1.0)
    assert set(ev.prediction) == {"u", "v", "p"} and ev.prediction["p"].shape == (300,)
    ev = problem.evaluate(Constant([0.5, -1.0, 2.0]))
    assert ev.metrics["rel_l2_u"] == pytest.approx(0.5)
    assert ev.metrics["rel_l2_v"] == pytest.approx(2.0)
    assert ev.metrics["rel_l2"] == pytest.approx(1 - math.hypot(1, 2) / math.hypot(2, 2))
    fig = problem.figure(ev)
    assert len(fig.axes) >= 9
    fig.clf()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"re": -1.0}, "pde.re"),
        ({"u_max": 0}, "pde.u_max"),
        ({"length": 0.3}, "pde.length"),
        ({"n_wall": 1}, "pde.n_wall"),
        ({"n_inlet": 0}, "pde.n_inlet"),
        ({"refinement": 0}, "pde.refinement"),
        ({"derivatives": "forward"}, "pde.derivatives"),
        ({"compile": "yes"}, "pde.compile"),
        ({"formulation": "vorticity"}, "pde.formulation"),
    ],
)
def test_bad_arguments_name_the_key(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        NavierStokes(torch.Generator().manual_seed(0), tmp_path, **kwargs)


def make_inverse(data_dir, **kwargs) -> NavierStokesInverse:
    args = dict(refinement=1, re_initial=50.0, noise=NoNoise(), n_sensors=100) | kwargs
    return NavierStokesInverse(
        torch.Generator().manual_seed(0),
        data_dir,
        anchor=partial(SoftplusAnchor, beta=1.0),
        **args,
    )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_sensors": 1}, "pde.n_sensors"),
        ({"wake_bias": 1.5}, "pde.wake_bias"),
        ({"re_initial": 0.0}, "pde.re_initial"),
        ({"re_scale": -1.0}, "pde.re_scale"),
    ],
)
def test_inverse_bad_arguments_name_the_key(data_dir, kwargs, key):
    with pytest.raises(ValueError, match=key):
        make_inverse(data_dir, **kwargs)


def test_sensors_avoid_the_cylinder_and_carry_the_noise(data_dir):
    level, n = 0.1, 20000
    problem = make_inverse(data_dir, noise=GaussianNoise(level), n_sensors=n, wake_bias=0.25)
    art = problem.artifacts()
    pts, clean, noisy = art["sensors/points"], art["sensors/clean"], art["sensors/noisy"]
    assert pts.shape == (n, 2) and clean.shape == noisy.shape == (n, 2)
    assert (np.hypot(*(pts - np.array(CYLINDER_CENTER)).T) > CYLINDER_RADIUS).all()
    (x0, x1), (y0, y1) = WAKE_BOX
    in_wake = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    assert in_wake.sum() >= n // 4  # the biased quarter, plus the uniform ones that fall there
    # Clean values are the reference at the sensors; noise std = level * std(clean) per
    # component (GaussianNoise's convention), to sampling accuracy (~1/sqrt(2n) = 0.5 %).
    np.testing.assert_allclose(clean, problem.reference.evaluate(pts)[:, :2])
    ratio = (noisy - clean).std(axis=0) / clean.std(axis=0)
    np.testing.assert_allclose(ratio, level, rtol=0.03)
    assert np.abs((noisy - clean).mean(axis=0)).max() < 4 * level * clean.std(axis=0).max() / n**0.5
    # The loss sees the same data, non-dimensional.
    torch.testing.assert_close(problem.uv_data * problem.u_mean, torch.as_tensor(noisy))


def test_inverse_uses_the_current_re_never_the_true_one(data_dir, tmp_path):
    problem = make_inverse(data_dir)
    assert problem.unknown_values() == {"re": pytest.approx(50.0)}
    assert problem.true_unknowns == {"re": 100.0}
    gen = torch.Generator().manual_seed(0)
    model = SIREN(2, 3, gen, width=16, depth=2)
    x = problem.sample_domain(100, gen)
    forward = NavierStokes(torch.Generator().manual_seed(0), tmp_path, re=50.0)
    torch.testing.assert_close(
        problem.residual_components(model, x), forward.residual_components(model, x)
    )
    terms = problem.losses(model, x)
    assert list(terms) == [*problem.residual_terms, "data", "inlet", "walls", "cylinder", "outlet"]
    (raw,) = problem.unknowns.parameters()
    (g,) = torch.autograd.grad(sum(terms.values()), raw)
    assert g.abs() > 0  # the residual trains Re
    metrics = problem.unknown_metrics()
    assert metrics["re_pred"] == pytest.approx(50.0)
    assert metrics["re_rel_error"] == pytest.approx(0.5)


def test_forward_run_writes_metrics(make_cfg, tmp_path):
    metrics = train(make_cfg("pde=navier_stokes", "pde.refinement=1", "model=mlp"))
    assert metrics["status"] == "completed"
    for key in ("rel_l2", "rel_l2_u", "rel_l2_v", "rel_l2_p", "cd", "cl", "dp"):
        assert math.isfinite(metrics[key])
    # Drag and lift against the FE reference's (steady branch at Re = 100: cD ~ 2.94).
    assert metrics["cd_ref"] == pytest.approx(2.94, rel=0.02)
    assert metrics["cd_rel_error"] == pytest.approx(abs(metrics["cd"] / metrics["cd_ref"] - 1))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"cd", "cl", "dp", "cd_ref", "cl_ref", "cd_rel_error", "cl_rel_error"} <= set(saved)
    # scripts/re_consistency.py reads the run back and reports its field's preferred Re.
    script = Path(__file__).resolve().parents[2] / "scripts" / "re_consistency.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), "--points", "200"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "preferred Re* = " in done.stdout and "the run's Re: 100" in done.stdout
    missing = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_inverse_run_writes_metrics_and_sensors(make_cfg, tmp_path):
    # With every module that touches the problem: RAR ranks points by pointwise_residual, EMA
    # and PCGrad need per-term gradients through the stacked derivatives.
    cfg = make_cfg(
        "pde=navier_stokes_inverse",
        "pde.refinement=1",
        "pde.n_sensors=50",
        "noise=gaussian",
        "sampler=rar",
        "sampler.interval=2",
        "balancer=ema",
        "surgery=pcgrad",
    )
    metrics = train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["re_true"] == 100.0
    assert math.isfinite(saved["re_pred"]) and saved["re_pred"] != 50.0  # it moved
    assert {"rel_l2_u", "rel_l2_v", "rel_l2_p"} <= set(metrics)
    with h5py.File(tmp_path / "run" / "prediction.h5") as f:
        assert f["sensors/points"].shape == (50, 2) and f["sensors/noisy"].shape == (50, 2)
        assert f["prediction/u"].shape == f["reference/u"].shape


def test_stream_targets_integrate_the_inflow(tmp_path):
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path, formulation="stream")
    h = 0.41 / 0.1  # the non-dimensional channel height: the flux of the inflow u* = 6 s (1 - s)
    walls = problem.boundary["walls"]
    psi_walls = problem.stream_targets["walls"]
    assert (psi_walls[walls[:, 1] == 0] == 0).all()
    assert torch.allclose(psi_walls[walls[:, 1] > 0.4], torch.tensor(h, dtype=F64))
    # d psi* / d y* at the inlet is the inflow u*, checked by finite differences.
    y = torch.linspace(0.01, 0.4, 50, dtype=F64)
    s, ds = y / 0.41, 1e-6
    psi = lambda s: h * s * s * (3 - 2 * s)  # noqa: E731
    u = (psi(s + ds) - psi(s - ds)) / (2 * ds) / h
    torch.testing.assert_close(u, 6 * s * (1 - s), rtol=1e-8, atol=1e-8)
    inlet = problem.boundary["inlet"][:, 1] / 0.41
    torch.testing.assert_close(problem.stream_targets["inlet"], psi(inlet))
