"""End to end: train.py writes the output contract, resumes exactly, stops on divergence, and
rejects bad input with the key named."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pinn_exp.run import train

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_train_writes_output_contract(make_cfg, tmp_path):
    metrics = train(make_cfg())
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics, nan_ok=True)
    assert saved["status"] == "completed" and saved["steps"] == 6
    for key in ("wall_time_s", "step_time_ms", "rel_l2", "rel_l2_u"):
        assert saved[key] > 0
    assert (out / "checkpoint.pt").is_file()
    assert list(out.glob("events.out.tfevents.*"))
    with h5py.File(out / "prediction.h5") as f:
        assert f["prediction/u"].shape == f["reference/u"].shape == (201, 512)
        assert "steps: 6" in f.attrs["config"]
    events = EventAccumulator(str(out), size_guidance={"images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "loss/pde",
        "loss/ic",
        "weight/pde",
        "grad_norm/pde",
        "grad/norm_ratio",
        "grad/conflict_fraction",
        "cosine/pde__ic",
        "lr",
        "eval/rel_l2",
    ):
        assert tag in scalars, tag
    images = set(events.Tags()["images"])
    assert {"eval/fields", "eval/collocation", "grad/cosines"} <= images


def test_same_seed_same_numbers(make_cfg, tmp_path):
    """Same seed and same thread count (one process): the same numbers. Across thread counts
    CPU reductions differ in order, and so do the results (README, Results)."""
    a = train(make_cfg("output_dir=" + str(tmp_path / "a")))
    b = train(make_cfg("output_dir=" + str(tmp_path / "b")))
    c = train(make_cfg("output_dir=" + str(tmp_path / "c"), "seed=1"))
    assert a["rel_l2"] == b["rel_l2"]
    assert a["rel_l2"] != c["rel_l2"]


@pytest.mark.parametrize("modules", [[], ["sampler=rar", "balancer=ema", "surgery=pcgrad"]])
def test_resume_after_kill_reproduces_uninterrupted_run(make_cfg, tmp_path, monkeypatch, modules):
    overrides = ["steps=9", "checkpoint_every=4", "sampler.interval=3", *modules]
    full = train(make_cfg(*overrides, f"output_dir={tmp_path / 'full'}"))

    # Kill the second run inside step 7 (after the step-4 checkpoint, before the next one).
    real_step, calls = torch.optim.Adam.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*overrides, f"output_dir={tmp_path / 'killed'}"))
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert not (tmp_path / "killed" / "metrics.json").exists()

    # The resumed run restarts from the step-4 checkpoint: it takes exactly 5 more Adam steps.
    calls["n"] = 0

    def counting_step(self, *args, **kwargs):
        calls["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    resumed = train(make_cfg(f"resume={tmp_path / 'killed'}"))
    assert calls["n"] == 5
    for key in ("rel_l2", "steps", "status"):
        assert resumed[key] == full[key]


def test_nan_loss_stops_with_diverged_status(make_cfg, tmp_path, monkeypatch):
    from pinn_exp.problems.allen_cahn import AllenCahn

    real_losses, calls = AllenCahn.losses, {"n": 0}

    def nan_after_four(self, model, x):
        calls["n"] += 1
        terms = real_losses(self, model, x)
        if calls["n"] > 4:
            terms["pde"] = terms["pde"] * float("nan")
        return terms

    monkeypatch.setattr(AllenCahn, "losses", nan_after_four)
    metrics = train(make_cfg("checkpoint_every=3"))
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == metrics["status"] == "diverged"
    assert saved["steps"] == 4 and "step 4" in saved["message"]
    # The last good checkpoint (step 3) is kept, finite.
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_time_budget_stops_evaluates_and_resumes(make_cfg, tmp_path, monkeypatch):
    """A wall-time budget ends the run at the step that spends it, evaluated and checkpointed
    there; resuming with a larger budget continues. The clock is faked: one second per read."""
    import pinn_exp.run as run_module

    clock = {"t": 0.0}

    def fake_clock():
        clock["t"] += 0.5
        return clock["t"]

    monkeypatch.setattr(run_module.time, "perf_counter", fake_clock)
    out = tmp_path / "budget"
    metrics = train(
        make_cfg("steps=50", "eval_every=100", "time_budget_s=3.5", f"output_dir={out}")
    )
    assert metrics["stopped_by"] == "time_budget" and metrics["status"] == "completed"
    assert 1 <= metrics["steps"] < 50 and metrics["wall_time_s"] >= 3.5
    assert metrics["rel_l2"] > 0 and (out / "prediction.h5").is_file()
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == metrics["steps"]

    more = train(make_cfg(f"resume={out}", "time_budget_s=7.5"), ["time_budget_s=7.5"])
    assert more["stopped_by"] == "time_budget" and metrics["steps"] < more["steps"] < 50
    assert more["wall_time_s"] >= 7.5

    plain = train(make_cfg("steps=5", f"output_dir={tmp_path / 'plain'}"))
    assert plain["stopped_by"] == "steps" and plain["steps"] == 5


# A CLI run of a few steps on 2 shared cores.
TINY_CLI = (
    "steps=3",
    "eval_every=3",
    "model.width=8",
    "model.depth=2",
    "sampler.n_points=32",
    "progress=false",
)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("steps=-1", "steps"),
        ("balancer=nonsense", "balancer"),
        ("device=tpu", "device"),
        ("noise.level=-0.1", "noise.level"),
        ("time_budget_s=0", "time_budget_s"),
        ("pde.d=-1", "pde.d"),
    ],
)
def test_cli_rejects_bad_input_with_key_named(tmp_path, override, needle):
    result = run_cli(override, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    assert needle in result.stderr


def test_cli_runs_a_few_steps(tmp_path, data_dir):
    result = run_cli(
        *TINY_CLI,
        f"data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'cli'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["status"] == "completed"


def test_crashing_job_does_not_stop_a_multirun(tmp_path, data_dir):
    """A job that fails at run time records status 'failed'; the next job still runs."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            f"data_dir={blocker / 'sub'},{data_dir}",
            *TINY_CLI,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.job.config.override_dirname.exclude_keys=[seed]",
        ],
        cwd=tmp_path,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    statuses = sorted(
        json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").rglob("metrics.json")
    )
    assert statuses == ["completed", "failed"]
