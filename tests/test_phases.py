"""Training phases end to end: every optim option runs, a quasi-Newton run and a SOAP run resume
exactly, the diagnostics cover both phases, and the dense option refuses networks too large for
it."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pinn_exp.phases import QuasiNewtonPhase, QuasiNewtonSpec, SOAPPhase
from pinn_exp.quasi_newton import QuasiNewton
from pinn_exp.run import _gradient_scalars, train

from .conftest import CONF_DIR

OPTIONS = sorted(p.stem for p in (CONF_DIR / "optim").glob("*.yaml"))
QN = ["steps=8", "optim.adam_steps=3", "log_every=1", "eval_every=4", "sampler.interval=3"]


@pytest.mark.parametrize("option", OPTIONS)
def test_every_optim_option_trains_end_to_end(make_cfg, tmp_path, option):
    overrides = [f"optim={option}", *QN]
    quasi_newton = make_cfg(*overrides).optim.quasi_newton is not None
    if quasi_newton:
        overrides += ["model=mlp"]
    metrics = train(make_cfg(*overrides))
    assert metrics["status"] == "completed" and metrics["steps"] == 8
    assert metrics["rel_l2"] > 0
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"align/score", "align/pde", "align/ic", "loss/pde", "eval/wall_time_s"} <= tags
    if quasi_newton:
        assert {"qn/line_search_evals", "qn/step_length", "qn/resets", "qn/grad_norm"} <= tags
        # the quasi-Newton phase logged at each of its steps 4..8
        assert [e.step for e in events.Scalars("qn/step_length")] == [4, 5, 6, 7, 8]


def test_quasi_newton_decreases_the_loss_it_line_searches(make_cfg):
    metrics = train(make_cfg("optim=ssbroyden", "model=mlp", "steps=25", "optim.adam_steps=0"))
    assert metrics["status"] == "completed"


def run_killed_and_resumed(make_cfg, tmp_path, monkeypatch, overrides, optimizer_cls):
    """An uninterrupted run, and one killed at ``optimizer_cls``'s 7th step then resumed from
    its checkpoint: (metrics of the first, metrics of the resumed one)."""
    full = train(make_cfg(*overrides, f"output_dir={tmp_path / 'full'}"))
    real_step, calls = optimizer_cls.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(optimizer_cls, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*overrides, f"output_dir={tmp_path / 'killed'}"))
    monkeypatch.setattr(optimizer_cls, "step", real_step)
    return full, train(make_cfg(f"resume={tmp_path / 'killed'}"))


@pytest.mark.parametrize("option", ["ssbroyden", "lbfgs"])
def test_quasi_newton_run_resumed_after_kill_equals_uninterrupted(
    make_cfg, tmp_path, monkeypatch, option
):
    overrides = [
        f"optim={option}",
        "model=mlp",
        "steps=12",
        "optim.adam_steps=3",
        "checkpoint_every=4",
        "sampler.interval=5",
        "sampler=rar",
    ]
    # The 7th quasi-Newton step is step 10 of 12, after the step-8 checkpoint.
    full, resumed = run_killed_and_resumed(make_cfg, tmp_path, monkeypatch, overrides, QuasiNewton)
    assert resumed["rel_l2"] == full["rel_l2"]
    assert resumed["steps"] == full["steps"] == 12
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert torch.equal(
        a["phases"][1]["qn"]["curvature"].get("H", torch.zeros(1)),
        b["phases"][1]["qn"]["curvature"].get("H", torch.zeros(1)),
    )


def test_soap_trains_end_to_end_and_can_precede_a_quasi_newton_phase(make_cfg, tmp_path):
    metrics = train(make_cfg("optim=soap", "log_every=1"))
    assert metrics["status"] == "completed" and metrics["steps"] == 6
    assert metrics["step_time_ms_soap"] > 0 and "step_time_ms_adam" not in metrics
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [e.step for e in events.Scalars("align/score")] == list(range(1, 7))
    # SOAP for adam_steps, then SSBroyden, as after Adam
    overrides = ["optim=ssbroyden", "optim.method=soap", "model=mlp", *QN]
    metrics = train(make_cfg(*overrides, f"output_dir={tmp_path / 'qn'}"))
    assert metrics["status"] == "completed" and metrics["steps"] == 8
    assert metrics["step_time_ms_soap"] > 0 and metrics["step_time_ms_quasi_newton"] > 0
    state = torch.load(tmp_path / "qn" / "checkpoint.pt", weights_only=False)
    assert [g["step"] for g in state["phases"][0]["optimizer"]["param_groups"]] == [3]


def test_soap_run_resumed_after_kill_equals_uninterrupted(make_cfg, tmp_path, monkeypatch):
    from pytorch_optimizer.optimizer.soap import SOAP

    overrides = [
        "optim=soap",
        "optim.soap_precondition_frequency=2",
        "optim.unknown_warmup=3",
        "pde=allen_cahn_inverse",
        "steps=9",
        "checkpoint_every=4",
        "sampler.interval=3",
    ]
    # The 7th SOAP step is step 7 of 9, after the step-4 checkpoint.
    full, resumed = run_killed_and_resumed(make_cfg, tmp_path, monkeypatch, overrides, SOAP)
    assert resumed["steps"] == full["steps"] == 9
    assert resumed["rel_l2"] == full["rel_l2"]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(a["phases"][0]["optimizer"]["param_groups"]) == 2  # the unknown's own group


def test_soap_phase_comes_from_the_schedule(make_cfg):
    from pinn_exp.run import build

    parts = build(make_cfg("optim=soap"))
    model = parts.model
    [(first, phase)] = parts.schedule.phases(list(model.parameters()), [], 10)
    assert first == 0 and isinstance(phase, SOAPPhase) and phase.name == "soap"


def test_dense_option_refuses_a_network_too_large_naming_the_keys(make_cfg):
    cfg = make_cfg("optim=ssbroyden", "model.width=200", "model.depth=2", "steps=4")
    cfg.optim.adam_steps = 2
    with pytest.raises(ValueError, match=r"model\.width"):
        train(cfg)


def test_bad_loss_transform_is_rejected():
    with pytest.raises(ValueError, match="loss_transform"):
        QuasiNewtonSpec(loss_transform="cube").build([torch.nn.Parameter(torch.zeros(2))])


def test_loss_transform_keeps_the_minimiser():
    """sqrt and log of a positive loss have the same minimiser as the loss itself."""
    for transform in ["none", "sqrt", "log"]:
        w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
        phase = QuasiNewtonSpec(loss_transform=transform).build([w])
        assert isinstance(phase, QuasiNewtonPhase)
        target = torch.tensor([1.0, 0.5], dtype=torch.float64)

        def terms(w=w, target=target):
            return {"a": ((w - target) ** 2).sum() + 1e-3, "b": (w[0] - 1.0) ** 2}

        for _ in range(60):
            phase.step(terms, torch.ones(2, dtype=torch.float64))
        assert torch.allclose(w.detach(), target, atol=1e-6), transform


class _Identity:
    @staticmethod
    def precondition(grads):
        return grads


def test_alignment_score_is_one_for_agreeing_and_minus_one_for_opposing_terms():
    g = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]], dtype=torch.float64)
    update = -g.sum(0)
    out = _gradient_scalars(g, ["a", "b"], _Identity(), update)
    assert out["align/score"] == pytest.approx(1.0)
    assert out["align/a"] == pytest.approx(1.0) and out["align/b"] == pytest.approx(1.0)
    g[1] = -g[0]
    out = _gradient_scalars(g, ["a", "b"], _Identity(), g[1])
    assert out["align/score"] == pytest.approx(-1.0)
    assert out["align/a"] == pytest.approx(1.0) and out["align/b"] == pytest.approx(-1.0)
    assert out["grad/conflict_fraction"] == 1.0


def test_metrics_json_is_written_for_a_quasi_newton_run(make_cfg, tmp_path):
    train(make_cfg("optim=bfgs", "model=mlp", *QN))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["steps"] == 8


@pytest.mark.parametrize("refresh", [False, True])
def test_balancer_weights_frozen_or_refreshed_in_the_quasi_newton_phase(
    make_cfg, tmp_path, refresh
):
    """Frozen at the end of Adam by default; recomputed at each resampling with
    refresh_weights (the EMA balancer then sees the new points' gradients)."""
    overrides = [
        "optim=ssbroyden",
        "model=mlp",
        "balancer=ema",
        "balancer.update_every=1",
        "steps=9",
        "optim.adam_steps=3",
        "log_every=1",
        "sampler.interval=2",
        f"optim.quasi_newton.refresh_weights={str(refresh).lower()}",
    ]
    train(make_cfg(*overrides))
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    qn_weights = [e.value for e in events.Scalars("weight/ic") if e.step > 4]
    assert len(qn_weights) == 5
    if refresh:
        assert len(set(qn_weights)) > 1
    else:
        assert len(set(qn_weights)) == 1
