"""Tests of the collocation samplers (uniform, RAR-D of Wu et al. 2023, greedy RAR of Lu et al.
2021) and of their ``focus`` regions."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.samplers import RARSampler, Sampler, UniformSampler

CONF = Path(__file__).resolve().parents[1] / "conf" / "sampler"
LOW = torch.tensor([-1.0, 0.0], dtype=torch.float64)
HIGH = torch.tensor([2.0, 1.0], dtype=torch.float64)
# Regions of the rectangle [-1, 2] x [0, 1]: a ball and a box, a quarter of the points each.
RECT_FOCUS = [
    {"fraction": 0.25, "centre": [0.0, 0.5], "radius": 0.3},
    {"fraction": 0.25, "low": [1.0, 0.0], "high": [2.0, 0.5]},
]


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
        lambda seed: UniformSampler(
            rectangle, torch.Generator().manual_seed(seed), 300, 5, focus=RECT_FOCUS
        ),
        lambda seed: make_rar(
            "rar_d", seed, domain=rectangle, n_points=300, n_candidates=3000, focus=RECT_FOCUS
        ),
        lambda seed: make_rar(
            "greedy", seed, domain=rectangle, n_points=300, n_candidates=3000, focus=RECT_FOCUS
        ),
    ],
    ids=["uniform", "rar_d", "greedy", "uniform_focus", "rar_d_focus", "greedy_focus"],
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
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"uniform", "rar", "rar_greedy", "focus"}
    # every option takes sampler.focus (null: uniform draws), so it can be overridden on any
    for path in CONF.glob("*.yaml"):
        assert "focus" in OmegaConf.load(path), path.name


# --- focus: regions given fixed fractions of every draw -----------------------------------------
CYLINDER = torch.tensor([0.2, 0.2], dtype=torch.float64)
CHANNEL = torch.tensor([2.2, 0.41], dtype=torch.float64)
NS_BALL = {"fraction": 0.2, "centre": [0.2, 0.2], "radius": 0.1}
NS_WAKE = {"fraction": 0.3, "low": [0.25, 0.1], "high": [1.0, 0.3]}


def channel(n: int, generator: torch.Generator) -> torch.Tensor:
    """Navier-Stokes' fluid domain, [0, 2.2] x [0, 0.41] minus the cylinder, by rejection."""
    kept, count = [], 0
    while count < n:
        x = CHANNEL * torch.rand(n + 16, 2, generator=generator, dtype=torch.float64)
        x = x[(x - CYLINDER).norm(dim=1) > 0.05]
        kept.append(x)
        count += x.shape[0]
    return torch.cat(kept)[:n]


def in_ball(x: torch.Tensor, centre, radius) -> torch.Tensor:
    return (x - x.new_tensor(centre)).norm(dim=1) <= radius


def in_box(x: torch.Tensor, low, high) -> torch.Tensor:
    return ((x >= x.new_tensor(low)) & (x <= x.new_tensor(high))).all(dim=1)


def recording(domain):
    """``domain`` that records the size of each call."""
    calls = []

    def wrapped(n, generator):
        calls.append(n)
        return domain(n, generator)

    return wrapped, calls


@pytest.mark.parametrize("focus", [None, []], ids=["none", "empty"])
def test_no_focus_draws_exactly_the_domain_points(focus):
    """Without focus the points are the domain's draws, consuming the generator as before."""
    sampler = UniformSampler(rectangle, torch.Generator().manual_seed(5), 300, 5, focus=focus)
    twin = torch.Generator().manual_seed(5)
    assert torch.equal(sampler.points(), rectangle(300, twin))
    sampler.update(corner_peak)
    assert torch.equal(sampler.points(), rectangle(300, twin))
    assert torch.equal(sampler.generator.get_state(), twin.get_state())
    assert sampler.focus is None and "focus" not in repr(sampler)


@pytest.mark.parametrize("mode", ["rar_d", "greedy"])
def test_no_focus_rar_calls_the_domain_as_before(mode):
    """RAR without focus: one domain call per draw (points, pool, fresh uniform part), in the
    order and sizes of the original code, and the generator ends where a plain replay does."""
    domain, calls = recording(rectangle)
    sampler = make_rar(mode, seed=2, domain=domain, n_points=300, n_candidates=3000)
    sampler.update(corner_peak)
    assert calls == [300, 3000, 30]  # n_points, n_candidates, round(0.1 * n_points)
    twin = torch.Generator().manual_seed(2)
    initial = rectangle(300, twin)
    pool = rectangle(3000, twin)
    if mode == "rar_d":
        eps = corner_peak(pool)
        weights = (eps / eps.max()) / (eps / eps.max()).mean() + 1.0
        index = torch.multinomial(weights, 270, replacement=False, generator=twin)
        expected = torch.cat([pool[index], rectangle(30, twin)])
    else:
        keep = torch.argsort(corner_peak(initial), descending=True)[: 300 - 200 - 30]
        best = torch.topk(corner_peak(pool), 200).indices
        expected = torch.cat([initial[keep], pool[best], rectangle(30, twin)])
    assert torch.equal(sampler.points(), expected)
    assert torch.equal(sampler.generator.get_state(), twin.get_state())


def test_focus_counts_are_exact_when_fractions_sum_to_one():
    # Disjoint regions and no uniform rest: each region holds exactly round(fraction * n).
    focus = [
        {"fraction": 0.3, "centre": [0.25, 0.25], "radius": 0.2},
        {"fraction": 0.7, "low": [0.6, 0.6], "high": [1.0, 1.0]},
    ]
    sampler = UniformSampler(unit_square, torch.Generator().manual_seed(0), 1001, 1, focus=focus)
    for _ in range(2):
        x = sampler.points()
        assert x.shape == (1001, 2)
        assert int(in_ball(x, [0.25, 0.25], 0.2).sum()) == 300  # round(300.3)
        assert int(in_box(x, [0.6, 0.6], [1.0, 1.0]).sum()) == 701  # round(700.7)
        assert n_distinct(x) == 1001
        sampler.update(corner_peak)


def test_focus_rounding_never_exceeds_n():
    # round(1.5) = 2 twice would be 4 points of 3: the last region gives one back.
    focus = [
        {"fraction": 0.5, "low": [0.0, 0.0], "high": [0.5, 1.0]},
        {"fraction": 0.5, "low": [0.5, 0.0], "high": [1.0, 1.0]},
    ]
    sampler = UniformSampler(unit_square, torch.Generator().manual_seed(0), 3, 1, focus=focus)
    x = sampler.points()
    assert x.shape == (3, 2)
    assert int((x[:, 0] <= 0.5).sum()) == 2 and int((x[:, 0] >= 0.5).sum()) == 1


def test_focus_fraction_plus_uniform_rest():
    # 400 points in the box [0, 0.5]^2, and the other 600 uniform: a quarter of them fall in the
    # box too, so it holds 400 + Bin(600, 1/4) = 550 +- 11; without focus it would hold ~250.
    focus = [{"fraction": 0.4, "low": [0.0, 0.0], "high": [0.5, 0.5]}]
    sampler = UniformSampler(unit_square, torch.Generator().manual_seed(0), 1000, 1, focus=focus)
    for _ in range(3):
        count = int(in_box(sampler.points(), [0.0, 0.0], [0.5, 0.5]).sum())
        assert 505 < count < 595
        sampler.update(corner_peak)
    # The region points are shuffled in, not stacked after the uniform ones: each end holds
    # ~55 % box points (+- 5 %); unshuffled, one end would hold 25 %, the other 100 %.
    x = sampler.points()
    for end in (x[:100], x[-100:]):
        assert 0.35 < in_box(end, [0.0, 0.0], [0.5, 0.5]).double().mean().item() < 0.75


def test_navier_stokes_preset_stays_in_the_fluid():
    sampler = UniformSampler(
        channel, torch.Generator().manual_seed(0), 2000, 1, focus=[NS_BALL, NS_WAKE]
    )
    for _ in range(2):
        x = sampler.points()
        assert x.shape == (2000, 2) and x.dtype == torch.float64
        assert bool(((x >= 0) & (x <= CHANNEL)).all())
        assert bool(((x - CYLINDER).norm(dim=1) > 0.05).all())  # never inside the cylinder
        # At least the focused shares, 400 and 600. Expected: the ball 400 + 26 of the uniform
        # 1000 (2.6 % of the fluid) + 25 of the wake's 600 = ~451; the wake 600 + 168 of the
        # uniform (16.8 %) + 104 of the ball's 400 (26 % of the ball lies in the box) = ~872.
        ball = int(in_ball(x, [0.2, 0.2], 0.1).sum())
        wake = int(in_box(x, [0.25, 0.1], [1.0, 0.3]).sum())
        assert 420 < ball < 485 and 820 < wake < 925
        sampler.update(corner_peak)


def test_focus_is_reproducible_from_the_seed():
    def make(seed):
        return UniformSampler(
            channel, torch.Generator().manual_seed(seed), 500, 1, focus=[NS_BALL, NS_WAKE]
        )

    a, b = make(7), make(7)
    assert torch.equal(a.points(), b.points())
    a.update(corner_peak)
    b.update(corner_peak)
    assert torch.equal(a.points(), b.points())
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert not torch.equal(a.points(), make(8).points())


def test_focus_accepts_omegaconf_containers():
    plain = UniformSampler(channel, torch.Generator().manual_seed(1), 500, 1, [NS_BALL, NS_WAKE])
    conf = OmegaConf.create({"focus": [NS_BALL, NS_WAKE]}).focus
    hydra = UniformSampler(channel, torch.Generator().manual_seed(1), 500, 1, focus=conf)
    assert hydra.focus == plain.focus and torch.equal(hydra.points(), plain.points())
    assert hydra.focus[0]["centre"] == (0.2, 0.2) and hydra.focus[1]["high"] == (1.0, 0.3)


def test_focus_yaml_is_the_navier_stokes_preset():
    factory = instantiate(OmegaConf.load(CONF / "focus.yaml"))
    sampler = factory(domain=channel, generator=torch.Generator().manual_seed(0))
    assert isinstance(sampler, UniformSampler)
    assert sampler.focus == (
        {"fraction": 0.2, "centre": (0.2, 0.2), "radius": 0.1},
        {"fraction": 0.3, "low": (0.25, 0.1), "high": (1.0, 0.3)},
    )
    assert "focus=[{'fraction': 0.2, 'centre': [0.2, 0.2], 'radius': 0.1}, " in repr(sampler)


def test_focus_repr():
    sampler = UniformSampler(unit_square, torch.Generator(), 3, 2, focus=[NS_BALL])
    assert repr(sampler) == (
        "UniformSampler(n_points=3, interval=2, "
        "focus=[{'fraction': 0.2, 'centre': [0.2, 0.2], 'radius': 0.1}])"
    )
    text = repr(make_rar("rar_d", focus=[NS_WAKE]))
    assert "chunk_size=4096, focus=[{'fraction': 0.3, 'low': [0.25, 0.1]" in text


@pytest.mark.parametrize("mode", ["rar_d", "greedy"])
def test_rar_with_focus_focuses_its_pool_and_still_refines(mode):
    focus = [{"fraction": 0.5, "low": [0.0, 0.0], "high": [0.5, 0.5]}]
    seen = []

    def residual(x):
        seen.append(x.detach())
        return corner_peak(x)

    sampler = make_rar(mode, focus=focus)
    in_region = in_box(sampler.points(), [0.0, 0.0], [0.5, 0.5]).double().mean().item()
    assert 0.57 < in_region < 0.68  # 0.5 + 0.5 / 4 = 0.625 (uniform: 0.25)
    sampler.update(residual)
    # The candidate pool follows the focus too: 0.625 of 5000 +- 0.007.
    pool = torch.cat(seen)[:5000]
    in_region = in_box(pool, [0.0, 0.0], [0.5, 0.5]).double().mean().item()
    assert 0.6 < in_region < 0.65
    # And the refinement still finds the peak outside the region: the corner [0.75, 1]^2 holds
    # 1/32 of the focused density q, but over 4x that of the refined set.
    x = sampler.points()
    assert x.shape == (500, 2) and bool(((x >= 0) & (x <= 1)).all())
    corner = ((x[:, 0] > 0.75) & (x[:, 1] > 0.75)).double().mean().item()
    assert corner > 4 / 32
    assert n_distinct(x) >= 0.99 * 500


def test_focus_float32_points_stay_float32():
    def domain(n, generator):
        return torch.rand(n, 2, generator=generator)

    sampler = RARSampler(domain, torch.Generator().manual_seed(0), 50, 5, 500, focus=[NS_BALL])
    sampler.update(corner_peak)
    assert sampler.points().dtype == torch.float32 and sampler.points().shape == (50, 2)


BALL = {"centre": [0.5, 0.5], "radius": 0.1}
BOX = {"low": [0.0, 0.0], "high": [0.5, 0.5]}


@pytest.mark.parametrize(
    ("focus", "match"),
    [
        ({"fraction": 0.2, **BALL}, r"^sampler\.focus must be null or a list"),
        ("ball", r"^sampler\.focus must be null or a list"),
        ([[0.2, 0.5, 0.5, 0.1]], r"^sampler\.focus\[0\] must be a mapping"),
        ([{"fraction": 0.6, **BALL}, {"fraction": 0.6, **BOX}], r"sum to <= 1, got 0.6 \+ 0.6"),
        ([{"fraction": 0.0, **BALL}], r"^sampler\.focus\[0\]\.fraction must be a number in"),
        ([{"fraction": -0.1, **BALL}], r"^sampler\.focus\[0\]\.fraction"),
        ([{"fraction": 1.5, **BALL}], r"^sampler\.focus\[0\]\.fraction"),
        ([{"fraction": math.nan, **BALL}], r"^sampler\.focus\[0\]\.fraction"),
        ([{"fraction": True, **BALL}], r"^sampler\.focus\[0\]\.fraction"),
        ([{"fraction": "0.2", **BALL}], r"^sampler\.focus\[0\]\.fraction"),
        ([{**BALL}], r"^sampler\.focus\[0\]\.fraction .* got None"),
        ([{"fraction": 0.2, **BALL, "radius": 0}], r"^sampler\.focus\[0\]\.radius must be a "),
        ([{"fraction": 0.2, **BALL, "radius": -1.0}], r"^sampler\.focus\[0\]\.radius"),
        ([{"fraction": 0.2, **BALL, "radius": math.inf}], r"^sampler\.focus\[0\]\.radius"),
        ([{"fraction": 0.2, **BALL, "radius": None}], r"^sampler\.focus\[0\]\.radius"),
        ([{"fraction": 0.2, **BALL, "centre": []}], r"^sampler\.focus\[0\]\.centre must be"),
        ([{"fraction": 0.2, **BALL, "centre": "ab"}], r"^sampler\.focus\[0\]\.centre"),
        ([{"fraction": 0.2, **BALL, "centre": [0.1, "x"]}], r"^sampler\.focus\[0\]\.centre"),
        ([{"fraction": 0.2, **BOX, "low": [0.5, 0.0]}], r"^sampler\.focus\[0\]\.high must be >"),
        ([{"fraction": 0.2, **BOX, "high": [0.6, 0.0]}], r"^sampler\.focus\[0\]\.high must be >"),
        ([{"fraction": 0.2, **BOX, "high": [1.0, 1, 1]}], r"sampler\.focus\[0\]\.high must have"),
        ([{"fraction": 0.2, **BOX, "low": 0.0}], r"^sampler\.focus\[0\]\.low must be a list"),
        ([{"fraction": 0.2, "center": [0.5, 0.5], "radius": 0.1}], r"unknown keys \['center'\]"),
        ([{"fraction": 0.2, **BALL, **BOX}], r"^sampler\.focus\[0\] must give either centre"),
        ([{"fraction": 0.2, "centre": [0.5, 0.5]}], r"^sampler\.focus\[0\] must give either"),
        ([{"fraction": 0.2}], r"^sampler\.focus\[0\] must give either"),
        ([{"fraction": 0.2, **BALL}, {"fraction": 0.2, **BALL, "radius": 0}], r"focus\[1\]\.rad"),
    ],
)
def test_bad_focus_raises_naming_the_key(focus, match):
    calls = []
    with pytest.raises(ValueError, match=match):
        UniformSampler(
            lambda n, g: calls.append(n) or unit_square(n, g), torch.Generator(), 10, 1, focus=focus
        )
    assert calls == []  # rejected before any point is drawn


@pytest.mark.parametrize(
    ("focus", "match"),
    [
        (
            [{"fraction": 0.2, "centre": [0.5, 0.5, 0.5], "radius": 0.1}],
            r"focus\[0\]\.centre has 3",
        ),
        (
            [{"fraction": 0.2, **BALL}, {"fraction": 0.2, "low": [0.0], "high": [1.0]}],
            r"focus\[1\]\.low has 1",
        ),
        # a region too small to get a point of 10 is still checked
        ([{"fraction": 0.01, "centre": [0.5], "radius": 0.1}], r"focus\[0\]\.centre has 1"),
    ],
)
def test_focus_of_the_wrong_dimension_raises_at_the_first_draw(focus, match):
    with pytest.raises(ValueError, match=match + r" coordinates, but the domain's points have d=2"):
        UniformSampler(unit_square, torch.Generator().manual_seed(0), 10, 1, focus=focus)


@pytest.mark.parametrize(
    ("region", "rate"),
    [
        ({"low": [2.0, 2.0], "high": [3.0, 3.0]}, r"acceptance rate 0,"),  # outside the domain
        ({"centre": [0.2, 0.2], "radius": 0.04}, r"acceptance rate 0,"),  # inside the cylinder
        ({"centre": [1.0, 0.2], "radius": 0.01}, r"acceptance rate 0\.000[0-9]+,"),  # too small
    ],
    ids=["outside", "hole", "tiny"],
)
def test_focus_that_misses_the_domain_raises(region, rate):
    focus = [{"fraction": 0.2, **region}]
    with pytest.raises(
        ValueError, match=r"^sampler\.focus\[0\] = \{'fraction': 0\.2.* hardly"
    ) as err:
        UniformSampler(channel, torch.Generator().manual_seed(0), 500, 1, focus=focus)
    assert re.search(rate, str(err.value)), str(err.value)
    assert "100 points were needed" in str(err.value)


def test_focus_that_barely_intersects_still_works():
    # A ball of area ~1.3 % of the fluid, half of it outside the channel: ~0.6 % acceptance.
    focus = [{"fraction": 0.5, "centre": [2.2, 0.2], "radius": 0.1}]
    sampler = UniformSampler(channel, torch.Generator().manual_seed(0), 400, 1, focus=focus)
    x = sampler.points()
    assert int(in_ball(x, [2.2, 0.2], 0.1).sum()) >= 200 and bool((x[:, 0] <= 2.2).all())
