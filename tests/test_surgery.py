from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.surgery import (
    ConFIG,
    NoSurgery,
    PCGrad,
    Surgery,
    UPGrad,
    gradient_task_normalization,
    normalize_rows,
    pcgrad_orders,
    project_conflicting,
    weighted_rows,
)

DTYPE = torch.float64
SCALES = [1e-10, 1e-3, 1.0, 1e6, 1e15]
SHAPES = [(2, 2), (2, 50), (3, 10), (5, 100), (8, 1000)]
CONF = Path(__file__).resolve().parents[1] / "conf" / "surgery"


def _conflicting(k: int, p: int, scale: float, seed: int = 0) -> torch.Tensor:
    """Rows whose every pair conflicts, with per-row scales spread over 1e-3..1e3."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(k, p, generator=g, dtype=DTYPE)
    # Rows of I - a 11^T with a = 1.5 / K have pairwise inner product a (K a - 2) < 0.
    simplex = torch.eye(k, dtype=DTYPE) - 1.5 / k
    rows = simplex @ (basis / basis.norm(dim=1, keepdim=True))
    rows = rows + 0.01 * torch.randn(k, p, generator=g, dtype=DTYPE) / p**0.5
    spread = 10.0 ** torch.randint(-3, 4, (k, 1), generator=g).to(DTYPE)
    rows = scale * spread * rows
    cos = torch.nn.functional.normalize(rows, dim=1) @ torch.nn.functional.normalize(rows, dim=1).T
    assert (cos < 0).any()
    return rows


def _weights(k: int, seed: int = 0) -> torch.Tensor:
    return 0.5 + torch.rand(k, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tol(a: torch.Tensor, b: torch.Tensor) -> float:
    return 1e-10 * float(a.norm() * b.norm())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("gtn", [True, False])
@pytest.mark.parametrize("p", [2, 50, 1000])
@pytest.mark.parametrize("scale", SCALES)
def test_pcgrad_two_conflicting_terms_non_negative_with_both(gtn, p, scale):
    for seed in range(5):
        grads, weights = _conflicting(2, p, scale, seed), _weights(2, seed)
        out = PCGrad(gtn=gtn).combine(grads, weights, _gen(seed))
        for row in weighted_rows(grads, weights):
            assert out @ row >= -_tol(out, row)


@pytest.mark.parametrize("k", [3, 4, 5, 8])
@pytest.mark.parametrize("scale", SCALES)
def test_project_conflicting_documented_property(k, scale):
    rows = _conflicting(k, 40, scale, seed=k)
    orders = pcgrad_orders(k, _gen(k))
    projected = project_conflicting(rows, orders)
    for i in range(k):
        assert sorted(orders[i].tolist()) == [j for j in range(k) if j != i]
        # Replay Algorithm 1 of Yu et al. in P-space: right after visiting d_j, p_i . d_j >= 0.
        p = rows[i].clone()
        for j in orders[i].tolist():
            dot = p @ rows[j]
            if dot < 0:
                p = p - dot / (rows[j] @ rows[j]) * rows[j]
            assert p @ rows[j] >= -_tol(p, rows[j])
        torch.testing.assert_close(projected[i], p, rtol=1e-9, atol=1e-9 * float(p.norm()))
        last = rows[orders[i, -1]]
        assert projected[i] @ last >= -_tol(projected[i], last)


@pytest.mark.parametrize("gtn", [True, False])
def test_pcgrad_steps_compose(gtn):
    grads, weights = _conflicting(5, 30, 1.0, seed=1), _weights(5, seed=1)
    rows = weighted_rows(grads, weights)
    if gtn:
        rows = gradient_task_normalization(rows)
    expected = project_conflicting(rows, pcgrad_orders(5, _gen(9))).sum(dim=0)
    out = PCGrad(gtn=gtn).combine(grads, weights, _gen(9))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12 * float(expected.norm()))


@pytest.mark.parametrize("k,p", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_non_conflicting_pass_through(k, p, scale):
    g = _gen(k * p)
    grads = scale * torch.rand(k, p, generator=g, dtype=DTYPE)  # positive entries: no conflict
    weights = _weights(k)
    total = weights @ grads
    for surgery in [NoSurgery(), PCGrad(gtn=False), UPGrad()]:
        out = surgery.combine(grads, weights, _gen())
        torch.testing.assert_close(out, total, rtol=1e-12, atol=0)
    gtn_rows = gradient_task_normalization(weighted_rows(grads, weights))
    out = PCGrad(gtn=True).combine(grads, weights, _gen())
    torch.testing.assert_close(out, gtn_rows.sum(dim=0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("k,p", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_gtn_unit_rows_and_common_scale(k, p, scale):
    rows = _conflicting(k, p, scale, seed=p)
    norms = rows.norm(dim=1)
    unit = normalize_rows(rows)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(k, dtype=DTYPE), rtol=1e-14, atol=0)
    torch.testing.assert_close(unit * norms.unsqueeze(1), rows, rtol=1e-13, atol=0)
    gtn = gradient_task_normalization(rows)
    torch.testing.assert_close(gtn.norm(dim=1), norms.mean().expand(k), rtol=1e-14, atol=0)


def test_normalize_rows_keeps_zero_rows_zero():
    rows = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1e-20, 0.0], [1e-310, 0.0]], dtype=DTYPE)
    unit = normalize_rows(rows)
    assert torch.equal(unit[0], torch.zeros(2, dtype=DTYPE))
    assert torch.equal(unit[3], torch.zeros(2, dtype=DTYPE))  # subnormal: no reliable direction
    torch.testing.assert_close(unit[1], torch.tensor([0.6, 0.8], dtype=DTYPE))
    torch.testing.assert_close(unit[2], torch.tensor([1.0, 0.0], dtype=DTYPE))
    thresholded = normalize_rows(rows, eps=1e-12)  # 1e-20 <= 1e-12 x 5
    assert torch.equal(thresholded[2], torch.zeros(2, dtype=DTYPE))
    out = PCGrad().combine(rows, torch.ones(4, dtype=DTYPE), _gen())
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("k,p", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_gtn_direction_invariant_to_scaling_one_term(k, p, scale):
    grads, weights = _conflicting(k, p, scale, seed=k + p), _weights(k)
    surgery = PCGrad(gtn=True)
    reference = surgery.combine(grads, weights, _gen(3))
    for term in range(k):
        for factor in [1e-8, 1e-3, 1e3, 1e8]:  # on top of a 1e6 spread between rows
            scaled = weights.clone()
            scaled[term] *= factor
            out = surgery.combine(grads, scaled, _gen(3))
            assert _cosine(out, reference) > 1 - 1e-12


def test_pcgrad_seeded():
    grads, weights = _conflicting(5, 20, 1.0, seed=2), _weights(5)
    a = PCGrad().combine(grads, weights, _gen(11))
    b = PCGrad().combine(grads, weights, _gen(11))
    assert torch.equal(a, b)
    results = [PCGrad().combine(grads, weights, _gen(seed)) for seed in range(10)]
    assert any(not torch.allclose(results[0], r) for r in results[1:])


@pytest.mark.parametrize("surgery", [UPGrad(), ConFIG()], ids=repr)
@pytest.mark.parametrize("k,p", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_upgrad_config_non_negative_with_every_row(surgery, k, p, scale):
    for seed in range(3):
        grads, weights = _conflicting(k, p, scale, seed), _weights(k, seed)
        out = surgery.combine(grads, weights, _gen())
        assert out.shape == (p,) and torch.isfinite(out).all() and out.norm() > 0
        for row in weighted_rows(grads, weights):
            assert out @ row >= -_tol(out, row)


@pytest.mark.parametrize("p", [2, 50])
@pytest.mark.parametrize("scale", SCALES)
def test_upgrad_equals_pcgrad_for_two_terms(p, scale):
    # With two rows the projection onto the dual cone is the PCGrad projection.
    grads, weights = _conflicting(2, p, scale, seed=p), _weights(2)
    upgrad = UPGrad().combine(grads, weights, _gen())
    pcgrad = PCGrad(gtn=False).combine(grads, weights, _gen())
    torch.testing.assert_close(upgrad, pcgrad, rtol=1e-9, atol=1e-9 * float(pcgrad.norm()))


def test_config_direction_has_equal_cosines():
    grads, weights = _conflicting(4, 30, 1.0, seed=5), _weights(4)
    out = ConFIG().combine(grads, weights, _gen())
    cosines = torch.tensor([_cosine(out, row) for row in grads])
    torch.testing.assert_close(cosines, cosines.mean().expand(4), rtol=1e-10, atol=0)
    assert (cosines > 0).all()


@pytest.mark.parametrize("k,p", SHAPES)
def test_no_surgery_is_weighted_sum(k, p):
    grads, weights = _conflicting(k, p, 1.0), _weights(k)
    torch.testing.assert_close(NoSurgery().combine(grads, weights, _gen()), weights @ grads)


@pytest.mark.parametrize("surgery", [NoSurgery(), PCGrad(), UPGrad(), ConFIG()], ids=repr)
def test_output_detached(surgery):
    grads = _conflicting(3, 8, 1.0).requires_grad_(True)
    weights = _weights(3).requires_grad_(True)
    out = surgery.combine(grads, weights, _gen())
    assert not out.requires_grad and out.dtype == DTYPE


def test_flags_and_state():
    assert not NoSurgery.needs_gradients
    assert PCGrad.needs_gradients and UPGrad.needs_gradients and ConFIG.needs_gradients
    for surgery in [NoSurgery(), PCGrad(), UPGrad(), ConFIG()]:
        assert surgery.state_dict() == {}
        surgery.load_state_dict({})


def test_pcgrad_large_sanity():
    # K = 5, P = 1e5 takes milliseconds (the cost is one K x K Gramian; timing is not asserted).
    grads = torch.randn(5, 100_000, generator=_gen(), dtype=DTYPE)
    out = PCGrad().combine(grads, torch.ones(5, dtype=DTYPE), _gen())
    assert out.shape == (100_000,) and torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs,name", [({"gtn": "yes"}, "gtn"), ({"eps": -1.0}, "eps")])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*{kwargs[name]!r}"):
        PCGrad(**kwargs)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="weights"):
        NoSurgery().combine(torch.ones(3, 4, dtype=DTYPE), torch.ones(2, dtype=DTYPE))


def test_repr():
    assert repr(PCGrad()) == "PCGrad(gtn=True, eps=0.0)"
    assert [repr(s) for s in (NoSurgery(), UPGrad(), ConFIG())] == [
        "NoSurgery()",
        "UPGrad()",
        "ConFIG()",
    ]


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_instantiates(path):
    assert path.read_text().startswith("#")
    assert isinstance(instantiate(OmegaConf.load(path)), Surgery)


def test_yaml_files_present():
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"none", "pcgrad", "upgrad", "config"}


def _dual_cone_projection(rows: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Reference in P-space: argmin ||x - vector|| subject to rows @ x >= 0, from the dual
    x = vector + rows^T s with s >= 0 minimising ||rows^T s + vector|| (NNLS on the matrix)."""
    from scipy.optimize import nnls

    s, _ = nnls(rows.T.numpy(), -vector.numpy())
    return vector + rows.T @ torch.as_tensor(s)


@pytest.mark.parametrize("k,p", [(3, 10), (4, 20), (5, 12)])
@pytest.mark.parametrize("spread", [1.0, 1e4, 1e8])
def test_upgrad_matches_explicit_projections(k, p, spread):
    for seed in range(3):
        grads = _conflicting(k, p, 1.0, seed)
        weights = spread ** torch.linspace(-1, 1, k, dtype=DTYPE)  # rows up to spread^2 apart
        rows = weighted_rows(grads, weights)
        units = normalize_rows(rows)
        expected = sum(_dual_cone_projection(units, row) for row in rows)
        out = UPGrad().combine(grads, weights, _gen())
        torch.testing.assert_close(out, expected, rtol=1e-8, atol=1e-8 * float(expected.norm()))
        for row in rows:
            assert out @ row >= -_tol(out, row)


@pytest.mark.parametrize("surgery", [NoSurgery(), PCGrad(), PCGrad(gtn=False), UPGrad(), ConFIG()])
def test_zero_gradients_and_single_term(surgery):
    zeros = surgery.combine(torch.zeros(3, 5, dtype=DTYPE), torch.ones(3, dtype=DTYPE), _gen())
    assert torch.equal(zeros, torch.zeros(5, dtype=DTYPE))
    row = torch.tensor([[1.0, -2.0, 3.0]], dtype=DTYPE)
    out = surgery.combine(row, torch.tensor([2.0], dtype=DTYPE), _gen())
    assert _cosine(out, row[0]) > 1 - 1e-12
