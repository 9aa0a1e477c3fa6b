"""Every option of every config group composes and instantiates; bad values name the key."""

from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from pinn_exp.config import ConfigError, PathError, check_command_line, writable_folder
from pinn_exp.run import build

from .conftest import CONF_DIR

GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in CONF_DIR.glob("*/*.yaml")
    if path.parent.name not in ("experiment", "hydra", "specialize")
)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=lambda v: str(v))
def test_every_option_composes_and_builds(make_cfg, group, option):
    parts = build(make_cfg(f"{group}={option}"))
    assert all(p.dtype == torch.float64 for p in parts.model.parameters())
    x = parts.sampler.points()
    terms = parts.problem.losses(parts.model, x)
    assert all(torch.isfinite(v) for v in terms.values())


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    assert cfg.steps > 0


NOISY_PRESETS = ["allen_cahn_inverse_cpu", "ns_inverse_cpu", "ablation_ns_inverse_cpu"]


@pytest.mark.parametrize("preset", NOISY_PRESETS)
def test_noisy_presets_take_every_noise_option(make_cfg, preset):
    """A preset must not set arguments of one noise option (noise=none takes none)."""
    for noise, cls in (("none", "NoNoise"), ("gaussian", "GaussianNoise")):
        cfg = make_cfg(f"experiment={preset}", f"noise={noise}", tiny=False)
        assert type(instantiate(cfg.noise)).__name__ == cls


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("steps=-5", "steps"),
        ("steps=0", "steps"),
        ("eval_every=0", "eval_every"),
        ("device=tpu", "device"),
        ("dtype=float16", "dtype"),
        ("model.width=-3", "model.width"),
        ("optim.lr=0", "optim.lr"),
        ("sampler.n_points=0", "sampler.n_points"),
    ],
)
def test_bad_values_name_the_key(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        build(make_cfg(override))


def test_config_tree_has_design_groups():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"pde", "model", "balancer", "surgery", "sampler", "noise", "anchor", "optim"} <= groups
    for path in CONF_DIR.glob("*/*.yaml"):
        first = Path(path).read_text().splitlines()[0]
        assert first.startswith("#"), f"{path} must start with a comment naming its method"


# --- folders and the command line, checked before anything is created ---------------------------
def test_writable_folder(tmp_path):
    made = writable_folder("data_dir", tmp_path / "a" / "b")
    assert made == tmp_path / "a" / "b" and made.is_dir() and not list(made.iterdir())
    assert writable_folder("x", tmp_path / "c" / "d", create=False) == tmp_path / "c" / "d"
    assert not (tmp_path / "c").exists()  # create=False makes nothing
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PathError, match=r"^data_dir='.*a_file' is not allowed: it exists and is"):
        writable_folder("data_dir", blocker)
    with pytest.raises(PathError, match=r"hydra.run.dir=.*a_file is a file; a writable folder"):
        writable_folder("hydra.run.dir", blocker / "run", create=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["noise.level=-0.1"], "noise.level=-0.1 is not allowed: noise=none has no key 'level'"),
        (["model=nonexistent"], "model='nonexistent' is not allowed: one of mlp, siren"),
        (["hydra/launcher=nope"], "hydra/launcher='nope' is not allowed: one of basic,"),
        (["steps=[1"], "'steps=[1' is not allowed: no viable alternative"),
        (["steps=0,1"], "Ambiguous value for argument 'steps=0,1'"),
        (["steps=${nowhere}"], "steps is not allowed: Interpolation key 'nowhere' not found"),
        (["model.width=-3"], "model.width=-3 is not allowed: a positive integer"),
    ],
)
def test_command_line_rejections_are_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        check_command_line(CONF_DIR, [f"data_dir={tmp_path}", *overrides])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert HydraConfig.instance().cfg is None  # left as it was found


def test_command_line_of_a_run(tmp_path):
    run_dir = tmp_path / "out" / "run"
    checked = check_command_line(
        CONF_DIR, [f"data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}", "steps=3"]
    )
    assert (checked.run_dir, checked.existed, checked.created_root) == (
        run_dir,
        False,
        tmp_path / "out",
    )
    assert checked.pin == f"hydra.run.dir={run_dir}"
    assert (tmp_path / "data").is_dir() and not (tmp_path / "out").exists()


def test_command_line_of_a_multirun_checks_each_job(tmp_path):
    common = [f"data_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert check_command_line(CONF_DIR, [*common, "seed=0,1", "model=mlp,siren"], multirun=True)
    with pytest.raises(ConfigError, match="model.width=0 is not allowed"):
        check_command_line(CONF_DIR, [*common, "model.width=8,0"], multirun=True)
    # a preset's own sweep (hydra.sweeper.params: balancer=none,ema) is expanded too; the base
    # config (balancer=ema) takes balancer.alpha, the jobs with balancer=none do not
    preset = [*common, "experiment=ablation_allen_cahn_cpu", "balancer.alpha=0.9"]
    with pytest.raises(ConfigError, match="balancer.alpha=0.9 is not allowed: balancer=none has"):
        check_command_line(CONF_DIR, preset, multirun=True)
    assert not (tmp_path / "sweep").exists()
