"""Study files: the shipped ones load; each mistake is one line naming the file and the key."""

from __future__ import annotations

import pytest

from search import config
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
