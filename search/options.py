"""Command-line options shared by every command (`run`, `best`, `validate`, `report`,
`dashboard`) and opening the study they name. Below the CLI: commands import this module,
never `search.cli`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from search.errors import UserError

if TYPE_CHECKING:
    import optuna

    from search.config import StudyConfig

__all__ = ["add_study_args", "load_cfg", "open_study", "positive_int", "with_name"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 but got {value}")
    return value


def add_study_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--study", required=required, metavar="NAME_OR_PATH",
                        help="a study name from studies/ (e.g. lr) or a path to a .toml file")
    parser.add_argument("--storage", metavar="URL",
                        help="database URL (default: $SEARCH_STORAGE, the study file, "
                        "then sqlite:///search.db)")
    parser.add_argument("--study-name", metavar="NAME",
                        help="the study's name in the storage, where it is not the file's own "
                        "(run --study-name starts a separate study from the same file)")


def load_cfg(name: str) -> StudyConfig:
    from search import config

    return config.load_study(name)


def with_name(cfg: StudyConfig, name: str | None) -> StudyConfig:
    """The study file's settings under another study name (`--study-name`)."""
    if name is None:
        return cfg
    import dataclasses

    from search import config

    return dataclasses.replace(cfg, name=config.check_study_name(name, "--study-name"))


def open_study(args: argparse.Namespace) -> tuple[Any, Any]:
    """(StudyConfig or None, the stored optuna.Study) for --study/--storage; must exist.

    A name that is not a study file is looked up in the storage as a study name. Nothing is
    created: a store or study that does not exist is one line (`_missing`). How the study was
    reached is recorded for the hints this command prints (`storage.reached`).
    """
    import optuna

    from search import storage

    try:
        base = load_cfg(args.study)
    except UserError:
        if args.study.endswith(".toml") or "/" in args.study:
            raise
        base = None
    # a bad --study-name is its own one line, never a silent fall-back to the file's study
    cfg = with_name(base, getattr(args, "study_name", None)) if base is not None else None
    own = base.name if base is not None else None  # the study file's own study name
    name = cfg.name if cfg is not None else args.study
    reach = storage.reached(storage.Reach(study=args.study, name=name,
                                          study_name=getattr(args, "study_name", None),
                                          storage=args.storage))
    url = storage.resolve_url(args.storage, cfg.storage if cfg else None)
    store = storage.open_existing(url)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise _missing(args, reach, own, store, url) from None
    return cfg, study


def _missing(args: argparse.Namespace, reach: Any, own: str | None,
             store: optuna.storages.BaseStorage,
             url: str) -> UserError:
    """The one line for a study that is not in the store: where a stored study's name is
    close to the name given (a typo'd --study or --study-name), "did you mean" it with the
    command that reads it, and nothing about running; else how to start it (a study file
    given) or the studies there (a stored name given)."""
    import optuna

    from search import config, storage
    from search.errors import closest
    from search.validation.companion import is_companion

    names = optuna.get_all_study_names(store)
    what = f"no study {reach.name!r} in {storage.redact(url)}"
    near = closest(reach.name, [n for n in names if not is_companion(n)])
    if near is not None:
        meant = storage.reached(storage.toward(reach, near, own, config.study_names()))
        # recorded as this command's reach, so that the CLI's `carried` keeps the hint as built
        read = storage.hint_command(getattr(args, "command", None) or "best", meant)
        return UserError(f"{what}; did you mean {near!r}? `{read}` reads it")
    if own is not None:
        return UserError(f"{what}; run `{storage.hint_command('run', reach)}` first")
    return UserError(f"{what}; studies there: {', '.join(names) or 'none'}")
