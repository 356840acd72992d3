"""The running batch's KV cache: one left-padded tensor pair per layer.

Rows are right-aligned: column `width - 1` holds every row's latest token, and a row's
shorter history is padded on the left and masked out. Newcomers are prefilled on their
own, then either written into a retired row's slot in place (`place`) or padded to the
common width and concatenated along the batch dimension (`extend`). A finished row is
masked out in place (`retire`); `keep` later drops retired rows and all-padding columns
in one copy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

HEADROOM = 64  # columns reserved ahead, so most decode steps write in place


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A DynamicLayer that appends into a buffer with spare columns instead of `torch.cat`.

    DynamicLayer copies the whole layer cache on every decode step; this writes one column.
    `keys` / `values` stay views of the filled part, so everything reading them (masks,
    `get_seq_length`, PaddedKV) sees a plain [rows, heads, width, head_dim] tensor. When
    someone replaces `keys` (PaddedKV after a merge or a trim), the next update copies it
    into a fresh buffer.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self.keys is None or self.values is None:
            self.lazy_initialization(key_states, value_states)
            assert self.keys is not None and self.values is not None
        width = int(self.keys.shape[-2]) if self.keys.dim() == 4 else 0
        new = int(key_states.shape[-2])
        kbuf, vbuf = self._key_buffer, self._value_buffer
        if (
            kbuf is None
            or vbuf is None
            or width + new > kbuf.shape[-2]
            or kbuf.shape[0] != key_states.shape[0]
            or not _is_prefix_view(self.keys, kbuf)
            or not _is_prefix_view(self.values, vbuf)
        ):
            kbuf = _buffer_like(self.keys, key_states, width + new + HEADROOM)
            vbuf = _buffer_like(self.values, value_states, width + new + HEADROOM)
            self._key_buffer, self._value_buffer = kbuf, vbuf
        kbuf[:, :, width : width + new] = key_states
        vbuf[:, :, width : width + new] = value_states
        self.keys, self.values = kbuf[:, :, : width + new], vbuf[:, :, : width + new]
        return self.keys, self.values


def _is_prefix_view(view: torch.Tensor, buffer: torch.Tensor) -> bool:
    return view.data_ptr() == buffer.data_ptr() and view.stride() == buffer.stride()


def _buffer_like(filled: torch.Tensor, new: torch.Tensor, capacity: int) -> torch.Tensor:
    rows, heads, _, dim = new.shape
    buffer = torch.empty((rows, heads, capacity, dim), dtype=new.dtype, device=new.device)
    if filled.numel():
        buffer[:, :, : filled.shape[-2]] = filled
    return buffer


def new_cache(num_layers: int) -> DynamicCache:
    """An empty cache whose layers append in place."""
    cache = DynamicCache()
    cache.layers = [GrowingLayer() for _ in range(num_layers)]
    cache.layer_class_to_replicate = None
    return cache


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

    def retire(self, row: int) -> None:
        """Mask a finished row out without copying the cache; its slot can be refilled
        in place (`place`) or dropped by the next `keep`. A retired row attends only to
        the column each decode step appends, so it never has an all-masked row."""
        assert self.mask is not None
        self.mask[row] = 0

    def place(self, row: int, cache: DynamicCache, source: int, mask: torch.Tensor) -> bool:
        """Write row `source` of a separately prefilled `cache` (with its `mask` row) into
        the retired slot `row`, in place. False when it is wider than the batch."""
        assert self.cache is not None and self.mask is not None
        width, theirs = self.width, int(mask.shape[0])
        if theirs > width:
            return False
        start = width - theirs
        for (_, keys, values), (_, new_keys, new_values) in zip(
            kv_tensors(self.cache), kv_tensors(cache), strict=True
        ):
            keys[row, :, :start] = 0
            values[row, :, :start] = 0
            keys[row, :, start:] = new_keys[source]
            values[row, :, start:] = new_values[source]
        self.mask[row] = 0
        self.mask[row, start:] = mask
        return True

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
