"""K copies of the airbench net trained as one model, and an SGD that steps each copy alone.

HFTA-style fusion (Wang et al., MLSys 2021): every conv becomes one grouped conv with K groups,
every BatchNorm one BatchNorm over K x C channels (its statistics are per channel, so per
member), and the head a batched matmul. Member k owns rows `view(K, -1)[k]` of every tensor
of the state dict, in the lone net's own layout: `load_member` copies a lone AirbenchNet in,
`member_state` copies one out. Nothing couples the members: a member's output, loss and
gradient depend on its own weights and its own input only.

The stem takes either one input shared by all members (B, C, H, W) or one input per member
(B, K*C, H, W); the rest of the net is the same grouped computation either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from objectives import models

__all__ = ["FusedAirbench", "FusedSGD", "member_losses"]


def _rows(t: torch.Tensor, k: int) -> torch.Tensor:
    """t viewed as (K, ...): member k's part is [k]. A view in any memory format (channels_last
    included), since only the outermost axis is split."""
    return t.unflatten(0, (k, -1))


class _BatchNorm(nn.BatchNorm2d):
    """models.BatchNorm over K x C channels: fixed unit scale, learned shift."""

    def __init__(self, channels: int, momentum: float = 0.4) -> None:
        super().__init__(channels, momentum=momentum)
        self.weight.requires_grad_(False)


def _conv(k: int, c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(k * c_in, k * c_out, 3, padding="same", bias=False, groups=k)


class _Block(nn.Module):
    def __init__(self, k: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.pool, self.norm1 = _conv(k, c_in, c_out), nn.MaxPool2d(2), _BatchNorm(
            k * c_out
        )
        self.conv2, self.norm2, self.act = _conv(k, c_out, c_out), _BatchNorm(k * c_out), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class _Head(nn.Module):
    """K linear heads without bias; weight (K, classes, C) is the lone (classes, C) per member."""

    def __init__(self, k: int, c: int, classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, classes, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K, C) -> (K, B, classes)
        return torch.bmm(x.transpose(0, 1), self.weight.transpose(1, 2))


class FusedAirbench(nn.Module):
    """K members of models.AirbenchNet in one module; forward returns logits (K, B, classes).

    Its state dict has the lone net's keys; each tensor is the K members' tensors stacked
    along the first axis (conv weights (K*c_out, c_in, kh, kw), BatchNorm (K*C,), head
    (K, classes, C)). Weights are not initialised here: load members from lone nets.
    """

    def __init__(
        self,
        k: int,
        width: Sequence[int] = models.DEFAULT_WIDTH,
        in_channels: int = 3,
        classes: int = 10,
        image_size: int = 32,
        output_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1 but got {k}")
        models.AirbenchNet(width, in_channels, classes, image_size)  # same argument checks
        self.k, self.in_channels, self.output_scale = k, in_channels, output_scale
        stem = 2 * in_channels * 4
        self.stem = nn.Sequential(
            nn.Conv2d(k * in_channels, k * stem, kernel_size=2, groups=k), nn.GELU()
        )
        chans = [stem, *width]
        self.blocks = nn.Sequential(
            *(_Block(k, a, b) for a, b in zip(chans, chans[1:], strict=False))
        )
        self.head = _Head(k, width[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.stem[0]
        assert isinstance(conv, nn.Conv2d)  # the stem built in __init__: (conv, GELU)
        if x.shape[1] == self.in_channels and self.k > 1:
            # One input for all members: a dense conv with the stacked weights computes each
            # member's stem exactly as the grouped conv would on K copies of the input.
            x = F.conv2d(x, conv.weight, conv.bias)
        else:
            x = conv(x)
        x = self.blocks(self.stem[1](x))
        x = torch.amax(x, dim=(2, 3))  # global max pool, (B, K*C)
        return self.head(x.view(x.shape[0], self.k, -1)) * self.output_scale

    @torch.no_grad()
    def load_member(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a lone net's state dict (models.AirbenchNet of the same shape) into member k."""
        own = self.state_dict()
        for name, value in state.items():
            if name.endswith("num_batches_tracked"):  # unused: BatchNorm momentum is fixed
                continue
            rows = _rows(own[name], self.k)[k]
            rows.copy_(value.reshape(rows.shape))

    @torch.no_grad()
    def member_state(self, k: int, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Member k as a lone net's state dict, shaped as `like` (a lone net's state dict)."""
        own = self.state_dict()
        return {
            name: (value.clone() if name.endswith("num_batches_tracked")
                   else _rows(own[name], self.k)[k].reshape(value.shape).clone())
            for name, value in like.items()
        }


def member_losses(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross entropy of each member, (K,), from logits (K, B, classes), targets (K, B)."""
    k, b, classes = logits.shape
    loss = F.cross_entropy(
        logits.reshape(k * b, classes).float(), targets.reshape(k * b),
        label_smoothing=label_smoothing, reduction="none",
    )
    return loss.view(k, b).mean(1)


class FusedSGD:
    """torch.optim.SGD (dampening 0) over fused parameters, with per-member hyperparameters.

    Per member k: lr, momentum, weight decay and nesterov of its own trial; the update is
    torch's: d = g + wd * p; buf = d on the member's first step, else momentum * buf + d;
    d = d + momentum * buf if nesterov else buf; p -= lr * d. Only members marked active in
    `step` move, so a stopped member's (possibly non-finite) gradient touches nothing. LR and
    momentum are given at every step (a scheduler may move both: OneCycleLR cycles momentum).
    """

    def __init__(self, params: Sequence[torch.Tensor], k: int) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.k = k
        dev = self.params[0].device
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self.weight_decay = torch.zeros(k, 1, device=dev)
        self.nesterov = torch.zeros(k, 1, dtype=torch.bool, device=dev)
        self.fresh = torch.ones(k, 1, dtype=torch.bool, device=dev)  # momentum buffer unset

    def set_member(self, k: int, weight_decay: float, nesterov: bool) -> None:
        """A new trial in slot k: its hyperparameters, and a fresh momentum buffer."""
        self.weight_decay[k] = weight_decay
        self.nesterov[k] = nesterov
        self.fresh[k] = True

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor, momentum: torch.Tensor, active: torch.Tensor) -> None:
        """One step; `lr`, `momentum` (K,) float and `active` (K,) bool, on the device."""
        for p, buf in zip(self.params, self.bufs, strict=True):
            if p.grad is None:
                continue
            shape = (self.k,) + (1,) * p.dim()  # per-member values broadcast over the rows
            rate, on = lr.view(shape), active.view(shape)
            mom, wd = momentum.view(shape), self.weight_decay.view(shape)
            fresh, nesterov = self.fresh.view(shape), self.nesterov.view(shape)
            w, g, b = _rows(p, self.k), _rows(p.grad, self.k), _rows(buf, self.k)
            d = g + wd * w
            b.copy_(torch.where(fresh, d, mom * b + d))
            d = torch.where(nesterov, d + mom * b, b)
            w.copy_(torch.where(on, w - rate * d, w))
        self.fresh &= ~active.view(self.k, 1)
