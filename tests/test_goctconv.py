import pytest
import torch
import torch.nn.functional as F

from sodlab.errors import ConfigError
from sodlab.models.goctconv import GOctConv, GOctConvBNAct, ScaleDepthwiseBNAct


def test_parameters_equal_a_plain_convolution():
    conv = GOctConv([12, 4], [6, 10], kernel_size=3)
    assert sum(p.numel() for p in conv.parameters()) == 16 * 16 * 9


def test_single_scale_is_an_ordinary_strided_convolution():
    torch.manual_seed(0)
    conv = GOctConv([5], [7], kernel_size=3, stride=2, gain=100.0)
    x = torch.randn(2, 5, 16, 16)
    ref = F.conv2d(x, conv.weight * 100.0, None, 2, 1)
    assert torch.equal(conv(x)[0], ref)


def test_cross_scale_blocks_match_their_definition():
    torch.manual_seed(0)
    conv = GOctConv([3, 2], [4, 5], kernel_size=1)
    hi, lo = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 4, 4)
    w = conv.weight
    y_hi = F.conv2d(hi, w[:4, :3]) + F.interpolate(F.conv2d(lo, w[:4, 3:]), scale_factor=2, mode="bilinear", align_corners=False)
    y_lo = F.conv2d(F.max_pool2d(hi, 2, 2), w[4:, :3]) + F.conv2d(lo, w[4:, 3:])
    out = conv([hi, lo])
    assert torch.allclose(out[0], y_hi, atol=1e-6) and torch.allclose(out[1], y_lo, atol=1e-6)


def test_stride_two_average_pools_every_input_first():
    torch.manual_seed(0)
    conv = GOctConv([3, 2], [4], kernel_size=3, stride=2)
    hi, lo = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 4, 4)
    w = conv.weight
    ref = F.conv2d(F.avg_pool2d(hi, 2), w[:, :3], padding=1) + F.interpolate(
        F.conv2d(F.avg_pool2d(lo, 2), w[:, 3:], padding=1), scale_factor=2, mode="bilinear", align_corners=False
    )
    assert torch.allclose(conv([hi, lo])[0], ref, atol=1e-6)


def test_absent_scales_travel_as_none():
    conv = GOctConvBNAct([4, 0], [0, 3, 2], kernel_size=1)
    out = conv([torch.randn(1, 4, 8, 8), None])
    assert out[0] is None and out[1].shape == (1, 3, 4, 4) and out[2].shape == (1, 2, 2, 2)
    assert "0" not in conv.norms and set(conv.norms) == {"1", "2"}


def test_bilinear_resampling_follows_the_target_inputs_size():
    conv = GOctConv([2, 2], [3, 3], resample="bilinear")
    out = conv([torch.randn(1, 2, 10, 14), torch.randn(1, 2, 3, 5)])
    assert out[0].shape[-2:] == (10, 14) and out[1].shape[-2:] == (3, 5)


def test_depthwise_keeps_scales_separate():
    dw = ScaleDepthwiseBNAct([3, 2]).eval()
    a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 4, 4)
    out1 = dw([a, b])
    out2 = dw([a, torch.randn(1, 2, 4, 4)])
    assert torch.equal(out1[0], out2[0]) and not torch.equal(out1[1], out2[1])
    assert dw.convs["0"].weight.shape == (3, 1, 3, 3)


@pytest.mark.parametrize("bad", [[-1, 2], [1.5, 2], [0, 0]])
def test_bad_channel_counts_are_config_errors(bad):
    with pytest.raises(ConfigError):
        GOctConv(bad, [2])
