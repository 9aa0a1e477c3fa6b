"""The Adam schedule: decay, the unknowns' own learning rate and their warm-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pinn_exp.optim import Schedule


def run(schedule: Schedule, steps: int) -> tuple[list[float], list[float]]:
    """Minimise (w - 1)^2 + (k - 3)^2 for a network weight w and an unknown k; return both
    trajectories."""
    w = nn.Parameter(torch.zeros((), dtype=torch.float64))
    k = nn.Parameter(torch.zeros((), dtype=torch.float64))
    optimizer, scheduler = schedule.adam([w], [k])
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
    optimizer, scheduler = Schedule(decay_rate=0.5, decay_steps=10, unknown_warmup=5).adam(
        [nn.Parameter(torch.zeros(1))], [nn.Parameter(torch.zeros(1))]
    )
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs == pytest.approx([0.5e-3, 0.5e-3])


def test_no_unknowns_no_warmup_group():
    optimizer, _ = Schedule(unknown_warmup=10).adam([nn.Parameter(torch.zeros(1))], [])
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
