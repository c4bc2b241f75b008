"""objectives.fused: K airbench nets as one model, and an SGD that steps each member as torch's."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from objectives import fused, models

WIDTH = (8, 8, 8)
K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lones() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [models.make(width=WIDTH) for _ in range(K)]


def fuse(lones, memory=torch.contiguous_format) -> fused.FusedAirbench:
    model = fused.FusedAirbench(len(lones), width=WIDTH).to(memory_format=memory)
    for k, lone in enumerate(lones):
        model.load_member(k, lone.state_dict())
    return model


def test_state_dict_is_the_lone_nets_stacked_member_by_member(lones):
    model = fuse(lones)
    own, lone = model.state_dict(), lones[0].state_dict()
    assert own.keys() == lone.keys()
    for name, value in lone.items():
        if not name.endswith("num_batches_tracked"):
            assert own[name].numel() == K * value.numel(), name
    for k in range(K):
        back = model.member_state(k, lone)
        for name, value in lones[k].state_dict().items():
            assert torch.equal(back[name], value), name


@pytest.mark.parametrize("memory", [torch.contiguous_format, torch.channels_last])
def test_each_member_computes_its_lone_net(lones, memory):
    model = fuse(lones, memory)
    torch.manual_seed(1)
    shared = torch.randn(8, 3, 32, 32).contiguous(memory_format=memory)
    own = torch.randn(8, 3 * K, 32, 32)  # member k reads channels 3k..3k+2
    want_shared = torch.stack([net(shared) for net in lones])
    want_own = torch.stack([net(own[:, 3 * k : 3 * k + 3]) for k, net in enumerate(lones)])
    torch.testing.assert_close(model(shared), want_shared, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(own.contiguous(memory_format=memory)), want_own,
                               rtol=1e-5, atol=1e-6)


def test_member_losses_are_each_members_mean_cross_entropy():
    torch.manual_seed(2)
    logits, y = torch.randn(K, 16, 10), torch.randint(0, 10, (K, 16))
    got = fused.member_losses(logits, y, label_smoothing=0.2)
    want = torch.stack([F.cross_entropy(logits[k], y[k], label_smoothing=0.2) for k in range(K)])
    torch.testing.assert_close(got, want)


# Per member: (momentum, nesterov, weight decay); the schedule moves lr and momentum per step.
HYPER = [(0.9, True, 5e-4), (0.0, False, 0.0), (0.5, False, 1e-3)]


def test_fused_sgd_steps_each_member_as_torch_sgd(lones):
    model = fuse(lones)
    copies = [copy.deepcopy(net) for net in lones]
    opts = [
        torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=m,
                        nesterov=n, weight_decay=wd)
        for net, (m, n, wd) in zip(copies, HYPER, strict=True)
    ]
    sgd = fused.FusedSGD(list(model.parameters()), K)
    for k, (_, n, wd) in enumerate(HYPER):
        sgd.set_member(k, wd, n)
    torch.manual_seed(3)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for step in range(4):
        lrs = [0.1 * (k + 1) / (step + 1) for k in range(K)]
        moms = [m * (1 - 0.05 * step) for m, _, _ in HYPER]  # as OneCycleLR cycles momentum
        loss = fused.member_losses(model(x), y.expand(K, -1), 0.2).sum()
        sgd.zero_grad()
        loss.backward()
        sgd.step(torch.tensor(lrs), torch.tensor(moms), torch.ones(K, dtype=torch.bool))
        for net, opt, lr, mom in zip(copies, opts, lrs, moms, strict=True):
            opt.param_groups[0].update(lr=lr, momentum=mom)
            opt.zero_grad()
            F.cross_entropy(net(x), y, label_smoothing=0.2).backward()
            opt.step()
    for k, net in enumerate(copies):
        got = model.member_state(k, net.state_dict())
        for name, value in net.state_dict().items():
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_a_non_finite_member_touches_no_other_member(lones):
    """Member 1 goes NaN: members 0 and 2 compute, and step, exactly as without it."""
    clean, broken = fuse(lones), fuse(lones)
    with torch.no_grad():
        for p in broken.parameters():
            fused._rows(p, K)[1].fill_(float("nan"))
    torch.manual_seed(4)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (K, 16))
    active = torch.tensor([True, False, True])
    out = {}
    for name, model in (("clean", clean), ("broken", broken)):
        sgd = fused.FusedSGD(list(model.parameters()), K)
        losses = fused.member_losses(model(x), y)
        torch.where(active, losses, 0.0).sum().backward()
        sgd.step(torch.full((K,), 0.1), torch.full((K,), 0.9), active)
        out[name] = (losses.detach(), model.state_dict())
    assert torch.isnan(out["broken"][0][1])
    torch.testing.assert_close(out["broken"][0][[0, 2]], out["clean"][0][[0, 2]], rtol=0, atol=0)
    for name, value in out["clean"][1].items():
        if name.endswith("num_batches_tracked"):
            continue
        got = fused._rows(out["broken"][1][name], K)
        want = fused._rows(value, K)
        assert torch.equal(got[[0, 2]], want[[0, 2]]), name
    # the inactive member did not move: still all NaN, never a mix
    assert all(torch.isnan(fused._rows(p, K)[1]).all() for p in broken.parameters())


def test_a_refilled_member_starts_with_a_fresh_momentum_buffer(lones):
    model = fuse(lones[:1])
    sgd = fused.FusedSGD(list(model.parameters()), 1)
    sgd.set_member(0, 0.0, True)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (1, 4))
    ones, on = torch.ones(1), torch.ones(1, dtype=torch.bool)
    for _ in range(2):
        fused.member_losses(model(x), y).sum().backward()
        sgd.step(ones * 0.1, ones * 0.9, on)
        sgd.zero_grad()
    assert not sgd.fresh.any()
    sgd.set_member(0, 0.0, True)
    assert sgd.fresh.all()
    model.load_member(0, lones[0].state_dict())
    # after the refill, one step equals torch SGD's first step from the same weights
    net = copy.deepcopy(lones[0])
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1,
                          momentum=0.9, nesterov=True)
    fused.member_losses(model(x), y).sum().backward()
    sgd.step(ones * 0.1, ones * 0.9, on)
    F.cross_entropy(net(x), y[0]).backward()
    opt.step()
    got = model.member_state(0, net.state_dict())
    for name, value in net.state_dict().items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_bad_sizes_fail_clearly():
    with pytest.raises(ValueError, match="k must be >= 1"):
        fused.FusedAirbench(0)
    with pytest.raises(ValueError, match="width must be 3"):
        fused.FusedAirbench(2, width=(8, 8))
