"""The running batch's KV cache: one left-padded tensor pair per layer.

Rows are right-aligned: column `width - 1` holds every row's latest token, and a row's
shorter history is padded on the left and masked out. Newcomers are prefilled on their
own, then padded to the common width and concatenated along the batch dimension;
finished rows are dropped with `index_select` and all-padding columns are trimmed, so
the width is always the longest live row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def kv_tensors(cache: DynamicCache) -> list[tuple[DynamicLayer, torch.Tensor, torch.Tensor]]:
    """Each layer with its key and value tensors ([rows, heads, width, head_dim])."""
    found = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError(f"expected filled full-attention cache layers, got {layer!r}")
        found.append((layer, layer.keys, layer.values))
    return found


def map_kv(cache: DynamicCache, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace every key and value tensor `t` with `fn(t)`."""
    for layer, keys, values in kv_tensors(cache):
        layer.keys, layer.values = fn(keys), fn(values)


def _left_pad(t: torch.Tensor, columns: int) -> torch.Tensor:
    """Pad dim -2 of a [B, H, T, D] tensor (or dim -1 of a [B, T] mask) on the left."""
    if columns == 0:
        return t
    if t.dim() == 2:
        return F.pad(t, (columns, 0))
    return F.pad(t, (0, 0, columns, 0))


class PaddedKV:
    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, width], 1 = real token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def clear(self) -> None:
        self.cache = None
        self.mask = None

    def decode_mask(self) -> torch.Tensor:
        """The attention mask for one more token per row (the cache grows by one column)."""
        assert self.mask is not None
        ones = torch.ones((self.rows, 1), dtype=self.mask.dtype)
        return torch.cat([self.mask, ones], dim=1)

    def advance(self, mask: torch.Tensor) -> None:
        """Record that the model appended one column to the cache under `mask`."""
        self.mask = mask

    def extend(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append rows prefilled on their own (`cache` and `mask` share a width)."""
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, mask
            return
        width = max(self.width, int(mask.shape[1]))
        mine, theirs = width - self.width, width - int(mask.shape[1])
        for (layer, keys, values), (_, new_keys, new_values) in zip(
            kv_tensors(self.cache), kv_tensors(cache), strict=True
        ):
            layer.keys = torch.cat([_left_pad(keys, mine), _left_pad(new_keys, theirs)])
            layer.values = torch.cat([_left_pad(values, mine), _left_pad(new_values, theirs)])
        self.mask = torch.cat([_left_pad(self.mask, mine), _left_pad(mask, theirs)])

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows (in this order), then trim all-padding columns."""
        if not indices:
            self.clear()
            return
        assert self.cache is not None and self.mask is not None
        if indices == list(range(self.rows)):
            return
        index = torch.tensor(indices, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(dim=0).int().argmax())
        self.mask = mask[:, first:]
        map_kv(self.cache, lambda t: t.index_select(0, index)[:, :, first:])
