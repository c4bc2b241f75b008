"""The Hugging Face Trainer as an objective: `train(cfg, schedule, report) -> the last metric`.

A user brings what they train with the Trainer already (a model, data sets, a collator,
`compute_metrics`) as one function returning the Trainer's keyword arguments; schedsearch owns
what the search varies and measures: the optimizer, the scheduler, the budget and when to
evaluate. The study file names the function:

    [objective]
    function = "objectives.hf:train"
    trainer = "model:make"           # required: package.module:function
    metric = "eval_loss"             # a name the Trainer's evaluation reports
    direction = "minimize"
    epochs = 3
    training_args = { per_device_train_batch_size = 64 }   # optional TrainingArguments
    eval_steps = 200                 # optional: evaluate every 200 optimizer steps
    loss_metric = "eval_loss"        # optional: what ReduceLROnPlateau steps with

`trainer` is called with no arguments, or with `holdout="val"` / `holdout="test"` where it
accepts that keyword, once per trial and once by `prepare`; it returns a mapping with `model`,
`train_dataset`, `eval_dataset`, optionally `test_dataset` (evaluated instead of
`eval_dataset` by `validate`, holdout "test") and any other Trainer keyword argument except
`args` and `optimizers`. It must build a new model on every call (a trial must not start from
the previous trial's weights); load data once at module level if loading is slow.

The schedule is torch's scheduler the trial drew, built for `epochs` x the Trainer's optimizer
steps per epoch (from the train set's length, the batch size and the gradient accumulation,
as the Trainer counts them: the last partial batch counts, unless `dataloader_drop_last`),
and the Trainer runs exactly that many steps (`max_steps`). The Trainer steps its scheduler
after every optimizer step, so a schedule that steps once per epoch is wrapped in
`StepPerEpoch` (the class `best --format hf` prints), and it steps a ReduceLROnPlateau itself
after every evaluation, with `loss_metric` (passed as `metric_for_best_model`).

Evaluation: after every epoch; with `eval_steps = N`, after every N optimizer steps and after
the last one. Each evaluation is one report: the search's "epochs" (the pruner's steps and
resources, the curves) then count evaluations, and a ReduceLROnPlateau's patience too. The
schedule itself never changes with `eval_steps`: it is still built for all epochs x steps per
epoch, so it covers `max_steps` exactly, and a per-epoch schedule still steps once per pass
over the data. The trial's value is the last evaluation's `metric`.

transformers and accelerate are imported only inside the functions: `import objectives.hf`
works without them, and `prepare` says which extra to install.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import tempfile
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from objectives import Diverged, UserError, import_module

if TYPE_CHECKING:
    from objectives.settings import TrainConfig

__all__ = ["EXTRA", "OPTIONS", "OWNED_ARGS", "StepPerEpoch", "TRAINS_OPTIMIZERS", "prepare",
           "steps_per_epoch", "train"]

# It builds the optimizer `objective.optimizer` names, schedule-free ones too, so a contest can
# run the schedule-free reference through it (search.contest.contenders reads this).
TRAINS_OPTIMIZERS = True

EXTRA = "pip install 'schedsearch[hf]'"
# The [objective] options it reads: declared as `train.options` (a study file's other keys are
# refused when it is loaded) and the keys `options()` accepts; one list.
OPTIONS = ("trainer", "training_args", "eval_steps", "loss_metric")
REQUIRED = ("model", "train_dataset", "eval_dataset")
TEST_DATASET = "test_dataset"  # ours: evaluated instead of eval_dataset with holdout "test"
DEFAULT_LOSS_METRIC = "eval_loss"

# Trainer keyword arguments schedsearch sets itself, and why (one line each).
OWNED_KWARGS = {
    "args": "schedsearch builds the TrainingArguments (set yours in `objective.training_args`)",
    "optimizers": "schedsearch builds the optimizer and the trial's scheduler",
    "optimizer_cls_and_kwargs": "schedsearch builds the optimizer and the trial's scheduler",
    "model_init": "return the model itself (`model`), built anew on every call",
}

_BUDGET = "the budget is `objective.epochs` x the optimizer steps of an epoch"
_SCHEDULE = "the optimizer and the schedule are the trial's (`objective.optimizer`, [space])"
_EVAL = ("schedsearch evaluates after every epoch, or every `objective.eval_steps` optimizer "
         "steps")
_STORE = "schedsearch stores the metrics; the Trainer writes nothing"
# TrainingArguments fields schedsearch sets itself, and why.
OWNED_ARGS = {
    "max_steps": _BUDGET, "num_train_epochs": _BUDGET,
    "auto_find_batch_size": "a batch size changed mid-run changes the steps the schedule "
                            "was computed for",
    **dict.fromkeys(("learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps",
                     "warmup_ratio", "optim", "optim_args", "optim_target_modules",
                     "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon"), _SCHEDULE),
    **dict.fromkeys(("eval_strategy", "evaluation_strategy", "eval_steps", "eval_delay",
                     "eval_on_start", "metric_for_best_model", "greater_is_better",
                     "load_best_model_at_end", "do_eval"), _EVAL),
    **dict.fromkeys(("output_dir", "overwrite_output_dir", "save_strategy", "save_steps",
                     "report_to", "push_to_hub", "resume_from_checkpoint"), _STORE),
    "seed": "the trial's seed is `objective.seed`",
    "use_cpu": "the device is `objective.device`", "no_cuda": "the device is `objective.device`",
}

# The built-in objective's settings, unused here: set in a study file, they would be ignored
# silently (None: the trainer function decides it; else the TrainingArguments field to use).
IGNORED_SETTINGS = {"dataset": None, "data_dir": None, "batch_size": "per_device_train_batch_size",
                    "width": None, "val_fraction": None, "train_subset": None,
                    "label_smoothing": "label_smoothing_factor", "augment": None}

# Evaluation outputs that describe the run, not the model: never reported as metrics.
_NOT_METRICS = ("epoch",)
_NOT_METRIC_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second",
                        "_model_preparation_time")

# Models handed to a trial (weakly): a function returning one again is caught.
_SEEN_MODELS: weakref.WeakSet[Any] = weakref.WeakSet()


class StepPerEpoch:
    """The Trainer calls scheduler.step() after every optimizer step; this schedule steps once
    per epoch, so the wrapped scheduler steps every `steps_per_epoch` calls."""

    def __init__(self, scheduler, steps_per_epoch):
        self.scheduler, self.steps_per_epoch, self.calls = scheduler, steps_per_epoch, 0
        self.optimizer = scheduler.optimizer

    def step(self):
        self.calls += 1
        if self.calls % self.steps_per_epoch == 0:
            self.scheduler.step()

    def get_last_lr(self):
        return self.scheduler.get_last_lr()

    def state_dict(self):
        return {"calls": self.calls, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        self.calls = state["calls"]
        self.scheduler.load_state_dict(state["scheduler"])


# -- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The [objective] options of this objective, checked."""

    trainer: str
    training_args: Mapping[str, Any]
    eval_steps: int | None
    loss_metric: str
    loss_metric_set: bool  # said in the study file (checked against the names at once)


def _key(name: str) -> str:
    return f"`objective.{name}`"


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def options(cfg: TrainConfig) -> Options:
    """The options from `cfg.options`, each mistake one UserError line (no imports)."""
    given = dict(cfg.options)
    for k in given:
        if k not in OPTIONS:
            raise UserError(f"{_key(k)} is not an option of objectives.hf:train (its options: "
                            f"{', '.join(OPTIONS)}){_did_you_mean(k, OPTIONS)}")
    spec = given.get("trainer")
    if spec is None:
        raise UserError(f"{_key('trainer')} must name the function that returns your Trainer's "
                        'keyword arguments, e.g. trainer = "model:make"')
    module, _, name = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not (module and all(p.isidentifier() for p in module.split(".")) and name.isidentifier()):
        raise UserError(f"{_key('trainer')} must look like package.module:function but got "
                        f"{spec!r}")
    args = given.get("training_args", {})
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise UserError(f"{_key('training_args')} must be a table of TrainingArguments fields, "
                        f"e.g. {{ per_device_train_batch_size = 64 }}, but got {args!r}")
    for k in args:
        if k in OWNED_ARGS:
            raise UserError(f"{_key('training_args')}: {k} is set by schedsearch: "
                            f"{OWNED_ARGS[k]}")
    eval_steps = given.get("eval_steps")
    if eval_steps is not None and (isinstance(eval_steps, bool) or not isinstance(eval_steps, int)
                                   or eval_steps < 1):
        raise UserError(f"{_key('eval_steps')} must be a whole number of optimizer steps >= 1 "
                        f"(or left out: evaluate after every epoch) but got {eval_steps!r}")
    loss = given.get("loss_metric", DEFAULT_LOSS_METRIC)
    if not isinstance(loss, str) or not loss:
        raise UserError(f"{_key('loss_metric')} must be a metric name the evaluation reports, "
                        f'e.g. "eval_loss", but got {loss!r}')
    return Options(spec, dict(args), eval_steps, loss, "loss_metric" in given)


# -- the user's function --------------------------------------------------------------------


def _no_ignored_settings(cfg: TrainConfig) -> None:
    """A built-in objective's setting given to this objective: one line saying where it goes."""
    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        if f.name not in IGNORED_SETTINGS or f.default is dataclasses.MISSING:
            continue
        if getattr(cfg, f.name) != f.default:
            use = IGNORED_SETTINGS[f.name]
            where = (f"set {_key('training_args')} = {{ {use} = ... }} instead" if use
                     else f"your {_key('trainer')} function decides it")
            raise UserError(f"`objective.{f.name}` is the built-in objective's setting, unused "
                            f"by objectives.hf:train; {where}")


def _transformers() -> Any:
    """transformers, with accelerate (its Trainer needs it); missing: one line naming the
    extra."""
    try:
        import accelerate  # noqa: F401
        import transformers
    except ImportError as e:
        raise UserError(f"objectives.hf:train needs transformers and accelerate ({EXTRA}): "
                        f"{e}") from None
    return transformers


def load_function(spec: str) -> Callable[..., Any]:
    """Import the `trainer` function and check its shape (no required arguments, but for an
    optional `holdout`)."""
    module_name, _, func_name = spec.partition(":")
    where = f"{_key('trainer')} = {spec!r}"
    module = import_module(module_name, f"{where}: module")
    func = getattr(module, func_name, None)
    if func is None:
        raise UserError(f"{where}: module {module_name!r} has no {func_name!r}"
                        f"{_did_you_mean(func_name, [n for n in dir(module) if n[:1] != '_'])}")
    if not callable(func):
        raise UserError(f"{where}: {func_name} is a {type(func).__name__}, not a function")
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the call will tell
        return func
    required = [p.name for p in params if p.default is p.empty and p.name != "holdout"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        raise UserError(f"{where} is a Trainer function of the wrong shape: it must take no "
                        "arguments (or only holdout=) and return the Trainer's keyword "
                        f"arguments, but it requires {', '.join(required)}")
    return func


def _takes_holdout(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "holdout" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               or p.kind == p.VAR_KEYWORD for p in params)


def call_function(func: Callable[..., Any], holdout: str) -> Any:
    """The function's return value: called with holdout= where it takes that keyword."""
    return func(holdout=holdout) if _takes_holdout(func) else func()


def trainer_kwargs(raw: Any, opts: Options, holdout: str) -> dict[str, Any]:
    """The Trainer's keyword arguments from what the function returned, checked: the data set
    `holdout` names is the eval_dataset; test_dataset is ours, never the Trainer's."""
    import transformers

    where = f"{_key('trainer')} = {opts.trainer!r}"
    if not isinstance(raw, Mapping):
        raise UserError(f"{where} returned a {type(raw).__name__}; it must return a mapping "
                        "of Trainer keyword arguments, e.g. dict(model=..., train_dataset=..., "
                        "eval_dataset=...)")
    kwargs = dict(raw)
    for k in kwargs:
        if k in OWNED_KWARGS:
            raise UserError(f"{where} returned {k!r}, which schedsearch sets: {OWNED_KWARGS[k]}")
    missing = [k for k in REQUIRED if kwargs.get(k) is None]
    if missing:
        raise UserError(f"{where} returned no {', '.join(missing)}; it must return "
                        f"{', '.join(REQUIRED)} (and optionally {TEST_DATASET})")
    known = [n for n in inspect.signature(transformers.Trainer.__init__).parameters
             if n != "self"] + [TEST_DATASET]
    for k in kwargs:
        if k not in known:
            raise UserError(f"{where} returned {k!r}, which is not a Trainer keyword argument"
                            f"{_did_you_mean(k, known)}")
    test = kwargs.pop(TEST_DATASET, None)
    if holdout == "test":
        if test is None:
            raise UserError(f"{where} returned no {TEST_DATASET}: validating on the test split "
                            f"evaluates it instead of eval_dataset")
        kwargs["eval_dataset"] = test
    if isinstance(kwargs["eval_dataset"], Mapping):
        raise UserError(f"{where} returned a mapping of eval datasets; return one data set "
                        "(each evaluation is one report)")
    try:
        len(kwargs["train_dataset"])
    except TypeError:
        raise UserError(f"{where} returned a train_dataset without a length; the schedule is "
                        "computed for epochs x the optimizer steps of an epoch") from None
    return kwargs


def _fresh(model: Any, opts: Options) -> None:
    """A trial must start from new weights: a model handed out before is refused."""
    try:
        seen = model in _SEEN_MODELS
        _SEEN_MODELS.add(model)
    except TypeError:  # not weak-referenceable: cannot tell
        return
    if seen:
        raise UserError(f"{_key('trainer')} = {opts.trainer!r} returned a model it returned "
                        "before; build a new one on every call, so that each trial trains "
                        "from fresh weights")


# -- TrainingArguments ----------------------------------------------------------------------


def _device_args(device: str) -> dict[str, Any]:
    if device == "auto":
        return {}  # the Trainer's own choice: cuda where available
    from objectives.classify import resolve_device

    d = resolve_device(device)  # a device this machine lacks: one line naming what it has
    if d.type == "cuda" and (d.index or 0) != 0:
        raise UserError(f"`device` {device!r}: the Trainer uses the first visible GPU; set "
                        f"CUDA_VISIBLE_DEVICES={d.index} and device = \"cuda\"")
    return {"use_cpu": True} if d.type == "cpu" else {}


def training_arguments(cfg: TrainConfig, opts: Options, output_dir: str, **ours: Any) -> Any:
    """TrainingArguments: schedsearch's defaults, the user's `training_args`, then `ours`."""
    import transformers

    fields = [f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init]
    for k in opts.training_args:
        if k not in fields:
            raise UserError(f"{_key('training_args')}: {k!r} is not a TrainingArguments field"
                            f"{_did_you_mean(k, fields)}")
    import torch

    device = _device_args(cfg.device)
    # pinned memory only where a GPU trains (else torch warns on every DataLoader)
    pin = torch.cuda.is_available() and not device.get("use_cpu", False)
    values = {"save_strategy": "no", "report_to": [], "logging_strategy": "no",
              "disable_tqdm": True, "dataloader_pin_memory": pin, **opts.training_args,
              **device, "output_dir": output_dir, "seed": cfg.seed, **ours}
    try:
        return transformers.TrainingArguments(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"{_key('training_args')}: TrainingArguments refuses them: {e}") from None


def steps_per_epoch(n: int, args: Any) -> int:
    """Optimizer steps of one pass over `n` training examples, as the Trainer counts them
    (Trainer.set_initial_training_values): batches of args.train_batch_size, the last partial
    one included unless dataloader_drop_last, then ceil(batches / gradient_accumulation)."""
    bs = args.train_batch_size
    batches = n // bs if args.dataloader_drop_last else -(-n // bs)
    if batches < 1:
        raise UserError(f"the train_dataset has {n} examples, less than one batch of {bs}")
    return -(-batches // args.gradient_accumulation_steps)


def _quiet(trainer: Any) -> Any:
    """No PrinterCallback: it prints every log dict on stdout, under the search's display."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def metrics_of(raw: Mapping[str, Any] | None) -> dict[str, float]:
    """An evaluation's metrics as plain floats: numbers only, and not the run's bookkeeping
    (epoch, runtime, throughput)."""
    out: dict[str, float] = {}
    for k, v in (raw or {}).items():
        if k in _NOT_METRICS or k.endswith(_NOT_METRIC_SUFFIXES) or isinstance(v, bool):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue  # a string, a list: not a metric to optimise
    return out


def _head(dataset: Any, n: int) -> Any:
    """The first `n` examples of `dataset`, of the same kind where it can (a datasets.Dataset
    keeps its column pruning), else a torch Subset; an unsized one whole."""
    try:
        size = len(dataset)
    except TypeError:
        return dataset.take(n) if hasattr(dataset, "take") else dataset
    if size <= n:
        return dataset
    if hasattr(dataset, "select"):
        return dataset.select(range(n))
    import torch.utils.data

    return torch.utils.data.Subset(dataset, range(n))


def _names_said(names: list[str]) -> str:
    return ", ".join(names) if names else "no metrics"


# -- prepare --------------------------------------------------------------------------------


def prepare(cfg: TrainConfig) -> None:
    """Check everything the study file and the `trainer` function can get wrong, before the
    search stores anything: each mistake is one UserError line.

    The metric names come from the Trainer itself: `evaluate()` on the first batch of the
    evaluation set, with an untrained model. That is one forward pass, and it is correct for
    any compute_metrics and any model (what names a compute_metrics returns cannot be told
    without calling it). Nothing is written: a temporary output_dir, no reports, no saves.
    """
    opts = options(cfg)
    _no_ignored_settings(cfg)
    transformers = _transformers()
    func = load_function(opts.trainer)
    where = f"{_key('trainer')} = {opts.trainer!r}"
    transformers.set_seed(cfg.seed)
    try:
        raw = call_function(func, cfg.holdout)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{where} fails: {type(e).__name__}: {e}") from e
    kwargs = trainer_kwargs(raw, opts, cfg.holdout)
    _fresh(kwargs["model"], opts)  # a function caching its model fails at the first trial
    with tempfile.TemporaryDirectory(prefix="schedsearch-hf-") as out:
        args = training_arguments(cfg, opts, out)
        steps_per_epoch(len(kwargs["train_dataset"]), args)
        probe = {k: v for k, v in kwargs.items() if k != "callbacks"}  # no user side effects
        probe["eval_dataset"] = _head(kwargs["eval_dataset"], args.eval_batch_size)
        try:
            trainer = _quiet(transformers.Trainer(args=args, **probe))
            names = list(metrics_of(trainer.evaluate()))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{where}: the Trainer's evaluation of the first "
                            f"{args.eval_batch_size} examples fails: {type(e).__name__}: {e}"
                            ) from e
    if cfg.metric not in names:
        raise UserError(f"the Trainer's evaluation reports {_names_said(names)}, not "
                        f"{cfg.metric!r}; set [objective] metric to one of them"
                        f"{_did_you_mean(cfg.metric, names)}")
    if opts.loss_metric_set and opts.loss_metric not in names:
        raise UserError(f"the Trainer's evaluation reports {_names_said(names)}, not "
                        f"{opts.loss_metric!r}; set {_key('loss_metric')} (what "
                        "ReduceLROnPlateau steps with) to one of them"
                        f"{_did_you_mean(opts.loss_metric, names)}")


# -- train ----------------------------------------------------------------------------------


@functools.cache
def _classes() -> tuple[type, type]:
    """The Trainer subclass and the callback (defined here: transformers is imported late)."""
    import torch
    import transformers

    class CheckedTrainer(transformers.Trainer):
        """The Trainer, stopping the run at once when a training loss is not finite.

        The check reads the loss of every micro-batch: one device sync, which the Trainer's
        own NaN filter (logging_nan_inf_filter, on by default) pays for already."""

        schedsearch_steps_per_epoch = 1

        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            if not bool(torch.isfinite(loss).all()):
                step = self.state.global_step
                raise Diverged(step // self.schedsearch_steps_per_epoch, step,
                               float(loss.detach().float().mean()))
            return loss

    class Bridge(transformers.TrainerCallback):
        """Tells the schedule of every optimizer step and the search of every evaluation.

        `on_optimizer_step` runs after optimizer.step() and before the Trainer steps the
        scheduler, so the optimizer's LR there is the LR that step applied."""

        def __init__(self, run: _Run) -> None:
            self.run = run

        def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
            self.run.check_steps(train_dataloader)

        def on_optimizer_step(self, args, state, control, **kw):
            self.run.stepped()

        def on_step_end(self, args, state, control, **kw):
            # the last step is evaluated too (older transformers skip it with eval_steps)
            every = self.run.eval_steps
            if every and state.global_step >= state.max_steps and state.global_step % every:
                control.should_evaluate = True

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            self.run.evaluated(metrics)

    return CheckedTrainer, Bridge


class _Run:
    """One trial's bookkeeping between the Trainer's events, the schedule and `report`."""

    def __init__(self, cfg: TrainConfig, opts: Options, built: Any, optimizer: Any, report: Any,
                 steps: int, accum: int) -> None:
        self.cfg, self.opts, self.built, self.optimizer, self.report = (
            cfg, opts, built, optimizer, report)
        self.steps, self.accum = steps, accum
        self.eval_steps = opts.eval_steps
        self.plateau = built.interval == "plateau"
        self.first_lr: float | None = None  # of the first step since the last evaluation
        self.evaluations = 0
        self.optimizer_steps = 0
        self.last = math.nan

    def check_steps(self, loader: Any) -> None:
        """The Trainer's own count of optimizer steps per epoch is the one the schedule was
        built for (a custom sampler or several processes could change it)."""
        if loader is None:
            return
        try:
            batches = len(loader)
        except TypeError:
            return
        theirs = max(-(-batches // self.accum), 1)
        if theirs != self.steps:
            raise UserError(f"the Trainer makes {theirs} optimizer steps an epoch where "
                            f"schedsearch computed {self.steps} from the train_dataset's "
                            "length; objectives.hf trains in one process, without a custom "
                            "sampler")

    def stepped(self) -> None:
        if self.first_lr is None:
            self.first_lr = float(self.optimizer.param_groups[0]["lr"])
        self.built.note_step()
        self.optimizer_steps += 1

    def evaluated(self, raw: Mapping[str, Any] | None) -> None:
        values = metrics_of(raw)
        metric = self.cfg.metric
        if metric not in values:
            raise UserError(f"the Trainer's evaluation reports {_names_said(list(values))}, "
                            f"not {metric!r}; set [objective] metric to one of them")
        if self.plateau and self.opts.loss_metric not in values:
            raise UserError(f"ReduceLROnPlateau steps with {_key('loss_metric')} = "
                            f"{self.opts.loss_metric!r}, but the Trainer's evaluation reports "
                            f"{_names_said(list(values))}")
        lr = math.nan if self.first_lr is None else self.first_lr
        index, self.first_lr = self.evaluations, None
        self.evaluations += 1
        loss = values.get(self.opts.loss_metric, 0.0)
        if not math.isfinite(loss):  # as the built-in objective: a NaN val loss ends the run
            raise Diverged(index, self.optimizer_steps, loss)
        self.last = values[metric]
        self.report(index, values, lr=lr)


def train(cfg: TrainConfig, schedule: Any, report: Callable[..., Any]) -> float:
    """Train with the Hugging Face Trainer as the study file's options say (module docstring);
    `report(i, metrics, lr=...)` after the i-th evaluation with all its metrics and the LR of
    the first optimizer step since the one before. Returns the last evaluation's `metric`.

    Exceptions from `report` (pruned, diverged, a missing metric) and KeyboardInterrupt leave
    `Trainer.train()` unchanged: the Trainer catches none of them.
    """
    opts = options(cfg)
    transformers = _transformers()
    from objectives.classify import make_optimizer

    transformers.set_seed(cfg.seed)  # the model's initial weights too
    kwargs = trainer_kwargs(call_function(load_function(opts.trainer), cfg.holdout), opts,
                            cfg.holdout)
    model = kwargs["model"]
    _fresh(model, opts)
    trainer_cls, bridge_cls = _classes()
    with tempfile.TemporaryDirectory(prefix="schedsearch-hf-") as out:
        geometry = training_arguments(cfg, opts, out)
        steps = steps_per_epoch(len(kwargs["train_dataset"]), geometry)
        total = cfg.epochs * steps
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, cfg, schedule, total)
        built = schedule.build(optimizer, steps, cfg.epochs)
        scheduler = (StepPerEpoch(built.scheduler, steps) if built.interval == "epoch"
                     else built.scheduler)
        when: dict[str, Any] = {"eval_strategy": "epoch"}
        if opts.eval_steps is not None:
            when = {"eval_strategy": "steps", "eval_steps": opts.eval_steps}
        if built.interval == "plateau":  # the Trainer steps it with this metric
            when["metric_for_best_model"] = opts.loss_metric
        args = training_arguments(cfg, opts, out, max_steps=total, **when)
        run = _Run(cfg, opts, built, optimizer, report, steps, args.gradient_accumulation_steps)
        trainer = _quiet(trainer_cls(args=args, optimizers=(optimizer, scheduler), **kwargs))
        trainer.schedsearch_steps_per_epoch = steps
        trainer.add_callback(bridge_cls(run))
        trainer.train()
    return run.last


train.prepare = prepare  # type: ignore[attr-defined]  # the runner's check before storing
train.holdout = True  # type: ignore[attr-defined]  # "test": the trainer's test_dataset
train.options = OPTIONS  # type: ignore[attr-defined]  # the one list: options() checks the same
