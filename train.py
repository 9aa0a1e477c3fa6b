"""Entry point: ``python train.py [group=option ...] [key=value ...]`` (Hydra).

Bad input stops with one line on stderr (the key, the value, what is allowed) and exit code 2,
before anything is created: the command line is composed and checked first
(:func:`pinn_exp.config.check_command_line`), and only then handed to Hydra. What can only fail
once the run is built (a constructor's check, such as ``pde.re=0``) stops the same way, and the
folder Hydra made for the run is removed again.
"""

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pinn_exp import rundir
from pinn_exp.config import CommandLine, ConfigError, PathError, check_command_line, one_line

CONF_DIR = Path(__file__).resolve().parent / "conf"

# What the command-line check saw of the single run's folder (set by `cli`, read by `main`).
_checked = CommandLine()


def _bad_input(err: Exception) -> str | None:
    """The one-line message of a rejected config value (ours, or a constructor's ValueError
    that Hydra wrapped), or None for any other error."""
    if isinstance(err, ConfigError):
        return one_line(err)
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, ValueError):
        return one_line(err.__cause__)
    return None


def _same(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _file_handlers_in(folder: Path) -> list[logging.FileHandler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(folder)
    ]


def _release(folder: Path) -> logging.Formatter | None:
    """Close and detach the root logger's file handlers writing into ``folder``."""
    formatter = None
    for handler in _file_handlers_in(folder):
        formatter = formatter or handler.formatter
        logging.getLogger().removeHandler(handler)
        handler.close()
    return formatter


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here, so that a rejected command line exits before torch loads.
    from pinn_exp.run import train

    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    log_name = f"{hydra_cfg.job.name}.log"
    hydra_files = rundir.hydra_files(hydra_cfg.output_subdir, log_name)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # Made by Hydra for this run just now (not a folder that was there before).
    fresh = rundir.is_fresh(out, hydra_files, log_name) and not (
        _checked.run_dir == out and _checked.existed
    )
    up_to = _checked.created_root if _checked.run_dir == out else None

    resumed_log = None
    resumed = rundir.resume_dir(cfg)
    if resumed is not None and resumed.is_dir() and not _same(resumed, out) and not multirun:
        # A resumed run writes into its own folder and logs to its own train.log; the folder
        # Hydra made for this invocation would stay empty: remove it.
        formatter = next((h.formatter for h in _file_handlers_in(out)), None)
        resumed_log = logging.FileHandler(resumed / log_name, mode="a")
        resumed_log.setFormatter(formatter or logging.Formatter(logging.BASIC_FORMAT))
        logging.getLogger().addHandler(resumed_log)
        if fresh:
            _release(out)
            rundir.remove_folder(out, hydra_files, up_to)
    try:
        metrics = train(cfg, overrides=OmegaConf.to_container(hydra_cfg.overrides.task))
    except Exception as err:
        message = _bad_input(err)
        if message is not None and not (multirun and isinstance(err, PathError)):
            # One line naming the key and what is allowed, exit 2, and no run folder left.
            if fresh and out.is_dir():
                _release(out)
                rundir.remove_folder(out, hydra_files | {rundir.CONFIG_FILE}, up_to)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        if not multirun:
            raise
        # In a sweep one crashing job (or one whose folder cannot be written) must not stop the
        # others: record it and go on.
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
        else:
            traceback.print_exc()
        metrics_file = out / "metrics.json"
        metrics_file.write_text(
            json.dumps({"status": "failed", "message": repr(err)}, indent=2) + "\n"
        )
        return float("nan")
    finally:
        if resumed_log is not None:
            logging.getLogger().removeHandler(resumed_log)
            resumed_log.close()
    return metrics.get("rel_l2", float("nan"))


def _flag_error(message: str) -> NoReturn:
    print(f"error: {message} (python train.py --help lists the flags)", file=sys.stderr)
    sys.exit(2)


def cli(argv: list[str]) -> None:
    """Check the command line (one line and exit 2 when it is rejected), then run Hydra."""
    global _checked
    parser = get_args_parser()
    parser.error = _flag_error  # one line, not argparse's usage block
    args = parser.parse_args(argv)
    # Help, config printing, shell completion and other config sources go to Hydra unchecked.
    plain = not any(
        (
            args.help,
            args.hydra_help,
            args.cfg,
            args.info,
            args.shell_completion,
            args.config_path,
            args.config_name,
            args.config_dir,
            args.experimental_rerun,
        )
    )
    if plain:
        try:
            multirun = args.multirun or "hydra.mode=MULTIRUN" in args.overrides
            _checked = check_command_line(CONF_DIR, args.overrides, multirun=multirun)
        except ConfigError as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            sys.exit(2)
        if _checked.pin:  # Hydra is to make the folder checked here (`main` may remove it)
            sys.argv.append(_checked.pin)
    main()


if __name__ == "__main__":
    cli(sys.argv[1:])
