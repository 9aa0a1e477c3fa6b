import pytest
import torch
from torch import nn

from pinn_exp.gradients import conflict_diagnostics, per_term_gradients, write_direction

DTYPE = torch.float64
SCALES = [1e-10, 1e-3, 1.0, 1e6, 1e15]


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)
    ).to(DTYPE)


def _terms(model: nn.Module, extra: nn.Parameter) -> list[torch.Tensor]:
    """Three terms with their own forward passes, two sharing one, one using `extra` only."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(16, 2, generator=g, dtype=DTYPE) for _ in range(4)]
    own = [model(xs[0]).pow(2).mean(), (model(xs[1]) - 1).abs().mean(), model(xs[2]).sin().sum()]
    shared = model(xs[3])
    return [*own, shared.mean() ** 2, (shared * extra).pow(2).mean()]


def _flat_grad(term: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]
    )


def _setup():
    model = _mlp()
    extra = nn.Parameter(torch.tensor(0.7, dtype=DTYPE))
    params = [*model.parameters(), extra]
    return model, extra, params


def test_rows_equal_single_term_gradients():
    model, extra, params = _setup()
    terms = _terms(model, extra)
    matrix = per_term_gradients(terms, params)
    assert matrix.shape == (5, sum(p.numel() for p in params))
    assert matrix.dtype == DTYPE and not matrix.requires_grad
    for i in range(5):
        fresh = _terms(model, extra)  # a fresh graph: the term alone, nothing shared
        torch.testing.assert_close(matrix[i], _flat_grad(fresh[i], params), rtol=0, atol=0)
    # `extra` is used only by the last term: zeros elsewhere.
    assert torch.all(matrix[:4, -1] == 0) and matrix[4, -1] != 0


def test_constant_term_gives_zero_row():
    model, extra, params = _setup()
    terms = [*_terms(model, extra)[:2], torch.tensor(3.0, dtype=DTYPE)]
    matrix = per_term_gradients(terms, params)
    assert torch.all(matrix[2] == 0) and matrix[0].abs().sum() > 0


def test_weighted_sum_of_rows_equals_backward_of_weighted_sum():
    model, extra, params = _setup()
    weights = torch.tensor([0.5, 2.0, 1e-3, 7.0, 1.0], dtype=DTYPE)
    matrix = per_term_gradients(_terms(model, extra), params)
    total = sum(w * t for w, t in zip(weights, _terms(model, extra)))
    total.backward()
    plain = torch.cat([p.grad.reshape(-1) for p in params])
    torch.testing.assert_close(weights @ matrix, plain, rtol=1e-12, atol=1e-14)


def test_non_scalar_term_raises():
    model, extra, params = _setup()
    with pytest.raises(ValueError, match=r"terms\[0\]"):
        per_term_gradients([model(torch.zeros(3, 2, dtype=DTYPE))], params)


def test_write_direction_sets_grad_and_copies():
    _, _, params = _setup()
    total = sum(p.numel() for p in params)
    direction = torch.arange(total, dtype=DTYPE)
    params[0].grad = torch.full_like(params[0], -5.0)  # an existing grad is overwritten
    write_direction(params, direction)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in params]), direction)
    for p in params:
        assert p.grad.shape == p.shape
    direction.zero_()  # no aliasing
    assert params[1].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="direction"):
        write_direction(params, torch.zeros(total + 1, dtype=DTYPE))


@pytest.mark.parametrize("k,p", [(2, 3), (3, 50), (5, 1000), (8, 17)])
@pytest.mark.parametrize("scale", SCALES)
def test_cosine_matrix_symmetric_unit_diagonal(k, p, scale):
    g = torch.Generator().manual_seed(k * p)
    grads = scale * torch.randn(k, p, generator=g, dtype=DTYPE)
    diag = conflict_diagnostics(grads)
    cosine = diag["cosine"]
    assert cosine.shape == (k, k)
    assert torch.equal(cosine, cosine.T)
    assert torch.equal(cosine.diagonal(), torch.ones(k, dtype=DTYPE))
    assert cosine.abs().max() <= 1.0
    torch.testing.assert_close(diag["norms"], grads.norm(dim=1), rtol=1e-14, atol=0)
    expected = (grads @ grads.T) / torch.outer(grads.norm(dim=1), grads.norm(dim=1))
    torch.testing.assert_close(cosine, expected, rtol=0, atol=1e-12)
    assert 0.0 <= diag["conflict_fraction"] <= 1.0


def test_conflict_fraction_and_norm_ratio_hand_example():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 4.0], [3.0, 1.0]], dtype=DTYPE)
    # Pairs: (0,1) < 0, (0,2) = 0, (0,3) > 0, (1,2) > 0, (1,3) < 0, (2,3) > 0: 2 of 6 conflict.
    diag = conflict_diagnostics(grads)
    assert diag["conflict_fraction"] == pytest.approx(2 / 6)
    assert diag["norm_ratio"] == pytest.approx(4.0 / 1.0)
    assert diag["min_cosine"] == pytest.approx(-1.0 / 1.01**0.5)  # pair (0, 1)


def test_diagnostics_zero_row_and_single_term():
    diag = conflict_diagnostics(torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=DTYPE))
    assert diag["norm_ratio"] == float("inf")
    assert diag["cosine"][0, 1] == 0 and diag["conflict_fraction"] == 0.0
    single = conflict_diagnostics(torch.tensor([[1.0, 2.0]], dtype=DTYPE))
    assert single["conflict_fraction"] == 0.0 and single["cosine"].item() == 1.0
