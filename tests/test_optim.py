"""The first-order schedule (Adam, SOAP): decay, the unknowns' own learning rate and their
warm-up; SOAP's phase: descent, exact resume and its preconditioner."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from pinn_exp.optim import Schedule


def run(schedule: Schedule, steps: int) -> tuple[list[float], list[float]]:
    """Minimise (w - 1)^2 + (k - 3)^2 for a network weight w and an unknown k; return both
    trajectories."""
    w = nn.Parameter(torch.zeros((), dtype=torch.float64))
    k = nn.Parameter(torch.zeros((), dtype=torch.float64))
    optimizer, scheduler = schedule.first_order([w], [k])
    ws, ks = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        ((w - 1) ** 2 + (k - 3) ** 2).backward()
        optimizer.step()
        scheduler.step()
        ws.append(w.item())
        ks.append(k.item())
    return ws, ks


def test_unknowns_wait_for_the_warmup_then_train():
    ws, ks = run(Schedule(lr=1e-2, lr_unknown=1e-1, unknown_warmup=20), 60)
    assert ks[:20] == [0.0] * 20  # held at the guess
    assert ks[20] > 0 and ks[-1] > 1.0  # then moving at lr_unknown
    # The network's parameters are unaffected by the warm-up: same trajectory as without it.
    ws_plain, ks_plain = run(Schedule(lr=1e-2, lr_unknown=1e-1), 60)
    assert ws == pytest.approx(ws_plain, rel=1e-12)  # (closed-form vs recursive decay)
    assert ks_plain[0] > 0
    # The decay applies to both groups after the warm-up, as without it.
    optimizer, scheduler = Schedule(decay_rate=0.5, decay_steps=10, unknown_warmup=5).first_order(
        [nn.Parameter(torch.zeros(1))], [nn.Parameter(torch.zeros(1))]
    )
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs == pytest.approx([0.5e-3, 0.5e-3])


def test_no_unknowns_no_warmup_group():
    optimizer, _ = Schedule(unknown_warmup=10).first_order([nn.Parameter(torch.zeros(1))], [])
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"unknown_warmup": -1}, "optim.unknown_warmup"),
        ({"unknown_warmup": 2.5}, "optim.unknown_warmup"),
        ({"lr_unknown": 0}, "optim.lr_unknown"),
        ({"decay_rate": 1.5}, "optim.decay_rate"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Schedule(**kwargs)


# --- SOAP --------------------------------------------------------------------------------------
def least_squares(seed: int = 0):
    """A 3 x 4 weight W, a bias and a scalar unknown k; loss |W A + b - B|^2 + (k - 3)^2."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(4, 20, generator=gen, dtype=torch.float64)
    B = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    W = nn.Parameter(torch.randn(3, 4, generator=gen, dtype=torch.float64))
    b = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    k = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def loss() -> torch.Tensor:
        return ((W @ A + b[:, None] - B) ** 2).mean() + (k - 3) ** 2

    return [W, b], [k], loss


def soap_steps(phase, loss, steps: int, params) -> list[torch.Tensor]:
    """``steps`` steps of a first-order phase along the loss gradient; the flat parameters
    after each."""
    out = []
    for _ in range(steps):
        phase.zero_grad()
        loss().backward()
        phase.step()
        out.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return out


def soap(**kwargs) -> Schedule:
    return Schedule(**({"method": "soap", "soap_precondition_frequency": 2} | kwargs))


def test_soap_phase_is_soap_and_reduces_a_least_squares_loss():
    params, unknowns, loss = least_squares()
    phase = soap(lr=1e-2, lr_unknown=1e-1).first_order_phase(params, unknowns)
    assert phase.name == "soap" and phase.takes_direction
    assert type(phase.optimizer).__name__ == "SOAP"
    start = loss().item()
    soap_steps(phase, loss, 300, [*params, *unknowns])
    assert loss().item() < 0.1 * start
    assert unknowns[0].item() == pytest.approx(3.0, abs=1e-2)
    # the eigenbasis of W's gradient statistics is in use: a rotation per dimension
    Q = phase.optimizer.state[params[0]]["Q"]
    assert [q.shape for q in Q] == [(3, 3), (4, 4)]
    assert all((q - torch.diag(torch.diag(q))).abs().max() > 1e-2 for q in Q)  # not axis-aligned
    assert phase.scalars()["lr"] == pytest.approx(1e-2 * 0.9 ** (300 / 1000))


def test_soap_unknowns_have_their_own_learning_rate():
    runs = {}
    for lr_unknown in (1e-1, 1e-3):
        params, unknowns, loss = least_squares()
        phase = soap(lr=1e-2, lr_unknown=lr_unknown).first_order_phase(params, unknowns)
        assert [g["lr"] for g in phase.optimizer.param_groups] == [1e-2, lr_unknown]
        runs[lr_unknown] = soap_steps(phase, loss, 2, [*params, *unknowns])
    fast, slow = runs[1e-1], runs[1e-3]
    # SOAP's first step moves nothing; its second moves the (unrotated) scalar by its lr, once
    # decayed (Adam's first step: lr * g / |g|)
    decayed = 0.9 ** (1 / 1000)
    assert fast[0][-1] == slow[0][-1] == 0.0
    assert fast[1][-1].item() == pytest.approx(1e-1 * decayed, rel=1e-6)
    assert slow[1][-1].item() == pytest.approx(1e-3 * decayed, rel=1e-6)
    assert torch.equal(fast[1][:-1], slow[1][:-1])  # the network's group is unaffected


def test_soap_warmup_holds_the_unknowns_then_trains_them():
    params, unknowns, loss = least_squares()
    phase = soap(lr=1e-2, lr_unknown=1e-1, unknown_warmup=5).first_order_phase(params, unknowns)
    held = soap_steps(phase, loss, 12, [*params, *unknowns])
    assert [x[-1].item() for x in held[:5]] == [0.0] * 5
    assert held[5][-1].item() > 0 and held[-1][-1].item() > 0.3
    params, unknowns, loss = least_squares()
    plain = soap_steps(
        soap(lr=1e-2, lr_unknown=1e-1).first_order_phase(params, unknowns),
        loss,
        12,
        [*params, *unknowns],
    )
    assert plain[1][-1].item() > 0  # without the warm-up it moves from the second step
    # the network's trajectory is the warm-up-free one (closed-form vs recursive decay)
    assert all(torch.allclose(a[:-1], b[:-1], rtol=1e-12, atol=0) for a, b in zip(held, plain))


def test_soap_resumed_from_its_state_takes_the_same_steps():
    """Save after 5 steps (between eigenbasis refreshes), restore into fresh objects through
    torch.save/torch.load, continue: bit-identical to the uninterrupted run."""
    schedule = soap(lr=1e-2, lr_unknown=1e-1, unknown_warmup=3)
    params, unknowns, loss = least_squares()
    phase = schedule.first_order_phase(params, unknowns)
    every = [*params, *unknowns]
    soap_steps(phase, loss, 5, every)
    buffer = io.BytesIO()
    torch.save({"phase": phase.state_dict(), "params": [p.detach() for p in every]}, buffer)
    uninterrupted = soap_steps(phase, loss, 10, every)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params, unknowns, loss = least_squares()  # the same data; parameters at their start
    every = [*params, *unknowns]
    with torch.no_grad():
        for p, value in zip(every, saved["params"]):
            p.copy_(value)
    phase = schedule.first_order_phase(params, unknowns)
    phase.load_state_dict(saved["phase"])
    resumed = soap_steps(phase, loss, 10, every)
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed))
    # (a fresh phase without the restored state takes other steps: the check can fail)
    params, unknowns, loss = least_squares()
    every = [*params, *unknowns]
    with torch.no_grad():
        for p, value in zip(every, saved["params"]):
            p.copy_(value)
    fresh = soap_steps(schedule.first_order_phase(params, unknowns), loss, 10, every)
    assert not torch.equal(fresh[-1], uninterrupted[-1])


def test_soap_precondition_is_the_map_of_its_step():
    """With betas[0] = 0 SOAP's momentum is the gradient, so the preconditioned gradient is
    parallel to the step just taken (on a step that kept the eigenbasis); it is neither the
    gradient itself nor Adam's diagonal scaling of it."""
    params, unknowns, loss = least_squares()
    every = [*params, *unknowns]
    # one learning rate for both groups: precondition() leaves the learning rates out
    schedule = soap(lr=1e-2, lr_unknown=1e-2, betas=(0.0, 0.999), soap_precondition_frequency=100)
    phase = schedule.first_order_phase(params, unknowns)
    g0 = torch.ones(2, sum(p.numel() for p in every), dtype=torch.float64)
    assert torch.equal(phase.precondition(g0), g0)  # no statistics yet: identity
    soap_steps(phase, loss, 6, every)
    phase.zero_grad()
    loss().backward()
    g = torch.cat([p.grad.reshape(-1) for p in every])
    before = torch.cat([p.detach().reshape(-1) for p in every])
    phase.step()
    update = torch.cat([p.detach().reshape(-1) for p in every]) - before
    d = phase.precondition(torch.stack([g, 2 * g]))
    cos = torch.nn.functional.cosine_similarity
    assert d.shape == (2, g.numel()) and torch.allclose(d[1], 2 * d[0], rtol=1e-12)
    assert cos(d[0], -update, dim=0).item() == pytest.approx(1.0, abs=1e-8)
    assert cos(g, -update, dim=0).item() < 0.999
    v = torch.cat([phase.optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in every])
    adam_like = g / (v.sqrt() + 1e-8)
    assert cos(adam_like, -update, dim=0).item() < 0.999


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"method": "sgd"}, "optim.method"),
        ({"method": "soap", "soap_precondition_frequency": 0}, "optim.soap_precondition_frequency"),
        ({"method": "soap", "soap_shampoo_beta": 1.0}, "optim.soap_shampoo_beta"),
    ],
)
def test_bad_method_and_soap_arguments_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Schedule(**kwargs)
