"""A stand-in for the parts of torch that moelora.ops touches, holding no data:
strided tensors with fake CUDA addresses. Lets a machine without torch or a
GPU run the drop-in's argument building through the real C library (which
validates every argument, then reports MOELORA_ERROR_NO_DEVICE). Install with
`sys.modules["torch"] = fake_torch` before importing moelora.ops' callers."""

import contextlib
import itertools
import math


class dtype:
    def __init__(self, name, itemsize):
        self.name, self.itemsize = name, itemsize

    def __repr__(self):
        return f"torch.{self.name}"


bfloat16 = dtype("bfloat16", 2)
float16 = dtype("float16", 2)
half = float16
float32 = dtype("float32", 4)
float64 = dtype("float64", 8)
int32 = dtype("int32", 4)
int64 = dtype("int64", 8)
uint8 = dtype("uint8", 1)


class device:
    def __init__(self, type_, index=None):
        if isinstance(type_, device):
            type_, index = type_.type, type_.index
        elif isinstance(type_, str) and ":" in type_:
            type_, index = type_.split(":")[0], int(type_.split(":")[1])
        self.type = type_
        self.index = (0 if index is None else index) if type_ == "cuda" else None

    def __eq__(self, other):
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        return f"{self.type}:{self.index}" if self.index is not None else self.type


class Size(tuple):
    pass


_addr = itertools.count(1 << 40, 1 << 24)  # 16 MiB apart, 512-aligned


def _contig_strides(shape):
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(int(s), 1)
    return tuple(reversed(strides))


class Tensor:
    def __init__(self, shape, dt, dev, strides=None, base=None, offset=0, value=None):
        self.shape = Size(int(s) for s in shape)
        self.dtype = dt
        self.device = device(dev) if not isinstance(dev, device) else dev
        self._strides = tuple(strides) if strides is not None else _contig_strides(self.shape)
        self._base = next(_addr) if base is None else base
        self._offset = offset
        self._value = value

    # -- metadata --
    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def dim(self):
        return len(self.shape)

    @property
    def ndim(self):
        return len(self.shape)

    def numel(self):
        return math.prod(self.shape)

    def stride(self, i=None):
        return self._strides if i is None else self._strides[i]

    def data_ptr(self):
        return self._base + self._offset * self.dtype.itemsize

    def size(self, i=None):
        return self.shape if i is None else self.shape[i]

    def is_contiguous(self):
        expect = _contig_strides(self.shape)
        return all(st == ex for st, ex, n in zip(self._strides, expect, self.shape) if n > 1)

    def item(self):
        assert self.numel() == 1
        return self._value[0] if isinstance(self._value, list) else self._value

    def tolist(self):
        return list(self._value)

    # -- views --
    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], dtype):
            dt = shape[0]
            assert self.is_contiguous()
            n = self.numel() * self.dtype.itemsize // dt.itemsize
            return Tensor((n,), dt, self.device, base=self._base,
                          offset=self._offset * self.dtype.itemsize // dt.itemsize)
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = list(shape)
        if -1 in shape:
            i = shape.index(-1)
            rest = math.prod(s for j, s in enumerate(shape) if j != i)
            shape[i] = self.numel() // rest
        assert math.prod(shape) == self.numel(), (shape, self.shape)
        assert self.is_contiguous(), "fake view needs a contiguous tensor"
        return Tensor(shape, self.dtype, self.device, base=self._base, offset=self._offset,
                      value=self._value)

    reshape = view

    def __getitem__(self, idx):
        if not isinstance(idx, tuple):
            idx = (idx,)
        if Ellipsis in idx:
            i = idx.index(Ellipsis)
            fill = (slice(None),) * (self.dim() - (len(idx) - 1))
            idx = idx[:i] + fill + idx[i + 1:]
        idx = idx + (slice(None),) * (self.dim() - len(idx))
        shape, strides, offset = [], [], self._offset
        for n, st, ix in zip(self.shape, self._strides, idx):
            if isinstance(ix, int):
                offset += (ix % n) * st
                continue
            start, stop, step = ix.indices(n)
            offset += start * st
            shape.append(max(0, (stop - start + step - 1) // step))
            strides.append(st * step)
        return Tensor(shape, self.dtype, self.device, strides, self._base, offset)

    def transpose(self, a, b):
        shape, strides = list(self.shape), list(self._strides)
        shape[a], shape[b] = shape[b], shape[a]
        strides[a], strides[b] = strides[b], strides[a]
        return Tensor(shape, self.dtype, self.device, strides, self._base, self._offset)

    def t(self):
        return self.transpose(0, 1)

    # -- copies (fresh fake storage) --
    def _new(self, dt=None, dev=None):
        return Tensor(self.shape, dt or self.dtype, dev or self.device, value=self._value)

    def contiguous(self):
        return self if self.is_contiguous() else self._new()

    def clone(self):
        return self._new()

    def to(self, x):
        if isinstance(x, dtype):
            return self if x is self.dtype else self._new(dt=x)
        return self._new(dev=device(x))

    def cpu(self):
        return self._new(dev=device("cpu"))

    def float(self):
        return self._new(dt=float32)

    def half(self):
        return self._new(dt=float16)

    def long(self):
        return self._new(dt=int64)

    def int(self):
        return self._new(dt=int32)

    # -- in-place ops: no data, nothing to do --
    def copy_(self, other):
        return self

    def fill_(self, v):
        return self

    def zero_(self):
        return self


def _shape_of(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def empty(*shape, dtype=float32, device="cpu"):
    return Tensor(_shape_of(shape), dtype, device)


def zeros(*shape, dtype=float32, device="cpu"):
    return Tensor(_shape_of(shape), dtype, device)


def full(shape, value, dtype=float32, device="cpu"):
    return Tensor(_shape_of((shape,)), dtype, device)


def tensor(values, dtype=int64, device="cpu"):
    values = list(values)
    return Tensor((len(values),), dtype, device, value=values)


class _Stream:
    cuda_stream = 0


class cuda:  # namespace
    _capturing = False

    @staticmethod
    def is_available():
        return True

    @staticmethod
    def current_device():
        return 0

    @staticmethod
    def device_count():
        return 1

    @staticmethod
    def device(index):
        return contextlib.nullcontext()

    @staticmethod
    def synchronize(index=None):
        pass

    @staticmethod
    def is_current_stream_capturing():
        return cuda._capturing

    @staticmethod
    def current_stream(dev=None):
        return _Stream()

    @staticmethod
    def is_initialized():
        return True
