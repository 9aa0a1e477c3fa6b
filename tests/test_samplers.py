"""Tests of the collocation samplers (uniform, RAR-D of Wu et al. 2023, greedy RAR of Lu et al.
2021)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.samplers import RARSampler, Sampler, UniformSampler

CONF = Path(__file__).resolve().parents[1] / "conf" / "sampler"
LOW = torch.tensor([-1.0, 0.0], dtype=torch.float64)
HIGH = torch.tensor([2.0, 1.0], dtype=torch.float64)


def unit_square(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 2, generator=generator, dtype=torch.float64)


def rectangle(n: int, generator: torch.Generator) -> torch.Tensor:
    return LOW + (HIGH - LOW) * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def corner_peak(x: torch.Tensor) -> torch.Tensor:
    """Residual concentrated around (0.9, 0.9), width ~0.05."""
    return torch.exp(-((x[:, 0] - 0.9) ** 2 + (x[:, 1] - 0.9) ** 2) / 0.005)


def in_rectangle(x: torch.Tensor) -> bool:
    return bool(((x >= LOW) & (x <= HIGH)).all())


def n_distinct(x: torch.Tensor) -> int:
    return torch.unique(x, dim=0).shape[0]


def make_rar(mode: str, seed: int = 0, domain=unit_square, **kwargs) -> RARSampler:
    kwargs = {"n_points": 500, "interval": 10, "n_candidates": 5000, **kwargs}
    if mode == "greedy":
        kwargs.setdefault("n_greedy", 200)
    return RARSampler(domain, torch.Generator().manual_seed(seed), mode=mode, **kwargs)


@pytest.mark.parametrize("mode", ["rar_d", "greedy"])
def test_refinement_concentrates_without_collapse(mode):
    sampler = make_rar(mode)
    sampler.update(corner_peak)
    x = sampler.points()
    assert x.shape == (500, 2) and x.dtype == torch.float64
    # The corner [0.75, 1]^2 is 1/16 of the area; measured ~0.31 (rar_d) and ~0.47 (greedy).
    corner = ((x[:, 0] > 0.75) & (x[:, 1] > 0.75)).double().mean().item()
    assert corner > 4 / 16
    # No collapse onto copies of a few points: at least 99 % of the points are distinct
    # (sampling without replacement makes it 100 % for continuous draws).
    assert n_distinct(x) >= 0.99 * 500


@pytest.mark.parametrize("mode", ["rar_d", "greedy"])
def test_scalar_residual_raises(mode):
    # The original implementation fed the mean residual to the sampler.
    sampler = make_rar(mode)
    with pytest.raises(ValueError, match="one value per point"):
        sampler.update(lambda x: corner_peak(x).mean())


@pytest.mark.parametrize(
    "residual",
    [
        lambda x: corner_peak(x)[:-1],
        lambda x: corner_peak(x)[:, None],
        lambda x: corner_peak(x).tolist(),
    ],
    ids=["short", "column", "list"],
)
def test_wrong_shape_residual_raises(residual):
    with pytest.raises(ValueError, match="residual must return"):
        make_rar("rar_d").update(residual)


def test_non_finite_residual_raises():
    def residual(x):
        r = corner_peak(x)
        r[0] = float("nan")
        return r

    with pytest.raises(ValueError, match="non-finite"):
        make_rar("greedy").update(residual)


@pytest.mark.parametrize("mode", ["rar_d", "greedy"])
def test_same_seed_same_points(mode):
    a, b = make_rar(mode, seed=3), make_rar(mode, seed=3)
    assert torch.equal(a.points(), b.points())
    a.update(corner_peak)
    b.update(corner_peak)
    assert torch.equal(a.points(), b.points())
    assert not torch.equal(a.points(), make_rar(mode, seed=4).points())


@pytest.mark.parametrize(
    "factory",
    [
        lambda seed: UniformSampler(rectangle, torch.Generator().manual_seed(seed), 300, 5),
        lambda seed: make_rar("rar_d", seed, domain=rectangle, n_points=300, n_candidates=3000),
        lambda seed: make_rar("greedy", seed, domain=rectangle, n_points=300, n_candidates=3000),
    ],
    ids=["uniform", "rar_d", "greedy"],
)
def test_state_dict_round_trip_and_domain(factory):
    a = factory(0)
    a.update(corner_peak)
    state = a.state_dict()
    b = factory(99)
    b.load_state_dict(state)
    assert torch.equal(a.points(), b.points())
    for _ in range(2):
        a.update(corner_peak)
        b.update(corner_peak)
        assert torch.equal(a.points(), b.points())
        assert in_rectangle(a.points()) and a.points().shape == (300, 2)
    # The saved dict is a snapshot, not an alias of the live points.
    assert not torch.equal(state["points"], a.points())


def test_load_state_dict_checks_shape():
    sampler = UniformSampler(unit_square, torch.Generator().manual_seed(0), 10, 1)
    state = sampler.state_dict()
    state["points"] = state["points"][:5]
    with pytest.raises(ValueError, match="state\\['points'\\]"):
        sampler.load_state_dict(state)


def test_uniform_sampler_fresh_points_at_interval():
    sampler = UniformSampler(rectangle, torch.Generator().manual_seed(0), n_points=400, interval=7)
    assert [s for s in range(30) if sampler.due(s)] == [7, 14, 21, 28]
    first = sampler.points()
    sampler.update(lambda x: pytest.fail("uniform sampler must not evaluate the residual"))
    second = sampler.points()
    assert second.shape == (400, 2) and in_rectangle(first) and in_rectangle(second)
    assert not torch.isin(second[:, 0], first[:, 0]).any()
    # Uniform over the rectangle: the mean is near the centre (std of the mean ~0.04, 0.015).
    torch.testing.assert_close(second.mean(0), (LOW + HIGH) / 2, atol=0.15, rtol=0)


def test_residual_may_use_autograd_and_is_chunked():
    sizes = []

    def residual(x):
        # |d/dx sum(sin(x0) x1)| = |cos(x0) x1|: needs autograd with respect to x.
        sizes.append(x.shape[0])
        (g,) = torch.autograd.grad((torch.sin(x[:, 0]) * x[:, 1]).sum(), x, create_graph=True)
        return g[:, 0]

    sampler = make_rar("greedy", n_points=100, n_candidates=1000, n_greedy=10, chunk_size=128)
    sampler.update(residual)
    assert max(sizes) == 128 and sum(sizes) == 1000 + 100
    assert sampler.points().shape == (100, 2)


def test_default_pool_and_greedy_count_scale_with_n_points():
    sampler = RARSampler(unit_square, torch.Generator().manual_seed(0), 64, 5, mode="greedy")
    sizes = []
    sampler.update(lambda x: sizes.append(x.shape[0]) or corner_peak(x))
    assert sizes == [640, 64] and sampler.points().shape == (64, 2)
    assert n_distinct(sampler.points()) == 64


def test_float32_points_stay_float32():
    def domain(n, generator):
        return torch.rand(n, 2, generator=generator)

    sampler = RARSampler(domain, torch.Generator().manual_seed(0), 50, 5, 500)
    sampler.update(corner_peak)
    assert sampler.points().dtype == torch.float32 and sampler.points().shape == (50, 2)


def test_points_is_detached_alias():
    sampler = make_rar("rar_d")
    x = sampler.points().requires_grad_(True)
    assert x.requires_grad and not sampler.points().requires_grad


def test_huge_residual_does_not_overflow():
    sampler = make_rar("rar_d", k=2.0)
    sampler.update(lambda x: 1e200 * corner_peak(x))
    x = sampler.points()
    assert ((x[:, 0] > 0.75) & (x[:, 1] > 0.75)).double().mean() > 4 / 16


def test_zero_residual_with_c_zero_falls_back_to_uniform():
    sampler = make_rar("rar_d", c=0.0)
    sampler.update(lambda x: torch.zeros(x.shape[0], dtype=x.dtype))
    assert n_distinct(sampler.points()) == 500
    sampler.update(lambda x: (x[:, 0] > 0.99).double())  # ~50 non-zero of 5000, 450 needed
    assert n_distinct(sampler.points()) == 500


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_points": 0}, "n_points"),
        ({"interval": 0}, "interval"),
        ({"n_points": 10.0}, "n_points"),
        ({"n_candidates": 100}, "n_candidates"),
        ({"mode": "rad"}, "mode"),
        ({"k": -1.0}, "k"),
        ({"c": float("nan")}, "c"),
        ({"uniform_fraction": 1.5}, "uniform_fraction"),
        ({"mode": "greedy", "n_greedy": 480}, "n_greedy"),
        ({"mode": "greedy", "n_greedy": 0}, "n_greedy"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_rar(**{"mode": "rar_d", **kwargs})


def test_bad_domain_raises():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="floating-point"):
        UniformSampler(lambda n, gen: torch.randint(3, (n, 2), generator=gen), g, 10, 1)
    dims = iter([2, 3])
    sampler = UniformSampler(lambda n, gen: torch.rand(n, next(dims), generator=gen), g, 10, 1)
    with pytest.raises(ValueError, match="earlier"):
        sampler.update(corner_peak)
    with pytest.raises(ValueError, match="shape"):
        UniformSampler(lambda n, gen: torch.rand(n, dtype=torch.float64), g, 10, 1)


def test_repr_lists_arguments():
    text = repr(make_rar("greedy"))
    assert text.startswith("RARSampler(") and "mode='greedy'" in text and "n_greedy=200" in text
    assert repr(UniformSampler(unit_square, torch.Generator(), 3, 2)) == (
        "UniformSampler(n_points=3, interval=2)"
    )


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_instantiates(path):
    assert path.read_text().startswith("# ")
    factory = instantiate(OmegaConf.load(path))
    sampler = factory(domain=unit_square, generator=torch.Generator().manual_seed(0))
    assert isinstance(sampler, Sampler)
    sampler.update(corner_peak)
    assert sampler.points().shape == (sampler.n_points, 2)


def test_yaml_options_present():
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"uniform", "rar", "rar_greedy"}
