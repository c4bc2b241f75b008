"""Study files: the shipped ones load; each mistake is one line naming the file and the key."""

from __future__ import annotations

import re

import pytest

from search import config, schedules
from search.errors import UserError

GOOD = """
trials = 3
[objective]
dataset = "cifar10"
epochs = 2
[space]
families = ["StepLR", "CosineAnnealingLR"]
lr = { low = 0.01, high = 0.5 }
[space.StepLR]
gamma = { low = 0.1, high = 0.5 }
"""


def write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", config.study_names())
def test_shipped_studies_load(name):
    cfg = config.load_study(name)
    assert cfg.name == name and cfg.trials >= 1 and cfg.space.families


def test_a_good_file_loads_with_its_values(tmp_path):
    cfg = config.load_study(write(tmp_path, GOOD))
    assert cfg.space.families == ("StepLR", "CosineAnnealingLR")
    assert cfg.space.lr == config.ParamSpec(0.01, 0.5, log=True)  # lr is log unless told
    assert cfg.space.ranges["StepLR"]["gamma"].high == 0.5
    assert cfg.epochs == 2 and cfg.name == "s"
    assert cfg.with_overrides(epochs=5, data_dir=None).epochs == 5


@pytest.mark.parametrize(
    "edit, message",
    [
        (("trials = 3", "trials = 3\ncolour = 1"), "unknown key `colour`"),
        (("epochs = 2", "epochs = 0"),
         "`objective.epochs` must be an integer in [1, 10000] but got 0"),
        (("low = 0.01, high = 0.5 }", "low = 0.5, high = 0.01 }"),
         "`space.lr.low` must be <= `lr.high` (0.01) but got 0.5"),
        (("low = 0.01, high = 0.5 }", "low = 0.0, high = 0.5 }"),
         "`space.lr.low` must be in [1e-10, 100] but got 0.0"),
        (('"StepLR", "Cosine', '"StepLr", "Cosine'), "but got 'StepLr'; did you mean 'StepLR'?"),
        (('dataset = "cifar10"', 'dataset = "mnist"'), "`objective.dataset` must be one of"),
        (("[space.StepLR]\ngamma", "[space.StepLR]\ngama"), "unknown key `space.StepLR.gama`"),
        (("[space.StepLR]", "[space.ExponentialLR]"), "a family listed in `space.families`"),
        (("trials = 3", "trials = 3\n[sampler]\nname = 'grid'"), "`sampler.name` must be"),
        (("trials = 3", 'trials = "3"'), "`trials` must be an integer in [1, 100000] but got '3'"),
    ],
)
def test_each_mistake_is_one_clear_line(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(UserError) as e:
        config.load_study(path)
    assert message in str(e.value)
    assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_malformed_toml_and_unknown_study(tmp_path):
    with pytest.raises(UserError, match="malformed TOML"):
        config.load_study(write(tmp_path, "trials = [1,"))
    with pytest.raises(UserError, match="unknown study 'nope'; known studies: .*lr"):
        config.load_study("nope")


def test_custom_objective_keeps_its_own_options(tmp_path):
    text = GOOD.replace('dataset = "cifar10"', 'function = "mypkg.train:fit"\nhidden = 32')
    cfg = config.load_study(write(tmp_path, text))
    assert cfg.objective == "mypkg.train:fit" and cfg.train.options == {"hidden": 32}
    with pytest.raises(UserError, match="cannot be imported"):
        config.load_objective(cfg.objective)


# ---------------------------------------------------------------------------------------
# Issue 11's examples, each a regression test: refused in one line, or accepted knowingly.

BAD = [  # (edit of GOOD, what the one line says)
    (("lr = { low = 0.01, high = 0.5 }", "lr = { low = nan, high = 0.5 }"),
     "`space.lr.low` must be a finite number but got nan"),
    (("lr = { low = 0.01, high = 0.5 }", "lr = { low = 0.01, high = inf }"),
     "`space.lr.high` must be a finite number but got inf"),
    (("lr = { low = 0.01, high = 0.5 }", "lr = { low = 1e-300, high = 1e300 }"),
     "`space.lr.low` must be in [1e-10, 100] but got 1e-300"),
    (("lr = { low = 0.01, high = 0.5 }", "lr = { low = 0.01, high = 1e300 }"),
     "set `[limits] lr = ...`"),
    (("[space.StepLR]", "momentum = nan\n[space.StepLR]"),
     "`space.momentum` must be a finite number but got nan"),
    (("[space.StepLR]", "warmup_epochs = { low = 0, high = 1e308 }\n[space.StepLR]"),
     "`space.warmup_epochs.high` must be in [0, 2] but got 1e+308"),
    (("[space.StepLR]", "weight_decay = inf\n[space.StepLR]"),
     "`space.weight_decay` must be a finite number but got inf"),
    (("[space.StepLR]", "default_lr = 1e308\n[space.StepLR]"),
     "`space.default_lr` must be a number in [1e-10, 100]"),
    (("[space.StepLR]", "default_lr = 0.9\n[space.StepLR]"),
     "`space.default_lr` must be inside the searched lr range [0.01, 0.5] but got 0.9"),
    (("gamma = { low = 0.1, high = 0.5 }", "gamma = 1e300"),
     "`space.StepLR.gamma` must be in (0, 1] but got 1e+300"),
    (("epochs = 2", "epochs = 2\nbatch_size = 1e8"),
     "`objective.batch_size` must be an integer in [1, 65536] but got 100000000.0"),
    (("epochs = 2", "epochs = 2\nbatch_size = 100000000"), "set `[limits] batch_size = ...`"),
    (("epochs = 2", "epochs = 2\ntrain_subset = 1"),
     "`objective.train_subset` must be an integer in [10, 10000000] but got 1"),
    (("epochs = 2", "epochs = 1000000000"),
     "`objective.epochs` must be an integer in [1, 10000] but got 1000000000; to go higher "
     "knowingly, set `[limits] epochs = ...`"),
    (("epochs = 2", "epochs = 2\nwidth = [8, 8, 100000]"),
     "`objective.width` must be a list of 3 channel counts in [1, 4096]"),
    (("epochs = 2", 'epochs = 2\ndevice = "potato"'),
     "`objective.device` must be \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\""),
    (("trials = 3", "trials = 3\nname = '" + "x" * 5000 + "'"),
     "`name` must be 1 to 100 letters, digits"),
    (("trials = 3", "trials = 3\nname = 'a/b'"), "`name` must be 1 to 100 letters"),
    (("trials = 3", "trials = 3\nepoch = 8"), "did you mean `objective.epochs`?"),
    (("epochs = 2", "epochs = 2\nbatchsize = 8"), "did you mean `objective.batch_size`?"),
    (("trials = 3", "trials = 3\nseed = 1e100"), "`seed` must be an integer in [0, 2147483647]"),
    (("[space]", "[limits]\nepochs = -5\n[space]"), "`limits.epochs` must be a number > 0"),
    (("trials = 3", 'trials = 3\n[objective.x]\ny = 1'), None),  # a table in [objective]: ok
]


@pytest.mark.parametrize("edit, message", BAD, ids=[m or "accepted" for _, m in BAD])
def test_issue_examples_are_refused_in_one_line(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    if message is None:  # a custom objective's own options may be anything
        text = text.replace('dataset = "cifar10"', 'function = "mypkg.train:fit"')
        config.load_study(write(tmp_path, text))
        return
    with pytest.raises(UserError) as e:
        config.load_study(write(tmp_path, text))
    msg = str(e.value)
    assert message in msg and "\n" not in msg and len(msg) < 600


def test_a_raised_limit_is_accepted_knowingly(tmp_path):
    text = GOOD.replace("epochs = 2", "epochs = 20000") + "[limits]\nepochs = 50000\n"
    assert config.load_study(write(tmp_path, text)).epochs == 20000
    cfg = config.load_study(write(tmp_path, GOOD))
    with pytest.raises(UserError, match=r"`--epochs` must be an integer in \[1, 10000\]"):
        cfg.with_overrides(epochs=10**9)
    with pytest.raises(UserError, match=r"`--train-subset` must be an integer in \[10, "):
        cfg.with_overrides(train_subset=1)


@pytest.mark.parametrize("text, message", [
    ("", "no [objective] table with `dataset` or `function`; a study file needs at least"),
    ("trials = 3\n", "no [objective] table"),
    ("[objective]\nepochs = 2\n", "no [objective] table with `dataset` or `function`"),
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
])
def test_empty_or_minimal_or_nested_files(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        config.load_study(write(tmp_path, text))


def test_a_binary_file_is_not_utf8(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(UserError, match="is not UTF-8 text"):
        config.load_study(str(path))


def test_a_password_in_a_wrong_typed_value_is_never_shown(tmp_path):
    text = 'storage = [ "postgresql+psycopg://user:PASSWORD@db:5432/x" ]\n' + GOOD
    with pytest.raises(UserError) as e:
        config.load_study(write(tmp_path, text))
    assert "`storage` must be a str" in str(e.value) and "PASSWORD" not in str(e.value)
    assert "PASSWORD" not in str(UserError("dsn host=db password=PASSWORD user=me"))


@pytest.mark.parametrize("family", sorted(schedules.SCHEDULES))
def test_every_family_parameter_must_lie_in_its_limits(tmp_path, family):
    """Generic over the catalog: NaN and values past each param's Bounds are refused."""
    for p in schedules.family(family).params:
        if p.kind == "categorical":
            continue
        base = GOOD.replace('["StepLR", "CosineAnnealingLR"]', f'["{family}"]').replace(
            "[space.StepLR]\ngamma = { low = 0.1, high = 0.5 }", "")
        for bad in ("nan", "inf", repr(p.limits.high * 2.0 + 1), repr(p.limits.low - 1.0)):
            with pytest.raises(UserError, match=f"`space.{family}.{p.name}` must be"):
                config.load_study(write(tmp_path, base + f"[space.{family}]\n{p.name} = {bad}\n"))
        ok = f"{{ low = {p.low!r}, high = {p.high!r} }}"  # the catalog's own range
        cfg = config.load_study(write(tmp_path, base + f"[space.{family}]\n{p.name} = {ok}\n"))
        assert cfg.space.ranges[family][p.name].high == p.high


def test_study_names():
    assert config.check_study_name("lr-fashion.v2_b") == "lr-fashion.v2_b"
    for bad in ("", "a/b", ".hidden", "x" * 101, "naïve", "a b", "-x"):
        with pytest.raises(UserError, match="must be 1 to 100 letters"):
            config.check_study_name(bad)


def test_the_objective_is_checked_before_any_study(tmp_path, monkeypatch):
    (tmp_path / "objs.py").write_text("def good(cfg, schedule, report):\n    return 0.5\n"
                                      "def two(cfg, schedule):\n    return 0.5\n")
    (tmp_path / "boom.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert config.load_objective("objs:good")(None, None, None) == 0.5
    with pytest.raises(UserError, match=r"must take \(cfg, schedule, report\).*two\(cfg, sched"):
        config.load_objective("objs:two")
    with pytest.raises(UserError, match="has no function 'nope'"):
        config.load_objective("objs:nope")
    with pytest.raises(UserError, match="fails on import: RuntimeError: no GPU here"):
        config.load_objective("boom:fit")
    with pytest.raises(UserError, match="must be package.module:function"):
        config.load_study(write(tmp_path, GOOD.replace('dataset = "cifar10"',
                                                       'function = "not a module"')))


def test_each_setting_rule_names_a_trainconfig_field_and_keeps_its_type():
    """The settings table (config.limits.SETTINGS) is keyed by TrainConfig's field names, and
    a checked value is stored as the field's default type."""
    import dataclasses as dc

    from objectives.settings import TrainConfig
    from search.config.limits import LIMITS, SETTINGS, train_problem, train_value

    defaults = TrainConfig()
    fields = {f.name for f in dc.fields(TrainConfig)}
    assert set(SETTINGS) <= fields, set(SETTINGS) - fields
    samples = {"width": [8, 16, 16], "betas": [0.9, 0.99], "eps": 1e-6}
    for name, v in samples.items():
        assert train_problem(name, v, LIMITS) is None
        stored = train_value(name, v)
        assert type(stored) is type(getattr(defaults, name)), name
    assert train_problem("epochs", 0, LIMITS) == "an integer in [1, 10000]"
    assert train_problem("epochs", 3, {**LIMITS, "epochs": 2}) == "an integer in [1, 2]"
