from __future__ import annotations

import pytest
import torch

from objectives import models


@pytest.mark.parametrize(("shape", "classes"), [((3, 32, 32), 10), ((1, 28, 28), 10),
                                                ((3, 32, 32), 100), ((3, 17, 23), 5)])
def test_output_shape(shape, classes):
    net = models.make(width=(4, 8, 8), in_channels=shape[0], classes=classes,
                      image_size=shape[1])
    assert net(torch.randn(2, *shape)).shape == (2, classes)


def test_structure_follows_airbench():
    net = models.make(width=(8, 16, 32))
    blocks = list(net.blocks)
    assert [b.conv1.out_channels for b in blocks] == [8, 16, 32]
    assert net.stem[0].out_channels == 24 and net.stem[0].kernel_size == (2, 2)
    assert net.head.in_features == 32 and net.head.bias is None
    names = [type(m).__name__ for m in blocks[0].children()]
    assert names == ["Conv", "MaxPool2d", "BatchNorm", "Conv", "BatchNorm", "GELU"]


def test_batchnorm_scale_is_fixed_and_logits_start_small():
    torch.manual_seed(0)
    net = models.make(width=(8, 16, 16))
    frozen = [p for n, p in net.named_parameters() if n.endswith("norm1.weight")]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert net(torch.randn(16, 3, 32, 32)).abs().max() < 3.0


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    net = models.make(width=(8, 16, 16)).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = net(x)
    net = net.to(memory_format=torch.channels_last)
    out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_default_width_is_airbench():
    assert models.DEFAULT_WIDTH == (64, 256, 256)
    assert [b.conv2.out_channels for b in models.make().blocks] == [64, 256, 256]


def test_unknown_name_and_bad_width():
    with pytest.raises(ValueError, match="must be one of airbench but got 'resnet'"):
        models.make("resnet")
    with pytest.raises(ValueError, match="width must be 3 positive"):
        models.make(width=(8, 16))
    with pytest.raises(ValueError, match="image_size must be at least 9"):
        models.make(image_size=8)
