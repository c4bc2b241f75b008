"""`python -m search <command>`: the subcommand table and the thin core commands.

A user error prints one line (`error: ...`) and exits 2; Ctrl-C exits 130 after the
running trial has been closed in the store.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from search.errors import UserError, must
from search.goal import Goal
from search.options import add_study_args, load_cfg, open_study, positive_int, with_name

if TYPE_CHECKING:
    import optuna

    from search.config import StudyConfig
    from search.progress import Progress

__all__ = ["COMMANDS", "main"]

# name -> module exposing HELP, add_arguments(parser), main(args) -> int
COMMANDS: dict[str, str] = {
    "run": "search.cli",
    "best": "search.cli",
    "studies": "search.cli",
    "report": "dashboards.report",
    "dashboard": "dashboards.serve",
    "validate": "search.validation.validate",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------------------
# run


def _run_arguments(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--trials", type=positive_int,
                   help="finished trials the study should hold in total (re-running resumes)")
    p.add_argument("--epochs", type=positive_int, help="epochs per trial (overrides the file)")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="train on the first N training examples (quick CPU runs)")
    p.add_argument("--data-dir", help="where the data set lies (else $SEARCH_DATA_DIR, cache)")
    p.add_argument("--seed", type=int, help="sampler and training seed (overrides the file)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes sharing the study (spread over the GPUs); together "
                   "they finish --trials, not N times it")
    p.add_argument("--workers-per-gpu", type=positive_int, default=1, metavar="K",
                   help="with --jobs on a CUDA machine: up to K workers share one GPU")
    p.add_argument("--array", type=positive_int, metavar="K",
                   help="train K trials at once as one fused model (default: as many as fit "
                   "on a GPU; one at a time on a CPU)")


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from search import runner, storage
    from search.engine import array, claim, sequential, workers

    cfg = with_name(load_cfg(args.study), args.study_name).with_overrides(
        epochs=args.epochs, train_subset=args.train_subset, data_dir=args.data_dir,
        device=args.device, seed=args.seed,
    )
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    url = storage.resolve_url(args.storage, cfg.storage)
    storage.check(url)  # a malformed URL or missing directory first: nothing read yet
    _check_before_store(cfg)
    runner.prepare(cfg)  # missing data fails here, before a store is created or opened
    target = args.trials or cfg.trials
    if cfg.contest is not None and cfg.contest.budget_problem(target):
        raise must("--trials", cfg.contest.budget_problem(target), target)
    if args.array is not None:
        array.array_size(cfg, args.array)  # a study that cannot be fused fails here, once
    progress = _progress(cfg)
    code = 0
    if args.jobs > 1:  # worker processes; each opens the storage itself
        try:
            study, code = workers.run_many(cfg, url, target, args.jobs, args.workers_per_gpu,
                                           progress, array=args.array)
        finally:
            progress.close()
        return _summary(args, cfg, study, url, code)
    store = claim.open_for(cfg.workers, url)  # heartbeats, dead workers' trials retried
    try:
        k = array.array_size(cfg, args.array)  # None: the sequential engine
        if k is None:
            study = sequential.run(cfg, store, target, progress)
        else:
            study = array.run(cfg, store, target, progress, k=k)
    finally:
        progress.close()
    return _summary(args, cfg, study, url, code)


def _check_before_store(cfg: StudyConfig) -> None:
    """The objective imports with the right signature and the device exists: else one line,
    before a study is created (a typo must not leave a study behind that refuses the fix)."""
    from objectives.classify import resolve_device
    from search import config

    config.load_objective(cfg.objective)
    resolve_device(cfg.train.device)


def _progress(cfg: StudyConfig) -> Progress:
    """`run`'s display: a contest's "best" is its standing at the study's length."""
    from search.progress import Progress

    return Progress(leader=_leading if cfg.contest is not None else None)


def _leading(study: optuna.Study) -> str | None:
    """The live line's "best" for a contest: its standing at the study's length (None, where
    the store did not answer this once: the line keeps the last one)."""
    from search import storage
    from search.answer import headline
    from search.contest.standing import standing

    try:
        st = standing(study)
    except Exception as e:
        if storage.is_transient(e):
            return None
        raise
    return headline(st) if st is not None else None


def _summary(args: argparse.Namespace, cfg: StudyConfig, study: optuna.Study, url: str,
             code: int) -> int:
    from optuna.trial import TrialState

    from search import answer, storage
    from search.contest.standing import standing
    from search.engine.claim import count

    summary = f"study {cfg.name!r}: {count(study)} finished trials in {storage.redact(url)}"
    reach = storage.Reach(study=args.study, name=cfg.name, study_name=args.study_name,
                          storage=args.storage)
    st = standing(study)
    if st is not None:  # where the contest stands, at the study's length
        summary += f"; {answer.headline(st)}: `{storage.hint_command('best', reach)}`"
    elif count(study, (TrialState.COMPLETE,)):
        trial, _ = answer.recommended_trial(study)
        summary += (f"; {answer.headline(None, trial, cfg.goal)}: "
                    f"`{storage.hint_command('best', reach)}`")
    print(summary)
    return code


# ---------------------------------------------------------------------------------------
# best


def _best_arguments(p: argparse.ArgumentParser) -> None:
    from search.answer import FORMATS

    add_study_args(p)
    p.add_argument("--epochs", type=positive_int, help="rescale the schedule to N epochs")
    p.add_argument("--steps-per-epoch", type=positive_int, metavar="M",
                   help="rescale to M optimizer steps per epoch (your data and batch size)")
    p.add_argument("--trial", type=int, metavar="N",
                   help="export finished trial N (complete or pruned) instead of the winner")
    p.add_argument("--keep-lr", action="store_true",
                   help="with --epochs: keep the LR searched, not the LR law's at N epochs")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--grad-accum", type=positive_int, default=1, metavar="K",
                   help="gradient accumulation: K batches per optimizer step; "
                        "--steps-per-epoch then counts batches")
    p.epilog = ("The recommendation is chosen on the validation split (a contest's race); "
                "where `validate` has run, its test-split results are shown beside it. With "
                "--epochs N a contest searched at several `horizons` moves the LR by its LR "
                "law (--keep-lr: not).")


def _best(args: argparse.Namespace) -> int:
    from search import answer

    _, study = open_study(args)
    steps = args.steps_per_epoch
    if steps and args.grad_accum > 1:  # optimizer steps an epoch, counted as the Trainer does
        steps = -(-steps // args.grad_accum)
    try:
        rec = answer.recommend(study, args.epochs, steps, args.trial, args.keep_lr)
    except answer.NotYet as e:  # a contest with no run of the study's length finished yet
        if args.format != "text":  # code (or its JSON) for a shorter run would be wrong: 2
            raise
        print(answer.pending_text(e.standing))  # a person asking during the run: 0
        return 0
    print(answer.render(rec, args.format, grad_accum=args.grad_accum))
    return 0


# ---------------------------------------------------------------------------------------
# studies


def _studies_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help="database URL (default as for run)")


def _studies(args: argparse.Namespace) -> int:
    import optuna
    from optuna.trial import TrialState

    from search import storage
    from search.validation.companion import is_companion, searched_name

    url = storage.resolve_url(args.storage)
    store = storage.open_existing(url)
    summaries = optuna.get_all_study_summaries(store, include_best_trial=True)
    if not summaries:
        print(f"no studies in {storage.redact(url)}")
        return 0
    print(f"{'study':<24} {'complete':>8} {'pruned':>7} {'failed':>7} {'running':>8}  "
          "recommended (search: its metric on validation; validation: mean on test)")
    for s in summaries:
        sid = store.get_study_id_from_name(s.study_name)
        n = {st: store.get_n_trials(sid, st) for st in TrialState}
        if is_companion(s.study_name):  # not a search: its trials are seeds
            best = _validated(store, searched_name(s.study_name))
        else:
            best = _recommended(store, s)
        print(f"{s.study_name:<24} {n[TrialState.COMPLETE]:>8} {n[TrialState.PRUNED]:>7} "
              f"{n[TrialState.FAIL]:>7} {n[TrialState.RUNNING]:>8}  {best}")
    return 0


def _recommended(store: optuna.storages.BaseStorage, summary: Any) -> str:
    """A searched study's line: what `best` recommends (a contest: its standing at the study's
    length, unfinished or not; a plain search: its best trial)."""
    import optuna

    from search import answer
    from search.contest.standing import standing

    study = optuna.load_study(study_name=summary.study_name, storage=store)
    st = standing(study)
    if st is not None:
        return answer.headline(st)
    if summary.best_trial is None:
        return "-"
    trial, _ = answer.recommended_trial(study)
    return answer.headline(None, trial, Goal.of_study(study))


def _validated(store: optuna.storages.BaseStorage, searched: str) -> str:
    """A validation study's line: the winner's mean test accuracy over its seeds."""
    import optuna

    from search import answer
    from search.validation.companion import validation

    try:
        study = optuna.load_study(study_name=searched, storage=store)
        v = validation(study, recommended=answer.recommended_trial(study)[0].number)
    except (KeyError, UserError):  # the searched study was deleted, or has no complete trial
        v = None
    w = v.winner if v is not None else None
    if v is None or w is None:
        return "validation: no finished run"
    return (f"validation: {v.goal.name('test')} {v.goal.text(w.mean)} mean of {w.n} seeds, "
            f"{w.label}")


HELP = {
    "run": "run (or resume) a study until it holds --trials finished trials",
    "best": "print the best schedule as PyTorch code (text, json or python)",
    "studies": "list the studies in the storage: complete / pruned / failed, best value",
}
_CORE = {"run": (_run_arguments, _run), "best": (_best_arguments, _best),
         "studies": (_studies_arguments, _studies)}


def _command(name: str) -> tuple[str, Any, Any]:
    if name in _CORE:
        return HELP[name], *_CORE[name]
    module = importlib.import_module(COMMANDS[name])
    return module.HELP, module.add_arguments, module.main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m search",
                     description="Hyperparameter search over learning-rate schedules.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            help_text, add_arguments, handler = _command(name)
        except ModuleNotFoundError as e:  # a command whose module is not part of this install
            if e.name != COMMANDS[name]:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(handler=handler)
    return parser


def _quiet_optuna() -> None:
    """Our progress display replaces optuna's per-trial lines (failures included)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_optuna()

    def handle() -> int:
        from search import storage

        storage.reached(storage.Reach(study=getattr(args, "study", None),
                                      study_name=getattr(args, "study_name", None),
                                      storage=getattr(args, "storage", None)))
        try:
            return args.handler(args)
        except BrokenPipeError:  # `best | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            return 0
        except UserError as e:  # hints in it reach what this command reached
            print(f"error: {storage.carried(str(e))}", file=sys.stderr)
            return 2
        except Exception as e:  # a store that refuses writes (full disk, read-only): one line
            if not storage.is_write_fault(e):
                raise
            line = UserError(f"the storage refuses writes ({storage.write_fault(e)}); free disk "
                             "space or make the store writable, then run again")
            print(f"error: {line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:  # the trial loops closed what they interrupted
            from search.progress import interruption

            said = interruption(getattr(e, "trials", ()))  # engine.signals.Interrupted
            if args.command == "run":  # as Optuna's optimize: FAIL, a new trial takes its place
                said = (f": {said}; it does not count toward --trials, and the same command "
                        "run again samples a new trial in its place")
            elif args.command == "validate":  # a fixed plan: the run is trained again
                said = f": validation stopped, {said}; the same command run again trains it again"
            else:
                said = ""
            print(f"interrupted{said}", file=sys.stderr)
            return 130

    # What this command reached (storage.reached, for its hints) stays with this call.
    return contextvars.copy_context().run(handle)
