"""`studies` shows a validation study as validation (the winner's mean test accuracy over its
seeds), not as a search whose best trial is one seed's score."""

from __future__ import annotations

import optuna

from search import cli
from tests.test_dashboards_figures import make_trial, study_of
from tests.test_dashboards_why import with_companion


def test_studies_lists_a_validation_study_by_its_winners_mean_test_accuracy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = study_of(make_trial("StepLR", 0.88), make_trial("Constant", 0.80), storage=url,
                     name="lr")
    with_companion(study)  # the winner's test runs: 0.90 and 0.92 on seeds 0 and 1
    optuna.create_study(storage=url, study_name="other.validate")  # nothing run yet
    assert cli.main(["studies", "--storage", url]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["lr"].endswith("best trial 0 StepLR: val_acc 0.8800")
    assert rows["lr.validate"].endswith(
        "validation: test accuracy 0.9100 mean of 2 seeds, trial 0 StepLR")
    assert rows["other.validate"].endswith("validation: no finished run")
