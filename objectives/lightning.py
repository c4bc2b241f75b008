"""Any LightningModule as an objective: `function = "objectives.lightning:train"`.

The study file's [objective] table names the user's classes, and each trial trains them with a
real `lightning.Trainer`, so the search sees what the user's own training would see:

    module = "pkg.mod:MyModule"            # a lightning.LightningModule subclass (required)
    module_args = {hidden = 128}           # its constructor's keyword arguments
    datamodule = "pkg.mod:MyData"          # a lightning.LightningDataModule subclass (required)
    datamodule_args = {batch_size = 64}
    trainer_args = {accumulate_grad_batches = 2}   # more lightning.Trainer arguments
    loss_metric = "val_loss"               # the logged metric ReduceLROnPlateau is stepped with

The trial's optimizer and scheduler reach the module exactly as `best --format lightning`
prints them: its `configure_optimizers` is replaced on the trial's instance only (the user's
class is never touched) by one returning Lightning's config dict, and Lightning steps the
scheduler itself. A callback records the LR every optimizer step applied (`note_step`) and
reports every scalar the module logged after each validation, so any logged metric can be the
study's `metric`. `prepare` imports both classes and validates one batch before a study is
stored, so a typo or a metric that is never logged is one line, and nothing is stored.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import signal
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from objectives import Diverged, Schedule, UserError, import_module
from objectives.optimizers import OPTIMIZERS
from objectives.settings import TrainConfig

__all__ = ["OPTIONS", "TRAINS_OPTIMIZERS", "prepare", "train"]

# It builds the optimizer `objective.optimizer` names, schedule-free ones too, so a contest can
# run the schedule-free reference through it (search.contest.contenders reads this).
TRAINS_OPTIMIZERS = True

# The [objective] options it reads: declared as `train.options` (a study file's other keys are
# refused when it is loaded) and the keys `_options` accepts; one list.
OPTIONS = ("module", "module_args", "datamodule", "datamodule_args", "trainer_args",
           "loss_metric")
INSTALL = "pip install 'schedsearch[lightning]'"

# Trainer arguments the search owns, and why: the schedule is resolved for [objective] epochs
# of one validation each, and the report callable lives in this process, on one device.
_BUDGET = "the trial's schedule is resolved for `objective.epochs`; set that instead"
_OWNED = {
    "max_epochs": _BUDGET, "min_epochs": _BUDGET, "max_steps": _BUDGET, "min_steps": _BUDGET,
    "max_time": _BUDGET, "fast_dev_run": _BUDGET,
    "accelerator": "set `objective.device` instead", "devices": "set `objective.device` instead",
    "strategy": "a trial trains in one process on one device",
    "num_nodes": "a trial trains in one process on one device",
    "val_check_interval": "the search reads one validation after every epoch",
    "check_val_every_n_epoch": "the search reads one validation after every epoch",
    "callbacks": "the search adds its own; a study file cannot name callback objects",
}
# Where Lightning's constructor reports land: "GPU available", "Seed set to", at every trial.
_CHATTY_LOGGER = "lightning.pytorch"
_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def _lightning() -> Any:
    try:
        import lightning
    except ImportError:
        raise UserError("objectives.lightning:train needs PyTorch Lightning, which is not "
                        f"installed: {INSTALL}") from None
    return lightning


# -- the study file's options ------------------------------------------------------------


def _options(cfg: TrainConfig) -> dict[str, Any]:
    """The options, type-checked, defaults filled in; unknown keys refused with a guess."""
    opts = dict(cfg.options)
    for key in opts:
        if key not in OPTIONS:
            near = difflib.get_close_matches(key, OPTIONS, n=1, cutoff=0.6)
            guess = f"did you mean `objective.{near[0]}`? " if near else ""
            raise UserError(f"unknown key `objective.{key}` for objectives.lightning:train; "
                            f"{guess}its keys: {', '.join(OPTIONS)}")
    for key, what in (("module", "LightningModule"), ("datamodule", "LightningDataModule")):
        if key not in opts:
            raise UserError(f"`objective.{key}` is required with objectives.lightning:train: "
                            f'"package.module:ClassName" of your {what}')
        if not isinstance(opts[key], str):
            raise UserError(f'`objective.{key}` must be "package.module:ClassName" of your '
                            f"{what} but got {opts[key]!r}")
    for key in ("module_args", "datamodule_args", "trainer_args"):
        opts.setdefault(key, {})
        if not isinstance(opts[key], Mapping):
            raise UserError(f"`objective.{key}` must be a table of keyword arguments, e.g. "
                            f"{{ batch_size = 64 }}, but got {opts[key]!r}")
        opts[key] = dict(opts[key])
    opts.setdefault("loss_metric", "val_loss")
    if not isinstance(opts["loss_metric"], str) or not opts["loss_metric"]:
        raise UserError("`objective.loss_metric` must be the name of a logged metric but got "
                        f"{opts['loss_metric']!r}")
    _check_trainer_args(opts["trainer_args"])
    return opts


def _check_trainer_args(args: Mapping[str, Any]) -> None:
    accepted = [p for p in inspect.signature(_lightning().Trainer.__init__).parameters
                if p != "self"]
    for key in args:
        if key in _OWNED:
            raise UserError(f"`objective.trainer_args` cannot set {key}: {_OWNED[key]}")
        if key not in accepted:
            near = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
            guess = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"`objective.trainer_args` names {key!r}, which lightning.Trainer "
                            f"does not take{guess}")


def _import_class(option: str, spec: str, base: type) -> type:
    """The class `spec` ("package.module:ClassName") names: a subclass of `base`."""
    where = f"`objective.{option}` = {spec!r}"
    module_name, _, name = spec.partition(":")
    if not module_name or not name.isidentifier():
        raise UserError(f'{where} must look like "package.module:ClassName"')
    module = import_module(module_name, f"{where}: module")
    cls = getattr(module, name, None)
    if cls is None:
        raise UserError(f"{where}: module {module_name} has no {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        what = f"a {type(cls).__name__}" if not isinstance(cls, type) else "a class"
        old = isinstance(cls, type) and any(
            c.__module__.startswith("pytorch_lightning") for c in cls.__mro__)
        hint = (" (it subclasses the separate pytorch_lightning package's class; import it "
                "from lightning instead)") if old else ""
        raise UserError(f"{where} is {what} but must be a subclass of lightning."
                        f"{base.__name__}{hint}")
    return cls


def _instantiate(option: str, spec: str, cls: type, kwargs: dict[str, Any],
                 everything: bool = False) -> Any:
    """`cls(**kwargs)`; a TypeError (an argument the class does not take, or one it needs) is
    a UserError, and with `everything` (prepare) any exception is."""
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"{spec}(**objective.{option}_args) fails: {e}") from None
    except Exception as e:
        if not everything:
            raise
        raise UserError(f"{spec}(**objective.{option}_args) fails: "
                        f"{type(e).__name__}: {e}") from None


def _classes(opts: Mapping[str, Any]) -> tuple[type, type]:
    L = _lightning()
    return (_import_class("module", opts["module"], L.LightningModule),
            _import_class("datamodule", opts["datamodule"], L.LightningDataModule))


def _overridden(obj: Any, name: str) -> bool:
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden(name, obj)


def _check_data(dm: Any, cfg: TrainConfig, spec: str) -> None:
    if not _overridden(dm, "train_dataloader"):
        raise UserError(f"the LightningDataModule {spec} has no train_dataloader()")
    holdout = "val" if cfg.holdout == "val" else "test"
    if not _overridden(dm, f"{holdout}_dataloader"):
        why = ("the search scores every epoch on it" if holdout == "val" else
               "`validate` scores the finished search's schedules on the test split")
        raise UserError(f"the LightningDataModule {spec} has no {holdout}_dataloader(); {why}")


def _holdout(dm: Any, cfg: TrainConfig) -> None:
    """With holdout "test" (`validate`), this instance validates on its test_dataloader; the
    user's class is left as it is."""
    if cfg.holdout == "val":
        return
    if cfg.holdout != "test":
        raise ValueError(f"holdout must be 'val' or 'test' but got {cfg.holdout!r}")

    def val_dataloader() -> Any:
        dm.setup("test")  # Lightning sets it up for "fit" only; the test split needs its own
        return dm.test_dataloader()

    dm.val_dataloader = val_dataloader


def _check_module(module: Any, spec: str) -> None:
    if not module.automatic_optimization:
        raise UserError(f"the LightningModule {spec} optimises manually (automatic_optimization"
                        " = False); Lightning then steps no scheduler, and the trial's "
                        "schedule would not be applied")


def _accelerator(cfg: TrainConfig) -> dict[str, Any]:
    """Trainer arguments for `cfg.device`, resolved as the built-in objective resolves it
    ("auto": cuda where available, else cpu); always one device, never a launcher."""
    from objectives.classify import resolve_device

    device = resolve_device(cfg.device)
    return {"accelerator": device.type,
            "devices": [device.index] if device.index is not None else 1}


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's info lines off ("GPU available", "Loading `train_dataloader`": at every
    trial, after the first the same), and torch's FutureWarning about Lightning's own use of
    LeafSpec (Lightning's to fix, shown at every trial); the user's warnings stay."""
    log = logging.getLogger(_CHATTY_LOGGER)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _LEAFSPEC, FutureWarning)
            yield
    finally:
        log.setLevel(level)


def _metrics(trainer: Any) -> dict[str, float]:
    """Every scalar the module logged (trainer.callback_metrics), as plain floats."""
    out = {}
    for name, v in trainer.callback_metrics.items():
        if hasattr(v, "numel") and v.numel() != 1:
            continue
        out[name] = float(v)
    return out


def _never_logged(spec: str, metric: str, logged: Mapping[str, float], what: str) -> UserError:
    names = ", ".join(sorted(logged)) or "nothing"
    return UserError(f"the LightningModule {spec} never logs metric {metric!r} (it logged: "
                     f"{names}); set {what} to one of them, or self.log it in validation_step")


def _run(trainer: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """trainer.fit / validate, with Ctrl-C and SIGTERM kept what they are: KeyboardInterrupt.

    Lightning catches a KeyboardInterrupt raised in its loops, ignores SIGINT from then on and
    calls sys.exit(1); its SIGTERM handler makes the loop raise SIGTERMException, a SystemExit.
    The search turns both signals into a KeyboardInterrupt inside training and must see one
    (the trial ends as interrupted; the process does not die with 1). Every other exception
    (the report's TrialPruned, Diverged, the user's own) leaves Lightning as it was raised.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    seen = next(c for c in trainer.callbacks if isinstance(c, _Interrupts))
    try:
        return fn(*args, **kwargs)
    except SystemExit as e:
        if seen.interrupt is not None:
            raise seen.interrupt from None
        if isinstance(e, SIGTERMException):
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and sigint is not None and signal.getsignal(signal.SIGINT) != sigint:
            signal.signal(signal.SIGINT, sigint)


class _Interrupts:
    """Marker base of the callbacks that remember a KeyboardInterrupt (see _run)."""

    interrupt: KeyboardInterrupt | None = None


def _callbacks() -> tuple[type, type]:
    """The callback classes, made once lightning is known to be importable."""
    global _CALLBACKS
    if _CALLBACKS is not None:
        return _CALLBACKS
    callback: Any = _lightning().Callback  # a framework class: Any, as a base

    class Watch(callback, _Interrupts):
        """Remembers the KeyboardInterrupt Lightning turns into sys.exit(1)."""

        def __init__(self) -> None:
            self.interrupt = None

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if isinstance(exception, KeyboardInterrupt):
                self.interrupt = exception

    class Trial(Watch):
        """The search's side of a trial: applied LRs, divergence, schedule-free modes, reports.

        `built` is set by the replaced configure_optimizers. Hooks: on_before_backward sees
        every batch's loss (a non-finite one stops the run before it is applied);
        on_before_optimizer_step runs once per optimizer step (not per accumulated batch),
        before Lightning steps the scheduler, so the LR it reads is the one the step applies.
        The report waits for on_train_epoch_end, which Lightning calls after the epoch's
        validation: there trainer.callback_metrics holds this epoch's validation metrics (the
        module's on_validation_epoch_end logs included) and this epoch's training means (at
        on_validation_end they are still the previous epoch's); only what the module logs in
        its own on_train_epoch_end comes after. Plateau schedulers step after it.
        """

        def __init__(self, cfg: TrainConfig, report: Callable[..., Any], spec: str,
                     loss_metric: str) -> None:
            super().__init__()
            self.cfg, self.report, self.spec, self.loss_metric = cfg, report, spec, loss_metric
            self.free = OPTIMIZERS[cfg.optimizer].schedule_free
            self.built: Any = None
            self.evaluations = 0
            self.validated = False  # this epoch's validation ran (not the sanity check)
            self.first_lr = math.nan
            self.last: float | None = None

        def _mode(self, trainer: Any, mode: str) -> None:
            if self.free and trainer.optimizers:
                getattr(trainer.optimizers[0], mode)()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.first_lr = math.nan
            self._mode(trainer, "train")

        def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
            value = float(loss.detach())  # one sync per batch: divergence stops at once
            if not math.isfinite(value):
                raise Diverged(trainer.current_epoch, trainer.global_step, value)

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            if math.isnan(self.first_lr):
                self.first_lr = float(optimizer.param_groups[0]["lr"])
            self.built.note_step()

        def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._mode(trainer, "eval")

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._mode(trainer, "train")

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Any) -> None:
            self._mode(trainer, "eval")  # schedule-free: save the averaged weights

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            self.validated = self.validated or not trainer.sanity_checking

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not self.validated:
                return
            self.validated = False
            metrics = _metrics(trainer)
            if self.cfg.metric not in metrics:
                raise _never_logged(self.spec, self.cfg.metric, metrics, "`objective.metric`")
            if self.built.interval == "plateau" and self.loss_metric not in metrics:
                raise _never_logged(self.spec, self.loss_metric, metrics,
                                    "`objective.loss_metric` (what ReduceLROnPlateau reads)")
            epoch, self.evaluations = self.evaluations, self.evaluations + 1
            self.report(epoch, metrics, lr=self.first_lr)
            self.last = metrics[self.cfg.metric]

    _CALLBACKS = (Watch, Trial)
    return _CALLBACKS


_CALLBACKS: tuple[type, type] | None = None


# -- the objective -------------------------------------------------------------------------


def prepare(cfg: TrainConfig) -> None:
    """Before a study is stored: the options, both classes, and one validation batch.

    Every mistake is one UserError line: an unknown option, a class that cannot be imported
    or is not a Lightning one, constructor arguments the class rejects, a validation that
    fails, a `metric` (or an explicitly set `loss_metric`) the module never logs. Nothing is
    written (no logger, no checkpoints).
    """
    opts = _options(cfg)
    module_cls, data_cls = _classes(opts)
    L = _lightning()
    spec = opts["module"]
    watch = _callbacks()[0]()
    with _quiet():
        dm = _instantiate("datamodule", opts["datamodule"], data_cls, opts["datamodule_args"],
                          everything=True)
        module = _instantiate("module", spec, module_cls, opts["module_args"], everything=True)
        _check_data(dm, cfg, opts["datamodule"])
        _check_module(module, spec)
        _holdout(dm, cfg)
        try:
            trainer = L.Trainer(**{
                **opts["trainer_args"], "limit_val_batches": 1, "logger": False,
                "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "callbacks": [watch], **_accelerator(cfg)})
        except Exception as e:
            raise UserError(f"lightning.Trainer rejects `objective.trainer_args`: "
                            f"{type(e).__name__}: {e}") from None
        try:
            _run(trainer, trainer.validate, module, datamodule=dm, verbose=False)
        except Exception as e:
            raise UserError(f"a trial's first step, validating {spec} on one batch of "
                            f"{opts['datamodule']}, fails: {type(e).__name__}: {e}") from None
    logged = _metrics(trainer)
    if cfg.metric not in logged:
        raise _never_logged(spec, cfg.metric, logged, "`objective.metric`")
    if "loss_metric" in cfg.options and opts["loss_metric"] not in logged:
        raise _never_logged(spec, opts["loss_metric"], logged, "`objective.loss_metric`")


def train(cfg: TrainConfig, schedule: Schedule, report: Callable[..., Any]) -> float:
    """Train the study file's LightningModule for `cfg.epochs` with the trial's schedule.

    After every validation: `report(epoch, metrics, lr=applied)`, `metrics` every scalar the
    module logged (trainer.callback_metrics), `applied` the LR of the epoch's first optimizer
    step. Returns the last reported `cfg.metric`. Raises objectives.Diverged as soon as a
    training loss is not finite; whatever `report` raises propagates as is, and Ctrl-C or
    SIGTERM during training is a KeyboardInterrupt (never Lightning's sys.exit(1)).
    """
    opts = _options(cfg)
    module_cls, data_cls = _classes(opts)
    L = _lightning()
    spec = opts["module"]
    L.seed_everything(cfg.seed, verbose=False)
    dm = _instantiate("datamodule", opts["datamodule"], data_cls, opts["datamodule_args"])
    module = _instantiate("module", spec, module_cls, opts["module_args"])
    _check_data(dm, cfg, opts["datamodule"])
    _check_module(module, spec)
    _holdout(dm, cfg)
    trial = _callbacks()[1](cfg, report, spec, opts["loss_metric"])
    module.configure_optimizers = types.MethodType(
        _configure_optimizers(cfg, schedule, trial, opts["loss_metric"]), module)
    with _quiet():
        trainer = L.Trainer(**{
            "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0,
            **opts["trainer_args"], "max_epochs": cfg.epochs, "callbacks": [trial],
            **_accelerator(cfg)})
        _run(trainer, trainer.fit, module, datamodule=dm)
    if trial.last is None:
        raise UserError(f"{spec} finished training without a validation: is "
                        f"{opts['datamodule']}'s {cfg.holdout}_dataloader empty, or "
                        "`objective.trainer_args` limit_val_batches = 0?")
    return trial.last


def _configure_optimizers(
    cfg: TrainConfig, schedule: Schedule, trial: Any, loss_metric: str
) -> Callable[[Any], Any]:
    """configure_optimizers for the trial's module: the trial's optimizer over its trainable
    parameters, and its scheduler in Lightning's config dict, as `best --format lightning`
    prints it (schedule-free: the optimizer alone; the callback switches its modes)."""
    from objectives.classify import make_optimizer

    def configure_optimizers(self: Any) -> Any:
        total = self.trainer.estimated_stepping_batches  # optimizer steps, accumulation too
        if not (isinstance(total, int | float) and math.isfinite(total) and total > 0):
            raise UserError("lightning.Trainer cannot count the run's optimizer steps (a "
                            "train_dataloader that is empty or has no length, or "
                            "limit_train_batches = 0); the schedule needs their number: set "
                            "`objective.trainer_args` limit_train_batches to an epoch's batches")
        steps = max(1, int(total) // cfg.epochs)
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, cfg, schedule, steps * cfg.epochs)
        trial.built = schedule.build(optimizer, steps, cfg.epochs)  # the search records it
        if trial.free:
            return optimizer
        config = {"scheduler": trial.built.scheduler,
                  "interval": "step" if trial.built.interval == "iteration" else "epoch",
                  "frequency": 1}
        if trial.built.interval == "plateau":
            config["monitor"] = loss_metric
        return {"optimizer": optimizer, "lr_scheduler": config}

    return configure_optimizers


train.prepare = prepare  # type: ignore[attr-defined]  # the runner calls it before storing
train.holdout = True  # type: ignore[attr-defined]  # "test": the datamodule's test_dataloader
train.options = OPTIONS  # type: ignore[attr-defined]  # the one list: _options checks the same
