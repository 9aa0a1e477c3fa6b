"""Options of the Navier-Stokes inverse problem: the sensor layout (``pde.sensor_focus``, beside
the older ``pde.wake_bias``), the noise-weighted data term (``pde.data_weight``), and the
log-scale anchor (``anchor=log``) through the real config tree."""

from __future__ import annotations

import json
import math
import re
from functools import partial

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pinn_exp.anchors import ExpAnchor, SoftplusAnchor
from pinn_exp.models import SIREN
from pinn_exp.noise import GaussianNoise, NoNoise
from pinn_exp.problems.navier_stokes import CYLINDER_CENTER, CYLINDER_RADIUS, NavierStokes
from pinn_exp.problems.navier_stokes_inverse import (
    SENSOR_MARGIN,
    WAKE_BOX,
    NavierStokesInverse,
)
from pinn_exp.reference.mesh import HEIGHT
from pinn_exp.run import build, train

BALL = {"fraction": 0.2, "centre": [0.2, 0.2], "radius": 0.1}  # around the cylinder
WAKE = {"fraction": 0.3, "low": [0.25, 0.1], "high": [1.0, 0.3]}  # the wake_bias box
FAR = {"fraction": 0.5, "low": [1.5, 0.0], "high": [2.2, 0.41]}  # disjoint from BALL


def make(data_dir, seed: int = 0, **kwargs) -> NavierStokesInverse:
    args = dict(refinement=1, re_initial=50.0, noise=NoNoise(), n_sensors=100) | kwargs
    return NavierStokesInverse(
        torch.Generator().manual_seed(seed), data_dir, anchor=partial(SoftplusAnchor), **args
    )


def in_ball(pts: np.ndarray, region: dict) -> np.ndarray:
    return np.hypot(*(pts - np.array(region["centre"])).T) <= region["radius"]


def in_box(pts: np.ndarray, region: dict) -> np.ndarray:
    return ((pts >= region["low"]) & (pts <= region["high"])).all(axis=1)


def out_of_cylinder(pts: np.ndarray) -> bool:
    return bool((np.hypot(*(pts - np.array(CYLINDER_CENTER)).T) > CYLINDER_RADIUS).all())


# --- sensor layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("wake_bias", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("focus", [None, []], ids=["null", "empty"])
def test_wake_bias_layout_is_unchanged(data_dir, tmp_path, wake_bias, focus):
    """Without sensor_focus the sensors and their noise come from the same generator calls as
    before the option existed: the forward problem's boundary draws, then the uniform sensors,
    then the wake box, then the noise."""
    n, level = 101, 0.1
    problem = make(
        data_dir, n_sensors=n, wake_bias=wake_bias, sensor_focus=focus, noise=GaussianNoise(level)
    )
    gen = torch.Generator().manual_seed(0)
    forward = NavierStokes(gen, tmp_path, refinement=1)
    n_wake = int(round(wake_bias * n))
    (x0, x1), y_range = WAKE_BOX
    expected = torch.cat(
        [
            forward._fluid_points(n - n_wake, gen, (0.0, 2.2), (0.0, HEIGHT), SENSOR_MARGIN),
            forward._fluid_points(n_wake, gen, (x0, x1), y_range, SENSOR_MARGIN),
        ]
    )
    assert torch.equal(problem.x_data, expected)
    clean = torch.as_tensor(problem.reference.evaluate(expected.numpy())[:, :2])
    assert torch.equal(problem.uv_noisy, GaussianNoise(level)(clean, gen))
    assert problem.sensor_focus is None


def test_focus_counts_are_exact_for_disjoint_regions_filling_all_sensors(data_dir):
    n = 1000
    focus = [{**BALL, "fraction": 0.4}, {**FAR, "fraction": 0.6}]
    pts = make(data_dir, n_sensors=n, sensor_focus=focus).artifacts()["sensors/points"]
    assert pts.shape == (n, 2)
    assert in_ball(pts, BALL).sum() == 400 and in_box(pts, FAR).sum() == 600
    assert out_of_cylinder(pts)


def test_focus_shares_plus_a_uniform_rest(data_dir):
    n = 2000
    problem = make(data_dir, n_sensors=n, sensor_focus=[BALL, WAKE])
    pts = problem.artifacts()["sensors/points"]
    assert pts.shape == (n, 2)
    ball, wake = in_ball(pts, BALL).sum(), in_box(pts, WAKE).sum()
    # The regions' shares, 400 and 600, plus what else falls in (Monte Carlo fractions of the
    # fluid): 2.6 % of the uniform rest (1000 points) is in the ball and 16.8 % in the box, and
    # the regions overlap: 26 % of the ball's share lies in the box, 4.1 % of the box's in the
    # ball. Expected: ball 451 +- 7, box 872 +- 15 (without focus: ~53 and ~335).
    assert 451 - 35 <= ball <= 451 + 35
    assert 872 - 75 <= wake <= 872 + 75
    # Every sensor keeps the margin from the cylinder, the ball's too, and stays in the channel.
    dist = np.hypot(*(pts - np.array(CYLINDER_CENTER)).T)
    assert (dist > CYLINDER_RADIUS + SENSOR_MARGIN).all()
    assert ((pts >= 0) & (pts <= [2.2, HEIGHT])).all()
    # The reference is evaluated at every sensor (none outside the mesh).
    assert np.isfinite(problem.artifacts()["sensors/clean"]).all()


def test_focus_is_reproducible_from_the_seed(data_dir):
    def points(seed):
        return make(data_dir, seed, sensor_focus=[BALL, WAKE]).x_data

    assert torch.equal(points(3), points(3))
    assert not torch.equal(points(3), points(4))


def test_focus_accepts_hydra_containers(data_dir):
    conf = OmegaConf.create({"focus": [BALL, WAKE]}).focus
    plain = make(data_dir, sensor_focus=[BALL, WAKE])
    assert torch.equal(make(data_dir, sensor_focus=conf).x_data, plain.x_data)
    assert plain.sensor_focus[0] == {"fraction": 0.2, "centre": (0.2, 0.2), "radius": 0.1}


# --- noise-weighted data term -------------------------------------------------------------------


def test_noise_weight_is_the_unit_term_divided_by_the_noise_variance(data_dir):
    level, n = 0.1, 200
    unit = make(data_dir, n_sensors=n, noise=GaussianNoise(level))
    noise = make(data_dir, n_sensors=n, noise=GaussianNoise(level), data_weight="noise")
    assert torch.equal(unit.uv_data, noise.uv_data)  # the option draws nothing
    model = SIREN(2, unit.out_dim, torch.Generator().manual_seed(1), width=16, depth=2)
    x = unit.sample_domain(50, torch.Generator().manual_seed(2))
    t_unit, t_noise = unit.losses(model, x)["data"], noise.losses(model, x)["data"]

    # By hand, from the noisy dimensional data: sigma_j = level * std_j (ddof=1), made
    # non-dimensional by U_mean like the velocities the term compares.
    noisy = unit.artifacts()["sensors/noisy"] / unit.u_mean
    sigma = level * noisy.std(axis=0, ddof=1)
    uv = unit.outputs_and_derivatives(model, unit.x_data, order=0)[0][:, :2].detach().numpy()
    squared = (uv - noisy) ** 2
    assert t_unit.item() == pytest.approx(squared.sum(1).mean(), rel=1e-12)
    expected = (squared / sigma**2).mean()  # mean over sensors and both components
    assert t_noise.item() == pytest.approx(expected, rel=1e-12)
    per_component = squared.mean(0) / sigma**2  # the unit term's parts, each over sigma_j^2
    assert t_noise.item() == pytest.approx(per_component.mean(), rel=1e-12)
    assert np.isclose(noise.data_sigma.numpy(), sigma, rtol=1e-14).all()
    # The weight is a constant: the gradient still reaches the network.
    (g,) = torch.autograd.grad(t_noise, next(model.parameters()))
    assert g.abs().sum() > 0


def test_noise_weight_is_about_one_at_the_truth(data_dir):
    """At the clean values the term is the reduced chi-square: E = 1 / (1 + level^2), since the
    noisy std exceeds the clean one by sqrt(1 + level^2)."""
    level, n = 0.1, 20000
    problem = make(data_dir, n_sensors=n, noise=GaussianNoise(level), data_weight="noise")

    def zeros(m):
        z = torch.zeros(m, 2, 3, dtype=torch.float64)
        return [torch.zeros(m, 3, dtype=torch.float64), z, z, None]

    at = {name: zeros(len(pts)) for name, pts in problem.loss_points().items()}
    at["data"][0][:, :2] = problem.uv_clean / problem.u_mean
    chi2 = problem.point_terms(at)["data"].item()
    # 2n squared standard normals: the mean's std is sqrt(2 / 2n) = 0.007.
    assert abs(chi2 - 1 / (1 + level**2)) < 0.03
    at["data"][0][:, :2] = problem.uv_data  # a fit through the noisy data itself
    assert problem.point_terms(at)["data"].item() == 0.0


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("focus", "match"),
    [
        ("wake", r"pde\.sensor_focus must be null or a list of regions"),
        ([{"fraction": 0.5, "centre": [0.2, 0.2]}], r"pde\.sensor_focus\[0\] must give either"),
        ([BALL, {**WAKE, "width": 1}], r"pde\.sensor_focus\[1\] has unknown keys \['width'\]"),
        ([{**BALL, "radius": -0.1}], r"pde\.sensor_focus\[0\]\.radius must be a number > 0"),
        ([{**BALL, "fraction": 0.8}, WAKE], r"pde\.sensor_focus fractions must sum to <= 1"),
        ([{**BALL, "centre": [0.2, 0.2, 0]}], r"pde\.sensor_focus\[0\]\.centre has 3 coord"),
        ([{**WAKE, "low": [3, 0], "high": [4, 1]}], r"pde\.sensor_focus\[0\] = .* hardly inter"),
        ([{**BALL, "radius": CYLINDER_RADIUS}], r"pde\.sensor_focus\[0\] = .* hardly inter"),
    ],
)
def test_bad_sensor_focus_names_the_key(data_dir, focus, match):
    with pytest.raises(ValueError, match=match):
        make(data_dir, sensor_focus=focus)


def test_wake_bias_and_sensor_focus_together_raise(data_dir):
    match = r"pde\.wake_bias=0\.25 and pde\.sensor_focus=\[.*\] both place sensors; use one"
    with pytest.raises(ValueError, match=match):
        make(data_dir, wake_bias=0.25, sensor_focus=[BALL])
    # The message offers the equivalent region.
    with pytest.raises(ValueError, match=r"fraction: 0\.25, low: \[0\.25, 0\.1\], high: \[1, 0\.3"):
        make(data_dir, wake_bias=0.25, sensor_focus=[BALL])


@pytest.mark.parametrize("weight", ["chi2", "Noise", None, 1])
def test_bad_data_weight_names_the_key(data_dir, weight):
    match = rf"pde\.data_weight must be 'unit' or 'noise', got {re.escape(repr(weight))}"
    with pytest.raises(ValueError, match=match):
        make(data_dir, data_weight=weight)


@pytest.mark.parametrize(
    ("noise", "has"),
    [(NoNoise(), "no level"), (GaussianNoise(0.0), "level=0.0")],
    ids=["none", "level0"],
)
def test_noise_weight_needs_a_noise_level(data_dir, noise, has):
    match = rf"pde\.data_weight='noise' .* but noise={re.escape(repr(noise))} has {has}"
    with pytest.raises(ValueError, match=match):
        make(data_dir, noise=noise, data_weight="noise")


# --- through the config tree --------------------------------------------------------------------


def test_options_compose_and_build(make_cfg):
    cfg = make_cfg(
        "pde=navier_stokes_inverse",
        "pde.refinement=1",
        "pde.n_sensors=60",
        "pde.sensor_focus=[{fraction:0.5,centre:[0.2,0.2],radius:0.1}]",
        "pde.data_weight=noise",
        "noise=gaussian",
        "anchor=log",
    )
    parts = build(cfg)
    problem = parts.problem
    assert isinstance(problem.unknowns["re"], ExpAnchor)
    assert problem.unknown_values()["re"] == pytest.approx(50.0, rel=1e-14)
    pts = problem.artifacts()["sensors/points"]
    assert in_ball(pts, {"centre": [0.2, 0.2], "radius": 0.1}).sum() >= 30
    assert problem.data_weight == "noise" and problem.data_precision is not None
    terms = problem.losses(parts.model, parts.sampler.points())
    assert all(math.isfinite(v.item()) for v in terms.values())


@pytest.mark.parametrize("weight", ["unit", "noise"])
def test_data_scale_multiplies_the_data_term_only(data_dir, weight):
    base = make(data_dir, noise=GaussianNoise(0.1), data_weight=weight)
    scaled = make(data_dir, noise=GaussianNoise(0.1), data_weight=weight, data_scale=0.01)
    model = SIREN(2, base.out_dim, torch.Generator().manual_seed(1), width=16, depth=2)
    x = base.sample_domain(50, torch.Generator().manual_seed(2))
    a, b = base.losses(model, x), scaled.losses(model, x)
    assert b["data"].item() == pytest.approx(0.01 * a["data"].item(), rel=1e-12)
    assert all(torch.equal(a[k], b[k]) for k in a if k != "data")


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), "big"])
def test_bad_data_scale_names_the_key(data_dir, scale):
    with pytest.raises(ValueError, match="pde.data_scale"):
        make(data_dir, data_scale=scale)


def test_every_new_option_trains_end_to_end(make_cfg, tmp_path):
    """Exact conditions, one momentum term, focused sensors and collocation points, the noise-
    weighted and scaled data term, the log anchor, EMA + PCGrad in Adam, then SSBroyden: a few
    iterations run, Re moves, and the drag and lift are reported."""
    metrics = train(
        make_cfg(
            "pde=navier_stokes_inverse",
            "pde.refinement=1",
            "pde.n_sensors=40",
            "pde.hard_bc=true",
            "pde.momentum=joint",
            "pde.sensor_focus=[{fraction:0.5,low:[0.25,0.1],high:[1.0,0.3]}]",
            "pde.data_weight=noise",
            "pde.data_scale=0.01",
            "noise=gaussian",
            "anchor=log",
            "model=mlp",
            "optim=ssbroyden",
            "optim.adam_steps=3",
            "steps=6",
            "sampler=focus",
            "sampler.n_points=64",
            "sampler.interval=2",
            "balancer=ema",
            "surgery=pcgrad",
        )
    )
    assert metrics["status"] == "completed" and metrics["steps"] == 6
    assert metrics["re_pred"] != pytest.approx(50.0, rel=1e-9)
    assert all(math.isfinite(metrics[k]) for k in ("cd", "cl", "dp", "cd_rel_error", "rel_l2"))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["step_time_ms_quasi_newton"] > 0
