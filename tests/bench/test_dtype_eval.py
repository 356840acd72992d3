"""The dtype evaluation's own parts: the weight-only int8 layer it measures and the
first-divergence count."""

from __future__ import annotations

import torch

from bench.dtype_eval import Int8WeightLinear, first_divergence, quantize_int8


def test_weight_only_int8_linear_stays_close_to_the_float_layer() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(2, 5, 64)

    with torch.inference_mode():
        exact, quantized = linear(x), Int8WeightLinear(linear)(x)

    assert quantized.shape == exact.shape and quantized.dtype == torch.float32
    assert (quantized - exact).abs().max() < 0.02 * exact.abs().max()


def test_quantize_int8_replaces_every_linear_layer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    quantize_int8(model)

    assert [type(m).__name__ for m in model] == ["Int8WeightLinear", "ReLU", "Int8WeightLinear"]
    assert model[0].weight.dtype == torch.int8


def test_first_divergence_is_the_first_differing_index_or_the_shorter_length() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2
