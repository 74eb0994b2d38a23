"""Whole-sequence buffers of the CPU scans, kept between calls and reused.

:class:`~tracetorch.autograd.LeakyScan` writes its outputs, and the sequences its backward
needs, into ``[T, ...]`` buffers of a few megabytes each. On the CPU a fresh buffer of that
size costs a page fault per 4 KiB page the first time it is written: the C allocator maps
large blocks anew and hands freed ones back to the operating system, so a training loop pays
the faults at every call (measured on the network of ``benchmarks/sequence.py``, batch 64:
800 to 1,600 faults per training step, and about 7 % of its time at T = 25, 18 % at
T = 100). So the scans take their buffers from this cache: a buffer is handed out again
once no tensor uses its memory any more (the outputs the caller kept, the tensors autograd
saved and the gradients it passed on all count as uses), and a buffer still in use is never
handed out twice.

The cache holds at most :func:`cache_limit` bytes (1 GiB unless :func:`set_cache_limit` says
otherwise), dropping the buffers of the shapes used least recently first, and only CPU
buffers of at least 128 KiB (smaller ones the allocator recycles without faults; the GPU
allocators cache on their own). :func:`empty_cache` lets every cached buffer go. Holding
buffers is the cost: after a training step the memory of its sequences stays reserved for
the next one, as PyTorch's CUDA allocator keeps its blocks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from torch import Tensor

__all__ = ["cache_limit", "empty_cache", "sequence_buffer", "set_cache_limit"]

_MIN_BYTES = 128 * 1024  # glibc's default mmap threshold: smaller blocks come from its heap

# A private torch function: without it the cache stays off (every call allocates anew)
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _use_count(tensor: Tensor) -> int:
    """How many references the memory of ``tensor`` has (tensors, views, storage objects)."""
    return _storage_use_count(tensor.untyped_storage()._cdata)


# The count of a buffer that the cache alone holds: the cached tensor, plus the storage
# object the count is read through
_ALONE = _use_count(torch.empty(1)) if _storage_use_count is not None else -1

_Key = tuple[torch.Size, tuple[int, ...], torch.dtype, bool]
_lock = threading.Lock()
_buffers: OrderedDict[_Key, list[Tensor]] = OrderedDict()  # least recently used first
_held = 0  # bytes of the cached buffers, in use or not
_limit = 1 << 30


def sequence_buffer(like: Tensor) -> Tensor:
    """An uninitialized tensor shaped like ``like``, from the cache where one is free.

    The same as ``torch.empty_like(like)`` (its values are garbage, its strides those
    ``empty_like`` gives), but a dense CPU tensor of at least 128 KiB comes from the cache
    when it holds a free one of the same shape, strides and dtype, and a new one is added to
    it.

    Args:
        like: The tensor whose shape, strides, dtype and device the buffer takes.

    Returns:
        A tensor that no other live tensor shares memory with.

    Example:
        >>> from tracetorch.autograd import sequence_buffer
        >>> like = torch.zeros(25, 64, 256)
        >>> first = sequence_buffer(like)
        >>> address = first.data_ptr()
        >>> del first  # nothing uses it any more: the next call hands it out again
        >>> sequence_buffer(like).data_ptr() == address
        True
    """
    nbytes = like.numel() * like.element_size()
    if (
        nbytes < _MIN_BYTES
        or nbytes > _limit
        or like.device.type != "cpu"
        or like.layout != torch.strided
        or type(like) is not Tensor
        or _ALONE < 0
    ):
        return torch.empty_like(like)
    # inference tensors cannot be saved for a backward: they get buffers of their own
    key = (like.shape, like.stride(), like.dtype, torch.is_inference_mode_enabled())
    global _held
    with _lock:
        buffers = _buffers.get(key)
        if buffers is not None:
            _buffers.move_to_end(key)
            for buffer in buffers:
                if _use_count(buffer) == _ALONE:
                    return buffer.detach()  # a new tensor on the same memory: in use now
        buffer = torch.empty_like(like)
        _drop_until(_limit - nbytes)
        _buffers.setdefault(key, []).append(buffer)
        _held += nbytes
        return buffer.detach()


def empty_cache() -> None:
    """Drops every cached buffer; its memory is freed once no tensor uses it.

    Example:
        >>> from tracetorch.autograd import empty_cache
        >>> empty_cache()
    """
    global _held
    with _lock:
        _buffers.clear()
        _held = 0


def cache_limit() -> int:
    """The most bytes the cache of sequence buffers holds (see :func:`set_cache_limit`).

    Example:
        >>> from tracetorch.autograd import cache_limit
        >>> cache_limit() >= 0
        True
    """
    return _limit


def set_cache_limit(nbytes: int) -> int:
    """Sets the most bytes the cache of sequence buffers holds; ``0`` turns it off.

    Buffers beyond the new limit are dropped, least recently used shapes first.

    Args:
        nbytes: The limit in bytes, ``>= 0``. The default is ``2**30`` (1 GiB).

    Returns:
        The previous limit.

    Raises:
        ValueError: If ``nbytes`` is negative or not an integer.

    Example:
        >>> from tracetorch.autograd import set_cache_limit
        >>> previous = set_cache_limit(0)  # every scan allocates its buffers anew
        >>> _ = set_cache_limit(previous)
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"set_cache_limit: expected a number of bytes >= 0, got {nbytes!r}")
    global _limit
    with _lock:
        previous, _limit = _limit, nbytes
        _drop_until(nbytes)
    return previous


def _drop_until(held: int) -> None:
    """Drops cached buffers, least recently used shapes first, until at most ``held`` bytes
    are cached (the caller holds the lock)."""
    global _held
    for key in list(_buffers):
        if _held <= held:
            return
        kept = _buffers[key]
        while kept and _held > held:
            dropped = kept.pop(0)
            _held -= dropped.numel() * dropped.element_size()
        if not kept:
            del _buffers[key]
