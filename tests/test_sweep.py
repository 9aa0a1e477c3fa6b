"""Real multiruns (basic, submitit_local and joblib launchers) summarized by scripts/summarize.py,
and the sweep presets and launcher configs composed the way Hydra composes them."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp import summary
from pinn_exp.config import validate

from .conftest import CONF_DIR, read_csv, table_rows

ROOT = CONF_DIR.parent
# A run of a few seconds; one thread per run, idle threads sleep (2 shared cores).
TINY = [
    "steps=3",
    "model.width=8",
    "model.depth=2",
    "sampler.n_points=32",
    "eval_every=3",
    "log_every=1",
    "progress=false",
]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def multirun(sweep_dir: Path, data_dir: Path, *overrides: str, timeout: float = 240) -> None:
    cmd = [sys.executable, "train.py", "-m", *overrides, *TINY]
    cmd += [f"data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent for p in sweep_dir.glob("cfg_*/seed=*/.hydra"))


def overrides_of(run: Path) -> dict[str, str]:
    lines = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    return dict(line.split("=", 1) for line in lines)


# --- real sweeps -------------------------------------------------------------------------------
def test_multirun_then_summarize(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    multirun(sweep, data_dir, "balancer=none,ema", "seed=0,1")
    runs = run_dirs(sweep)
    assert len(runs) == 4

    proc = subprocess.run(
        [sys.executable, "scripts/summarize.py", str(sweep)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == (sweep / "summary.md").read_text() + "\n"

    # expected numbers, recomputed from the runs' own files
    by_balancer: dict[str, list[dict]] = {}
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        by_balancer.setdefault(overrides_of(run)["balancer"], []).append(metrics)
    rows = read_csv(sweep / "summary.csv")
    assert sorted(r["balancer"] for r in rows) == ["ema", "none"]
    for row in rows:
        metrics = by_balancer[row["balancer"]]
        errors = [m["rel_l2"] for m in metrics]
        assert (row["n"], row["diverged"], row["failed"], row["seeds"]) == ("2", "0", "0", "0 1")
        assert float(row["rel_l2_mean"]) == pytest.approx(statistics.fmean(errors), rel=1e-12)
        assert float(row["rel_l2_std"]) == pytest.approx(statistics.stdev(errors), rel=1e-12)
        assert float(row["step_time_ms_median"]) == pytest.approx(
            statistics.median(m["step_time_ms"] for m in metrics)
        )
        assert row["folder"].startswith(f"cfg_balancer={row['balancer']},")
    md = table_rows(proc.stdout)
    assert len(md) == 2 and {r[0] for r in md} == {"ema", "none"}
    assert all(r[2:5] == ["2", "0", "0"] for r in md)
    for name in ("error_vs_step.png", "final_error.png"):
        assert (sweep / name).stat().st_size > 1000

    # a diverged run and a crashed one (no metrics.json) are counted and do not break anything
    ema = [r for r in runs if overrides_of(r)["balancer"] == "ema"]
    none = [r for r in runs if overrides_of(r)["balancer"] == "none"]
    metrics = json.loads((ema[0] / "metrics.json").read_text())
    metrics["status"] = "diverged"
    (ema[0] / "metrics.json").write_text(json.dumps(metrics))
    (none[1] / "metrics.json").unlink()
    text = summary.summarize(sweep)
    rows = {r["balancer"]: r for r in read_csv(sweep / "summary.csv")}
    assert (rows["ema"]["n"], rows["ema"]["diverged"], rows["ema"]["failed"]) == ("1", "1", "0")
    assert (rows["none"]["n"], rows["none"]["diverged"], rows["none"]["failed"]) == ("1", "0", "1")
    kept = json.loads((ema[1] / "metrics.json").read_text())["rel_l2"]
    assert float(rows["ema"]["rel_l2_mean"]) == pytest.approx(kept, rel=1e-12)
    assert {r[0]: r[2:5] for r in table_rows(text)} == {
        "ema": ["1", "1", "0"],
        "none": ["1", "0", "1"],
    }


def _one_config_two_seeds(sweep: Path) -> None:
    runs = run_dirs(sweep)
    assert len(runs) == 2
    assert all((r / "metrics.json").is_file() for r in runs)
    summary.summarize(sweep, plots=False)
    (row,) = read_csv(sweep / "summary.csv")
    assert (row["n"], row["diverged"], row["failed"], row["seeds"]) == ("2", "0", "0", "0 1")


def test_submitit_local_launcher(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    multirun(
        sweep,
        data_dir,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=3",
        "seed=0,1",
        timeout=200,
    )
    _one_config_two_seeds(sweep)
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # ran through submitit


@pytest.mark.slow
def test_local_parallel_launcher(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    multirun(sweep, data_dir, "hydra/launcher=local_parallel", "seed=0,1", timeout=200)
    _one_config_two_seeds(sweep)


# --- presets and launcher configs --------------------------------------------------------------
def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg, *arguments: str) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper makes from ``hydra.sweeper.params`` and the
    command line's ``arguments`` (as in ``BasicSweeper.sweep``)."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + list(arguments)
    overrides = OverridesParser.create().parse_overrides(params)
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return batch


STUDIES = {
    "ablation_allen_cahn_cpu": ("allen_cahn", ["balancer", "surgery", "sampler"], 24),
    "ablation_allen_cahn_gpu": ("allen_cahn", ["balancer", "surgery", "sampler"], 24),
    "ablation_ns_inverse_cpu": (
        "navier_stokes_inverse",
        ["balancer", "surgery", "sampler", "anchor"],
        48,
    ),
    "ablation_ns_inverse_gpu": (
        "navier_stokes_inverse",
        ["balancer", "surgery", "sampler", "anchor"],
        48,
    ),
    "ablation_allen_cahn_qn_cpu": ("allen_cahn", ["optim", "balancer", "surgery", "sampler"], 48),
    "ablation_allen_cahn_qn_gpu": ("allen_cahn", ["optim", "balancer", "surgery", "sampler"], 48),
    "ablation_ns_inverse_qn_gpu": (
        "navier_stokes_inverse",
        ["balancer", "surgery", "sampler", "anchor"],
        48,
    ),
    "ablation_ns_inverse_qn_cpu": (
        "navier_stokes_inverse",
        ["balancer", "surgery", "sampler", "anchor"],
        48,
    ),
}
CHOICES = {
    "optim": ["adam", "ssbroyden"],
    "balancer": ["none", "ema"],
    "surgery": ["none", "pcgrad"],
    "sampler": ["uniform", "rar"],
    "anchor": ["none", "softplus"],
}


@pytest.mark.parametrize("preset", list(STUDIES))
def test_presets_compose_to_the_study_grid(preset):
    pde, groups, n_jobs = STUDIES[preset]
    if not (CONF_DIR / "pde" / f"{pde}.yaml").is_file():
        pytest.skip(f"conf/pde/{pde}.yaml does not exist yet")
    cfg = compose_hydra(f"experiment={preset}")
    params = cfg.hydra.sweeper.params
    assert list(params) == [*groups, "seed"]
    assert params.seed == "0,1,2"
    jobs = sweep_jobs(cfg)
    assert len(jobs) == n_jobs
    expected = itertools.product(*(CHOICES[g] for g in groups), [0, 1, 2])
    assert {tuple(job) for job in jobs} == {
        (*(f"{g}={c}" for g, c in zip(groups, combo)), f"seed={combo[-1]}") for combo in expected
    }
    assert preset in cfg.hydra.sweep.dir
    assert cfg.device == ("cuda" if preset.endswith("_gpu") else "cpu")
    if pde == "navier_stokes_inverse":
        assert "NavierStokes" in cfg.pde._target_ and cfg.noise.level == 0.1
        assert "Gaussian" in cfg.noise._target_
    # the grid's first and last jobs compose and pass the run-level checks
    for job in (jobs[0], jobs[-1]):
        validate(compose_hydra(f"experiment={preset}", *job))


def test_quasi_newton_studies_share_a_wall_time_budget():
    """Every job of the quasi-Newton studies stops on the same budget, not on a step count; the
    Navier-Stokes one is the inverse preset in everything else."""
    ac = compose_hydra("experiment=ablation_allen_cahn_qn_cpu")
    assert ac.time_budget_s == 150 and ac.steps >= 100_000
    adam = compose_hydra("experiment=ablation_allen_cahn_qn_cpu", "optim=adam")
    qn = compose_hydra("experiment=ablation_allen_cahn_qn_cpu", "optim=ssbroyden")
    assert adam.optim.quasi_newton is None and adam.optim.adam_steps is None
    assert (
        qn.optim.adam_steps == 1000 and "SSBroyden" in qn.optim.quasi_newton["update"]["_target_"]
    )
    for key in ("pde", "model", "sampler", "time_budget_s", "steps", "eval_every"):
        assert adam[key] == qn[key], key

    ns = compose_hydra("experiment=ablation_ns_inverse_qn_cpu", "balancer=none", "surgery=none")
    preset = compose_hydra("experiment=ns_inverse_qn_cpu")
    assert ns.time_budget_s == 180 and preset.time_budget_s is None
    # a shorter warm-up, so that SSBroyden gets most of the budget; otherwise the preset
    assert (ns.optim.adam_steps, preset.optim.adam_steps) == (500, 1000)
    ns.optim.adam_steps = preset.optim.adam_steps
    for key in ("pde", "model", "sampler", "noise", "anchor", "optim", "balancer", "surgery"):
        assert ns[key] == preset[key], key
    # the Adam rows: Adam for the whole budget (the warm-up length is unused without a QN phase)
    adam = compose_hydra("experiment=ablation_ns_inverse_qn_cpu", "optim=adam")
    assert adam.optim.quasi_newton is None and adam.time_budget_s == ns.time_budget_s
    phases = instantiate(adam.optim).phases([torch.nn.Parameter(torch.zeros(2))], [], adam.steps)
    assert [(start, type(phase).__name__) for start, phase in phases] == [(0, "AdamPhase")]


def test_quasi_newton_peers_match_the_ablation_rows():
    cfg = compose_hydra("experiment=peers_allen_cahn_qn_cpu")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 15
    assert {job[0] for job in jobs} == {f"peer={p}" for p in [*PEERS, "soap"]}
    row = compose_hydra("experiment=ablation_allen_cahn_qn_cpu", "optim=ssbroyden", "sampler=rar")
    for peer, (balancer, surgery) in PEERS.items():
        run = compose_hydra("experiment=peers_allen_cahn_qn_cpu", f"peer={peer}")
        assert run.balancer._target_.endswith(balancer)
        assert run.surgery._target_.endswith(surgery)
        for key in ("time_budget_s", "steps", "eval_every", "pde", "model", "sampler", "optim"):
            assert run[key] == row[key], key
    soap = compose_hydra("experiment=peers_allen_cahn_qn_cpu", "peer=soap")
    assert soap.optim.method == "soap" and soap.optim.quasi_newton is None
    assert soap.balancer._target_.endswith("EMABalancer")
    assert soap.surgery._target_.endswith("NoSurgery")
    assert (soap.time_budget_s, soap.sampler) == (row.time_budget_s, row.sampler)
    validate(soap)


def test_navier_stokes_peers_match_the_ablation_rows():
    cfg = compose_hydra("experiment=peers_ns_inverse_qn_cpu")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 15
    assert {job[0] for job in jobs} == {f"peer={p}" for p in [*PEERS, "soap"]}
    row = compose_hydra("experiment=ablation_ns_inverse_qn_cpu", "sampler=rar", "anchor=softplus")
    keys = ("time_budget_s", "steps", "eval_every", "pde", "model", "sampler", "noise", "anchor")
    for peer, (balancer, surgery) in PEERS.items():
        run = compose_hydra("experiment=peers_ns_inverse_qn_cpu", f"peer={peer}")
        assert run.balancer._target_.endswith(balancer)
        assert run.surgery._target_.endswith(surgery)
        for key in (*keys, "optim"):
            assert run[key] == row[key], key
    soap = compose_hydra("experiment=peers_ns_inverse_qn_cpu", "peer=soap")
    assert soap.optim.method == "soap" and soap.optim.quasi_newton is None
    for key in keys:
        assert soap[key] == row[key], key
    validate(soap)


_STUDY_SCRIPT = ROOT / "scripts" / "study.py"
_spec = importlib.util.spec_from_file_location("study_script", _STUDY_SCRIPT)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def study_jobs(name: str) -> dict[str, list[tuple[str, ...]]]:
    """Each part of a study: the jobs its multirun makes, as (override, ...) tuples."""
    jobs = {}
    for (part, _), cmd in zip(study.STUDIES[name], study.commands(name, Path("out"))):
        assert cmd[1:3] == ["train.py", "-m"]
        args = [a for a in cmd[3:] if not a.startswith("hydra.")]
        assert f"hydra.sweep.dir={Path('out').resolve() / part}" in cmd
        cfg = compose_hydra(*(a for a in args if "," not in a))
        jobs[part] = [tuple(job) for job in sweep_jobs(cfg, *args)]
    return jobs


def test_navier_stokes_study_is_the_issue_grid_in_one_command():
    """Module grid under SSBroyden (48), plain and full under Adam (3 + 3), peers (15)."""
    jobs = study_jobs("ns_inverse_qn_cpu")
    assert {part: len(j) for part, j in jobs.items()} == {
        "ablation": 48,
        "adam_plain": 3,
        "adam_full": 3,
        "peers": 15,
    }
    plain = ("balancer=none", "surgery=none", "sampler=uniform", "anchor=none")
    full = ("balancer=ema", "surgery=pcgrad", "sampler=rar", "anchor=softplus")
    for part, row, optim in [("adam_plain", plain, "adam"), ("adam_full", full, "adam")]:
        for job in jobs[part]:
            assert set(row) | {f"optim={optim}"} <= set(job), job
    assert all("optim=ssbroyden" in job for job in jobs["ablation"])
    # the Adam rows and the full row are the same runs but for the optimizer
    for job in jobs["adam_full"]:
        twin = tuple(o.replace("optim=adam", "optim=ssbroyden") for o in job)
        assert sorted(twin) in [sorted(j) for j in jobs["ablation"]]
    for job in (*jobs["adam_plain"], *jobs["peers"][:1]):
        validate(compose_hydra(*job))
    assert {part: len(j) for part, j in study_jobs("allen_cahn_qn_cpu").items()} == {
        "ablation": 48,
        "peers": 15,
    }
    assert len(sum(study_jobs("ns_inverse_qn_gpu").values(), [])) == 69
    assert len(sum(study_jobs("allen_cahn_qn_gpu").values(), [])) == 63


@pytest.mark.parametrize(
    "problem, row",
    [
        ("allen_cahn", ["optim=ssbroyden", "sampler=rar"]),
        ("ns_inverse", ["sampler=rar", "anchor=softplus"]),
    ],
)
def test_gpu_peers_match_the_gpu_ablation_rows(problem, row):
    ablation = compose_hydra(f"experiment=ablation_{problem}_qn_gpu", *row)
    keys = ("device", "time_budget_s", "steps", "eval_every", "pde", "model", "sampler")
    for peer in [*PEERS, "soap"]:
        run = compose_hydra(f"experiment=peers_{problem}_qn_gpu", f"peer={peer}")
        assert len(sweep_jobs(run)) == 15
        for key in keys:
            assert run[key] == ablation[key], (peer, key)
        if peer != "soap":
            assert run.optim == ablation.optim
    assert ablation.device == "cuda"


def test_unknown_study_is_refused(capsys):
    assert study.main(["ns_inverse", "out"]) == 2
    err = capsys.readouterr().err
    assert "study='ns_inverse'" in err and "ns_inverse_qn_cpu" in err


def test_a_study_runs_its_parts_into_one_summarised_folder(tmp_path, data_dir, monkeypatch):
    """A real two-part study: each part's runs land under its own folder, one summary reads all."""
    monkeypatch.setitem(
        study.STUDIES, "tiny", [("grid", ["balancer=none,ema"]), ("adam", ["optim=adam"])]
    )
    monkeypatch.setattr(os, "environ", ENV)
    out = tmp_path / "study"
    assert study.main(["tiny", str(out), *TINY, f"data_dir={data_dir}"]) == 0
    runs = sorted(p.parent.relative_to(out) for p in out.glob("*/cfg_*/seed=0/metrics.json"))
    assert [r.parts[0] for r in runs] == ["adam", "grid", "grid"]
    summary.summarize(out, plots=False)
    rows = read_csv(out / "summary.csv")
    assert sorted((r["balancer"], r["optim"], r["n"]) for r in rows) == [
        ("", "adam", "1"),
        ("ema", "", "1"),
        ("none", "", "1"),
    ]


def test_cpu_preset_size():
    """The 2-core preset is the documented size (2000 steps, width 64, 2000 points); the GPU one
    is the full size."""
    cpu = compose_hydra("experiment=ablation_allen_cahn_cpu", "sampler=rar")
    assert (cpu.steps, cpu.model.width, cpu.model.depth, cpu.sampler.n_points) == (
        2000,
        64,
        4,
        2000,
    )
    assert cpu.sampler._target_.endswith("RARSampler") and cpu.sampler.interval == 250
    gpu = compose_hydra("experiment=ablation_allen_cahn_gpu")
    assert (gpu.steps, gpu.model.width) == (20000, 128)


def test_command_line_overrides_narrow_a_preset_sweep():
    # `python train.py -m experiment=ablation_allen_cahn_cpu seed=0 sampler=rar`: 4 runs
    cfg = compose_hydra("experiment=ablation_allen_cahn_cpu")
    jobs = sweep_jobs(cfg, "seed=0", "sampler=rar")
    assert len(jobs) == 4 and all("seed=0" in j and "sampler=rar" in j for j in jobs)


def test_local_parallel_launcher_config():
    launcher = compose_hydra("hydra/launcher=local_parallel").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert (launcher.n_jobs, launcher.backend, launcher.prefer) == (2, "loky", "processes")
    assert (
        compose_hydra(
            "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=8"
        ).hydra.launcher.n_jobs
        == 8
    )


def test_slurm_launcher_makes_an_sbatch_script(tmp_path, monkeypatch):
    """The slurm preset instantiates and submitit turns it into a valid sbatch file (no cluster
    here: a stub srun on PATH satisfies submitit's check; nothing is submitted)."""
    import submitit
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose_hydra(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.cpus_per_task=6",
        f"hydra.sweep.dir={tmp_path}",
    )
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("submitit_launcher.SlurmLauncher")
    for key in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes"):
        assert key in launcher_cfg
    assert launcher_cfg.tasks_per_node == 1
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(launcher_cfg)

    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    # the same parameter mapping as BaseSubmititLauncher.launch
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {
        (k if k in base else f"slurm_{k}"): v
        for k, v in launcher.params.items()
        if k not in ("submitit_folder", "max_num_timeout")
    }
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(**params)
    text = executor._executor._make_submission_file_text("python -c pass", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "#SBATCH --time=240",
        "export OMP_NUM_THREADS=6",
    ):
        assert line in text


PEERS = {
    "lra": ("LRABalancer", "NoSurgery"),
    "relobralo": ("ReLoBRaLoBalancer", "NoSurgery"),
    "upgrad": ("NoBalancer", "UPGrad"),
    "config": ("NoBalancer", "ConFIG"),
}


@pytest.mark.parametrize(
    ("peers", "ablation"),
    [
        ("peers_allen_cahn_cpu", ["experiment=ablation_allen_cahn_cpu", "sampler=rar"]),
        (
            "peers_ns_inverse_cpu",
            ["experiment=ablation_ns_inverse_cpu", "sampler=rar", "anchor=softplus"],
        ),
    ],
)
def test_peer_preset_swaps_one_of_our_modules_for_a_peer(peers, ablation):
    cfg = compose_hydra(f"experiment={peers}")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 12
    assert {job[0] for job in jobs} == {f"peer={p}" for p in PEERS}
    ablation = compose_hydra(*ablation)
    for peer, (balancer, surgery) in PEERS.items():
        run = compose_hydra(f"experiment={peers}", f"peer={peer}")
        assert run.balancer._target_.endswith(balancer)
        assert run.surgery._target_.endswith(surgery)
        assert run.sampler._target_.endswith("RARSampler")
        # Same size as the ablation it is compared with.
        for key in ("steps", "eval_every", "pde", "model", "sampler", "noise", "anchor", "optim"):
            assert run[key] == ablation[key], key
        validate(run)


def test_inverse_presets_match_the_ablation_rows():
    """README quotes the ablation's full-framework row as experiment=ns_inverse_cpu's result."""
    preset = compose_hydra("experiment=ns_inverse_cpu")
    row = compose_hydra(
        "experiment=ablation_ns_inverse_cpu",
        "balancer=ema",
        "surgery=pcgrad",
        "sampler=rar",
        "anchor=softplus",
    )
    for key in ("pde", "model", "balancer", "surgery", "sampler", "noise", "anchor", "optim"):
        assert preset[key] == row[key], key
    for key in ("steps", "seed", "dtype", "eval_every", "checkpoint_every"):
        assert preset[key] == row[key], key
