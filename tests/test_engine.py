"""The claim protocol as a user meets it in every loop: worker processes running fused arrays
draw distinct parameters and stop at the exact target; SIGTERM to an array run ends its trials
as interrupted and exits 0; workers sharing a GPU split its memory."""

from __future__ import annotations

import signal

import optuna
import pytest
from optuna.trial import TrialState
from workers_support import check_exact, finish, start, trials, wait_for

from search.engine import array

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = """name = "arrays"
seed = 0
[objective]
dataset = "cifar10"
epochs = {epochs}
batch_size = 64
width = [8, 8, 8]
train_subset = 256
val_fraction = 0.25
device = "cpu"
[space]
families = "all"
lr = {{ low = 0.01, high = 0.5, log = true }}
enqueue_defaults = false
[sampler]
name = "{sampler}"
n_startup_trials = 3
[pruner]
name = "none"
[workers]
heartbeat_interval = 1
grace_period = 10
"""


def _study(tmp_path, cifar_dir, sampler: str, epochs: int = 1) -> list[str]:
    path = tmp_path / "arrays.toml"
    path.write_text(STUDY.format(sampler=sampler, epochs=epochs))
    return ["--study", str(path), "--data-dir", str(cifar_dir)]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_two_array_workers_draw_distinct_parameters_to_the_exact_target(
    tmp_path, cifar_dir, sampler
):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    proc = start("run", *_study(tmp_path, cifar_dir, sampler), "--trials", "8", "--jobs", "2",
                 "--array", "2", "--storage", url, cwd=tmp_path)
    code, out, err = finish(proc, 600)
    assert code == 0, err
    ts = check_exact(url, 8, "arrays")  # exact target, numbers unique and contiguous
    done = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params) == 8, params  # no worker repeats another's draws
    assert {t.system_attrs["engine"] for t in done} == {"array"}
    assert len({t.system_attrs["worker"] for t in done}) == 2  # both workers trained


def test_sigterm_to_an_array_run_ends_its_trials_as_interrupted_and_exits_0(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    proc = start("run", *_study(tmp_path, cifar_dir, "random", epochs=30), "--trials", "40",
                 "--array", "2", "--storage", url, cwd=tmp_path)

    def in_flight():  # both members of the array have reported an epoch
        running = [t for t in trials(url, "arrays") if t.state == TrialState.RUNNING]
        return len([t for t in running if t.intermediate_values]) == 2

    wait_for(in_flight, 300, "two trials in flight")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, 120)
    assert code == 0, err
    ts = trials(url, "arrays")
    assert not [t for t in ts if t.state == TrialState.RUNNING]
    stopped = [t for t in ts if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and {t.user_attrs["end_reason"] for t in stopped} == {"interrupted"}
    assert all(len(t.intermediate_values) < 30 for t in stopped)
    assert "Traceback" not in err


def test_workers_sharing_a_gpu_split_its_free_memory():
    gib = 1 << 30
    assert array.k_from_memory(10 * gib, gib) == 8
    assert array.k_from_memory(10 * gib, gib, share=2) == 4  # 80% of 10 GiB, halved
    assert array.k_from_memory(10 * gib, gib, share=3) == 2
    # a worker starting after the first sees what the first left free: together within it
    first = array.k_from_memory(10 * gib, gib, share=2)
    second = array.k_from_memory(10 * gib - first * gib, gib, share=2)
    assert (first + second) * gib <= 0.8 * 10 * gib
