import copy
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.balancers import (
    Balancer,
    EMABalancer,
    LRABalancer,
    NoBalancer,
    ReLoBRaLoBalancer,
)

DTYPE = torch.float64
SCALES = [1e-10, 1e-3, 1.0, 1e6, 1e15]
CONF = Path(__file__).resolve().parents[1] / "conf" / "balancer"


def _all_balancers() -> list[Balancer]:
    return [
        NoBalancer(),
        EMABalancer(),
        EMABalancer(alpha=0.5, update_every=1),
        LRABalancer(),
        LRABalancer(alpha=1.0, update_every=1),
        ReLoBRaLoBalancer(),
        ReLoBRaLoBalancer(alpha=0.5, temperature=1.0, rho=0.5),
    ]


def _mask(k: int) -> torch.Tensor:
    mask = torch.zeros(k, dtype=torch.bool)
    mask[0] = True
    return mask


def _run(balancer, steps, k, p, scale, seed=0, generator_seed=0):
    """Feeds `steps` steps of random losses and gradients; returns the list of weights."""
    data = torch.Generator().manual_seed(seed)
    gen = torch.Generator().manual_seed(generator_seed)
    out = []
    for step in range(steps):
        spread = 10.0 ** torch.randint(-6, 7, (k, 1), generator=data).to(DTYPE)
        grads = scale * spread * torch.randn(k, p, generator=data, dtype=DTYPE)
        losses = scale * spread[:, 0] * torch.rand(k, generator=data, dtype=DTYPE)
        out.append(balancer.weights(step, losses, grads, _mask(k), generator=gen))
    return out


@pytest.mark.parametrize("balancer", _all_balancers(), ids=repr)
@pytest.mark.parametrize("k,p", [(1, 4), (2, 10), (4, 100), (7, 33)])
@pytest.mark.parametrize("scale", SCALES)
def test_weights_finite_positive_detached(balancer, k, p, scale):
    balancer = copy.deepcopy(balancer)
    for weights in _run(balancer, 12, k, p, scale):
        assert weights.shape == (k,) and weights.dtype == DTYPE
        assert torch.isfinite(weights).all() and (weights > 0).all()
        assert not weights.requires_grad


@pytest.mark.parametrize("balancer", _all_balancers(), ids=repr)
def test_weights_detached_from_attached_inputs(balancer):
    theta = torch.tensor([1.0, -2.0], dtype=DTYPE, requires_grad=True)
    losses = torch.stack([theta[0] ** 2, 3 * theta[1] ** 2])
    grads = torch.stack([2 * theta * torch.tensor([1.0, 0.0]), 6 * theta * torch.tensor([0, 1])])
    weights = balancer.weights(0, losses, grads, _mask(2), generator=torch.Generator())
    assert not weights.requires_grad and weights.grad_fn is None


def test_ema_balances_constant_norms_a_million_apart():
    balancer = EMABalancer()
    grads = torch.tensor([[3.0, 4.0], [6e6, -8e6]], dtype=DTYPE)  # norms 5 and 1e7
    for step in range(3):
        weights = balancer.weights(step, torch.ones(2, dtype=DTYPE), grads, _mask(2))
        weighted = weights * grads.norm(dim=1)
        assert abs(weighted[0] / weighted[1] - 1) < 0.01


def test_ema_balances_gradient_descent_on_two_quadratics():
    # L1 = |x - a|^2 / 2, L2 = 1e6 |x - a|^2 / 2: gradient norms 1e6 apart at every step.
    balancer = EMABalancer()
    target = torch.tensor([1.0, -2.0, 0.5], dtype=DTYPE)
    x = torch.zeros(3, dtype=DTYPE)
    for step in range(300):
        grads = torch.stack([x - target, 1e6 * (x - target)])
        losses = 0.5 * torch.stack([(x - target).square().sum(), 1e6 * (x - target).square().sum()])
        weights = balancer.weights(step, losses, grads, _mask(2))
        weighted = weights * grads.norm(dim=1)
        assert abs(weighted[0] / weighted[1] - 1) < 0.01
        x = x - 1e-7 * (weights @ grads)  # curvature of sum_i w_i L_i is w1 + 1e6 w2 ~ 1e6
    assert (x - target).norm() < 1e-6 * target.norm()  # it did descend


@pytest.mark.parametrize("k", [0, -3, 7, 40])
def test_ema_bias_correction_exact_for_constant_power_of_two_norms(k):
    balancer = EMABalancer(alpha=0.9, update_every=1)
    norm = 2.0**k
    grads = torch.tensor([[norm, 0.0], [0.0, -4 * norm]], dtype=DTYPE)
    for step in range(200):
        balancer.weights(step, torch.ones(2, dtype=DTYPE), grads, _mask(2))
        assert torch.equal(balancer.corrected_norms(), torch.tensor([norm, 4 * norm], dtype=DTYPE))


@pytest.mark.parametrize("scale", SCALES)
def test_ema_bias_correction_constant_norm(scale):
    balancer = EMABalancer(alpha=0.999)
    grads = scale * torch.tensor([[0.3, 0.7, -1.1]], dtype=DTYPE)
    for step in range(50):
        balancer.weights(step, torch.ones(1, dtype=DTYPE), grads, _mask(1))
        torch.testing.assert_close(
            balancer.corrected_norms(), grads.norm(dim=1), rtol=1e-13, atol=0
        )


def test_ema_hand_computed_sequence():
    balancer = EMABalancer(alpha=0.5, update_every=1, eps=1e-300)
    n = [1.0, 4.0, 10.0]
    # m_t = sum_s (1 - a) a^(t - s) n_s, c_t = 1 - a^t, with a = 1/2.
    expected = [n[0], (n[0] + 2 * n[1]) / 3, (n[0] + 2 * n[1] + 4 * n[2]) / 7]
    for step, (norm, want) in enumerate(zip(n, expected)):
        grads = torch.tensor([[norm, 0.0], [0.0, 2.0]], dtype=DTYPE)
        weights = balancer.weights(step, torch.ones(2, dtype=DTYPE), grads, _mask(2))
        m_hat = balancer.corrected_norms()
        torch.testing.assert_close(
            m_hat, torch.tensor([want, 2.0], dtype=DTYPE), rtol=1e-15, atol=0
        )
        mean = (want + 2.0) / 2
        torch.testing.assert_close(weights, torch.tensor([mean / want, mean / 2.0], dtype=DTYPE))


def test_ema_update_every_holds_weights():
    balancer = EMABalancer(alpha=0.5, update_every=5)
    out = _run(balancer, 12, 3, 8, 1.0)
    for step in range(12):
        anchor = out[step - step % 5]
        assert torch.equal(out[step], anchor)
    assert not torch.equal(out[0], out[5]) and not torch.equal(out[5], out[10])


def test_ema_all_zero_gradients_give_unit_weights():
    weights = EMABalancer().weights(
        0, torch.ones(3, dtype=DTYPE), torch.zeros(3, 5, dtype=DTYPE), _mask(3)
    )
    assert torch.equal(weights, torch.ones(3, dtype=DTYPE))


def test_lra_hand_example():
    balancer = LRABalancer(alpha=0.1, update_every=10)
    grads = torch.tensor(
        [
            [3.0, -4.0, 0.0, 1.0],  # residual: max |.| = 4
            [1.0, -1.0, 2.0, 0.0],  # mean |.| = 1   -> estimate 5 / 1 = 5
            [0.5, 0.5, 0.5, -0.5],  # mean |.| = 0.5 -> estimate 5 / 0.5 = 10
            [0.0, 2.0, -5.0, 0.0],  # second residual: max over all residual rows is 5
        ],
        dtype=DTYPE,
    )
    mask = torch.tensor([True, False, False, True])
    losses = torch.ones(4, dtype=DTYPE)
    w0 = balancer.weights(0, losses, grads, mask)
    torch.testing.assert_close(w0, torch.tensor([1.0, 0.9 + 0.5, 0.9 + 1.0, 1.0], dtype=DTYPE))
    for step in range(1, 10):  # held in between
        assert torch.equal(balancer.weights(step, losses, 7 * grads, mask), w0)
    w10 = balancer.weights(10, losses, grads, mask)
    expected = torch.tensor([1.0, 0.9 * 1.4 + 0.5, 0.9 * 1.9 + 1.0, 1.0], dtype=DTYPE)
    torch.testing.assert_close(w10, expected)


def test_lra_needs_a_residual_term():
    with pytest.raises(ValueError, match="residual_mask"):
        LRABalancer().weights(0, torch.ones(2), torch.ones(2, 3), torch.zeros(2, dtype=torch.bool))


def _relobralo_run(balancer, seed, steps=40, k=4):
    return _run(balancer, steps, k, 3, 1.0, seed=123, generator_seed=seed)


@pytest.mark.parametrize("scale", SCALES)
def test_relobralo_weights_sum_to_k(scale):
    balancer = ReLoBRaLoBalancer(alpha=0.9, rho=0.7)
    for weights in _run(balancer, 30, 5, 2, scale):
        torch.testing.assert_close(
            weights.sum(), torch.tensor(5.0, dtype=DTYPE), rtol=1e-13, atol=0
        )


def test_relobralo_deterministic_given_generator():
    a = _relobralo_run(ReLoBRaLoBalancer(alpha=0.9, rho=0.5), seed=7)
    b = _relobralo_run(ReLoBRaLoBalancer(alpha=0.9, rho=0.5), seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    runs = [_relobralo_run(ReLoBRaLoBalancer(alpha=0.9, rho=0.5), seed=s) for s in range(5)]
    assert any(not torch.equal(runs[0][-1], run[-1]) for run in runs[1:])


def test_relobralo_formula():
    balancer = ReLoBRaLoBalancer(alpha=0.75, temperature=0.5, rho=1.0)  # rho = 1: no lookback
    l0 = torch.tensor([1.0, 2.0, 4.0], dtype=DTYPE)
    l1 = torch.tensor([0.5, 2.0, 1.0], dtype=DTYPE)
    l2 = torch.tensor([0.5, 1.0, 2.0], dtype=DTYPE)
    mask = _mask(3)
    assert torch.equal(balancer.weights(0, l0, None, mask), torch.ones(3, dtype=DTYPE))
    w1 = balancer.weights(1, l1, None, mask)
    torch.testing.assert_close(w1, 3 * torch.softmax(l1 / (0.5 * l0), 0))  # alpha = 0 at call 1
    w2 = balancer.weights(2, l2, None, mask)
    torch.testing.assert_close(w2, 0.75 * w1 + 0.25 * 3 * torch.softmax(l2 / (0.5 * l1), 0))
    # rho = 0: the history is replaced by the progress since the first step.
    lookback = ReLoBRaLoBalancer(alpha=0.75, temperature=0.5, rho=0.0)
    for step, losses in enumerate([l0, l1]):
        lookback.weights(step, losses, None, mask)
    expected = 0.75 * 3 * torch.softmax(l2 / (0.5 * l0), 0) + 0.25 * 3 * torch.softmax(
        l2 / (0.5 * l1), 0
    )
    torch.testing.assert_close(lookback.weights(2, l2, None, mask), expected)


def test_relobralo_zero_losses_are_finite():
    balancer = ReLoBRaLoBalancer()
    seq = [torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5]), torch.tensor([2.0, 0.5])]
    for step, losses in enumerate(seq):
        weights = balancer.weights(step, losses.to(DTYPE), None, _mask(2))
        assert torch.isfinite(weights).all() and (weights > 0).all()


@pytest.mark.parametrize("balancer", _all_balancers(), ids=repr)
def test_state_dict_round_trip_reproduces_next_weights(balancer):
    data = torch.Generator().manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    k, p = 4, 6
    feed = [
        (torch.rand(k, generator=data, dtype=DTYPE), torch.randn(k, p, generator=data, dtype=DTYPE))
        for _ in range(25)
    ]
    for step in range(13):
        balancer.weights(step, *feed[step], _mask(k), generator=gen)
    state = balancer.state_dict()
    gen_state = gen.get_state()
    resumed = type(balancer)(**_kwargs(balancer))
    resumed.load_state_dict(copy.deepcopy(state))
    resumed_gen = torch.Generator()
    resumed_gen.set_state(gen_state)
    for step in range(13, 25):
        a = balancer.weights(step, *feed[step], _mask(k), generator=gen)
        b = resumed.weights(step, *feed[step], _mask(k), generator=resumed_gen)
        assert torch.equal(a, b)


def test_state_dict_is_a_copy():
    balancer = EMABalancer(update_every=1)
    balancer.weights(0, torch.ones(2, dtype=DTYPE), torch.eye(2, dtype=DTYPE), _mask(2))
    state = balancer.state_dict()
    state["ema"].fill_(123.0)
    assert balancer.state_dict()["ema"].max() < 1


def _kwargs(balancer: Balancer) -> dict:
    names = {"alpha", "update_every", "eps", "temperature", "rho"}
    return {k: v for k, v in vars(balancer).items() if k in names}


def test_gradients_required():
    with pytest.raises(ValueError, match="grads"):
        EMABalancer().weights(0, torch.ones(2, dtype=DTYPE), None, _mask(2))
    assert EMABalancer.needs_gradients and LRABalancer.needs_gradients
    assert not NoBalancer.needs_gradients and not ReLoBRaLoBalancer.needs_gradients


@pytest.mark.parametrize(
    "factory,name,value",
    [
        (EMABalancer, "alpha", 1.0),
        (EMABalancer, "alpha", -0.1),
        (EMABalancer, "update_every", 0),
        (EMABalancer, "update_every", 2.5),
        (EMABalancer, "eps", 0.0),
        (EMABalancer, "eps", "small"),
        (LRABalancer, "alpha", 0.0),
        (LRABalancer, "update_every", -1),
        (ReLoBRaLoBalancer, "temperature", 0.0),
        (ReLoBRaLoBalancer, "rho", 1.5),
        (ReLoBRaLoBalancer, "alpha", 2.0),
    ],
)
def test_bad_arguments_raise(factory, name, value):
    with pytest.raises(ValueError, match=rf"`{name}`.*{value!r}"):
        factory(**{name: value})


def test_repr_lists_arguments():
    assert repr(EMABalancer(alpha=0.9)) == "EMABalancer(alpha=0.9, update_every=100, eps=1e-12)"
    assert repr(LRABalancer()) == "LRABalancer(alpha=0.1, update_every=10, eps=1e-12)"
    assert repr(ReLoBRaLoBalancer()) == (
        "ReLoBRaLoBalancer(alpha=0.999, temperature=0.1, rho=0.999)"
    )
    assert repr(NoBalancer()) == "NoBalancer()"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_instantiates(path):
    assert path.read_text().startswith("#")
    assert isinstance(instantiate(OmegaConf.load(path)), Balancer)


def test_yaml_files_present():
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"none", "ema", "lra", "relobralo"}
