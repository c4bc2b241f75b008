"""Small image classifiers. The default is airbench-style (KellerJordan/cifar10-airbench).

A 2x2 conv stem, then three blocks of conv -> maxpool2 -> BatchNorm -> GELU -> conv ->
BatchNorm -> GELU, a global max pool and a linear head whose output is scaled down. `width`
sets the channels of the three blocks: (64, 256, 256) is airbench's GPU size, (16, 32, 32)
trains in seconds per epoch on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from objectives.settings import DEFAULT_WIDTH

__all__ = ["DEFAULT_WIDTH", "NETS", "AirbenchNet", "make"]



class Conv(nn.Conv2d):
    """3x3 'same' conv without bias (BatchNorm follows), started near the identity."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # Dirac init on the first c_in output channels: a deep stack starts as a near-identity
        # map for them, which makes the short, high-LR runs a search does train stably.
        w = self.weight.data
        torch.nn.init.dirac_(w[: min(w.size(0), w.size(1))])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a learned shift (as airbench)."""

    def __init__(self, channels: int, momentum: float = 0.4) -> None:
        # torch's momentum is the weight of the new batch; runs are short, so stats move fast.
        super().__init__(channels, momentum=momentum)
        self.weight.requires_grad_(False)


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(c_in, c_out), nn.MaxPool2d(2), BatchNorm(c_out)
        self.conv2, self.norm2, self.act = Conv(c_out, c_out), BatchNorm(c_out), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """Conv stem, three blocks, global max pool, linear head times `output_scale`."""

    def __init__(
        self,
        width: Sequence[int] = DEFAULT_WIDTH,
        in_channels: int = 3,
        classes: int = 10,
        image_size: int = 32,
        output_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        if len(width) != 3 or min(width) < 1:
            raise ValueError(f"width must be 3 positive channel counts but got {tuple(width)}")
        if image_size < 9:  # the stem takes 1 pixel, then three max pools halve it
            raise ValueError(f"image_size must be at least 9 but got {image_size}")
        stem = 2 * in_channels * 4  # as airbench: 2 x (channels x 2x2 patch)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, kernel_size=2), nn.GELU())
        chans = [stem, *width]
        self.blocks = nn.Sequential(*(Block(a, b) for a, b in zip(chans, chans[1:], strict=False)))
        self.head = nn.Linear(width[-1], classes, bias=False)
        # A small output scale keeps the initial logits near zero, so early steps at a high LR
        # do not saturate the softmax.
        self.output_scale = output_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = torch.amax(x, dim=(2, 3))  # global max pool: any image size
        return self.head(x) * self.output_scale


NETS: dict[str, Callable[..., nn.Module]] = {"airbench": AirbenchNet}


def make(
    name: str = "airbench",
    *,
    width: Sequence[int] = DEFAULT_WIDTH,
    in_channels: int = 3,
    classes: int = 10,
    image_size: int = 32,
    **kwargs: object,
) -> nn.Module:
    """Build net `name` from NETS; an unknown name lists the valid ones."""
    try:
        net = NETS[name]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(NETS)} but got {name!r}") from None
    return net(
        width=tuple(width), in_channels=in_channels, classes=classes, image_size=image_size,
        **kwargs,
    )
