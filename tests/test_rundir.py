"""The run folder: a resumed run's config and the overrides it allows; removing a folder that
Hydra made for a run that never started."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pinn_exp.config import ConfigError, PathError
from pinn_exp.rundir import (
    CONFIG_FILE,
    hydra_files,
    is_fresh,
    prepare,
    remove_folder,
    resume_config,
)

HYDRA = hydra_files(".hydra", "train.log")


@pytest.fixture
def saved_run(make_cfg, tmp_path) -> Path:
    """A run folder holding only its config.yaml (steps=6), as prepare writes it."""
    _, run_dir, resuming = prepare(make_cfg())
    assert not resuming and (run_dir / CONFIG_FILE).is_file()
    return run_dir


def test_prepare_writes_the_resolved_config(saved_run, data_dir):
    saved = OmegaConf.load(saved_run / CONFIG_FILE)
    assert saved.steps == 6 and saved.output_dir == str(saved_run)
    assert saved.data_dir == str(data_dir)


def test_resume_applies_the_allowed_changes_and_saves_them(make_cfg, saved_run, tmp_path):
    new_data = tmp_path / "new_data"
    overrides = [f"resume={saved_run}", "steps=9", "progress=true", f"data_dir={new_data}"]
    cfg, run_dir, resuming = prepare(make_cfg(*overrides), overrides)
    assert resuming and run_dir == saved_run
    assert (cfg.steps, cfg.progress, cfg.data_dir) == (9, True, str(new_data))
    assert cfg.model.width == 16  # everything else is the saved run's
    assert new_data.is_dir()  # made writable before the run builds anything
    saved = OmegaConf.load(saved_run / CONFIG_FILE)
    assert (saved.steps, saved.data_dir) == (9, str(new_data))
    assert not list(saved_run.glob(".*.tmp"))  # written atomically, nothing left over


def test_resume_takes_hydra_keys_and_an_unchanged_value(make_cfg, saved_run):
    overrides = [
        f"resume={saved_run}",
        "steps=6",
        "hydra.run.dir=/elsewhere",
        "hydra/launcher=basic",
    ]
    cfg, _, changes = resume_config(make_cfg(f"resume={saved_run}"), overrides)
    assert cfg.steps == 6 and changes == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.width=4", "+extra=1"], "model.width=4, +extra=1 cannot change"),
        (["model=mlp"], "model=mlp cannot change"),
        (["steps=5"], "steps=5 is not allowed when resuming"),
        (["steps=-1"], "steps=-1 is not allowed: a positive integer"),
    ],
)
def test_resume_refuses_other_changes(make_cfg, saved_run, overrides, message):
    cfg = make_cfg(f"resume={saved_run}", *(o for o in overrides if o.startswith("steps")))
    before = (saved_run / CONFIG_FILE).read_text()
    with pytest.raises(ConfigError, match="allowed") as err:
        prepare(cfg, [f"resume={saved_run}", *overrides])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert (saved_run / CONFIG_FILE).read_text() == before


def test_resume_of_a_folder_without_config(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="resume=.* does not exist"):
        prepare(make_cfg(f"resume={tmp_path / 'nothing'}"))


def test_unwritable_data_dir_is_refused_before_anything_is_written(make_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PathError, match="data_dir=.*a writable folder is required"):
        prepare(make_cfg(f"data_dir={blocker / 'sub'}"))
    assert not (tmp_path / "run").exists()


# --- a Hydra folder of a run that never started -------------------------------------------------
def _hydra_folder(path: Path, log: str = "") -> Path:
    (path / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (path / ".hydra" / name).write_text("{}\n")
    (path / "train.log").write_text(log)
    return path


def test_fresh_hydra_folder_is_removed_with_the_parents_it_made(tmp_path):
    run = _hydra_folder(tmp_path / "outputs" / "runs" / "day" / "time")
    assert is_fresh(run, HYDRA, "train.log")
    (run / CONFIG_FILE).write_text("{}\n")
    assert not is_fresh(run, HYDRA, "train.log")  # prepare has written since
    assert remove_folder(run, HYDRA | {CONFIG_FILE}, up_to=tmp_path / "outputs" / "runs")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["outputs"]


def test_a_folder_with_anything_else_is_kept(tmp_path):
    run = _hydra_folder(tmp_path / "run", log="an earlier run's line\n")
    assert not is_fresh(run, HYDRA, "train.log")
    (run / "metrics.json").write_text("{}")
    assert not remove_folder(run, HYDRA, up_to=tmp_path)
    assert (run / "metrics.json").is_file()
    (run / "metrics.json").unlink()
    (run / ".hydra" / "extra").mkdir()
    assert not remove_folder(run, HYDRA, up_to=tmp_path)
    assert (run / ".hydra").is_dir()
