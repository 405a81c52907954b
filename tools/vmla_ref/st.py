"""Minimal safetensors reader/writer on numpy (docs/MODEL.md section 8).

Layout: 8-byte little-endian header length N, N bytes of JSON header
({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}), then the raw
little-endian tensor data; offsets are relative to the start of the data. BF16 has no numpy dtype:
it is written from float32 (round to nearest even) and read back as float32, or as raw uint16 bits.
"""
import json
import os
import struct

import numpy as np

_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def f32_to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    out = rounded.astype(np.uint16)
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dtype_name(a):
    for k, v in _NP.items():
        if a.dtype == np.dtype(v):
            return k
    raise TypeError(f"unsupported dtype {a.dtype}")


def _to_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "detach"):  # torch tensor
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def save(path, tensors, metadata=None, dtype=None):
    """Writes `tensors` (name -> numpy array or torch tensor) to `path` atomically.

    dtype: None (keep each array's dtype), or "F32"/"F16"/"BF16" applied to floating tensors, or a
    dict name -> dtype name. Tensors are written in sorted name order, back to back: the format
    forbids holes in the data section (readers such as the engine's reject them).
    """
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = _to_numpy(tensors[name])
        want = dtype.get(name) if isinstance(dtype, dict) else dtype
        if want is not None and np.issubdtype(a.dtype, np.floating):
            kind = want
        else:
            kind = _dtype_name(a)
        if kind == "BF16":
            raw = f32_to_bf16_bits(a.astype(np.float32)).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(a.astype(np.dtype(_NP[kind]).newbyteorder("<"))).tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
    return header, 8 + n


QUANT_SCALE_SUFFIX = "_scale"  # int8 tensor NAME has its per-group scales in NAME_scale


def int8_scales(a, group=32):
    """The float16 scale of each `group` consecutive values of a row: their largest magnitude / 127."""
    a = np.asarray(a, dtype=np.float32)
    return (np.abs(a.reshape(a.shape[0], -1, group)).max(axis=2) / 127.0).astype(np.float16)


def quantize_int8(a, group=32):
    """Symmetric int8 with one scale per `group` consecutive values of a row (rows: the first
    dimension) -> (q int8, scale float16 [rows, row_size / group]); value = q * scale. The scale is
    rounded to float16 before the values are, so that q * scale is what a reader reconstructs."""
    a = np.asarray(a, dtype=np.float32)
    g = a.reshape(a.shape[0], -1, group)
    scale = int8_scales(a, group)
    s = scale.astype(np.float32)[:, :, None]
    q = np.where(s > 0, np.rint(g / np.where(s > 0, s, 1.0)), 0.0)
    return np.clip(q, -127, 127).astype(np.int8).reshape(a.shape), scale


def quantize_int8_gptq(a, hessian, group=32, damp=0.01):
    """quantize_int8's format and scales (the same reader), the values rounded by GPTQ (Frantar et
    al. 2022) instead of to nearest: column by column (the row's input features), each column's
    rounding error is carried into the columns not yet rounded, weighted by the inverse of `hessian`
    (sum of x x^T over calibration inputs x of this linear layer, [cols, cols]), so that the layer's
    outputs on such inputs, not its weights, stay closest to the original. The scales are
    quantize_int8's (the groups' largest original values / 127), and each group's largest value is
    rounded to +-127 whatever the carried errors made of it: the result is a fixed point of
    quantize_int8 (dequantized and quantized again, as `videomla convert --dtype int8` does, it
    gives the same values). `damp`: fraction of the mean diagonal added to it (a stable inverse)."""
    w = np.array(a, dtype=np.float64)
    rows, cols = w.shape
    if cols % group:
        raise ValueError(f"quantize_int8_gptq: {cols} columns are not a multiple of the group {group}")
    h = np.array(hessian, dtype=np.float64)
    if h.shape != (cols, cols):
        raise ValueError(f"quantize_int8_gptq: hessian {h.shape} for a weight of {cols} columns")
    scale = int8_scales(a, group)
    top = np.abs(w.reshape(rows, -1, group)).argmax(axis=2)  # [rows, groups]: the column of the largest
    dead = np.diag(h) <= 0  # an input that never varied: nothing to protect there
    h[dead, dead] = 1.0
    h[np.diag_indices(cols)] += damp * float(np.mean(np.diag(h)))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: inv(h) = u^T u
    q = np.zeros((rows, cols), dtype=np.int8)
    for i in range(cols):
        s = scale[:, i // group].astype(np.float64)
        qi = np.clip(np.where(s > 0, np.rint(w[:, i] / np.where(s > 0, s, 1.0)), 0.0), -127, 127)
        largest = (top[:, i // group] == i % group) & (s > 0)
        qi[largest] = np.where(w[largest, i] < 0, -127.0, 127.0)
        q[:, i] = qi
        err = (w[:, i] - qi * s) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return q, scale


def dequantize_int8(q, scale):
    rows = q.shape[0]
    g = q.reshape(rows, scale.shape[1], -1).astype(np.float32)
    return (g * scale.astype(np.float32)[:, :, None]).reshape(q.shape)


def load(path, bf16="f32"):
    """Returns (tensors: name -> numpy array, metadata: dict). bf16: "f32" converts BF16 tensors to
    float32, "bits" returns their raw uint16 bits. An I8 tensor with a NAME_scale companion is
    returned dequantized to float32 (the companion is not returned)."""
    header, start = read_header(path)
    meta = header.pop("__metadata__", {}) or {}
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        kind, shape = info["dtype"], tuple(info["shape"])
        if e - b != _SIZE[kind] * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name}: {e - b} bytes for {kind}{list(shape)}")
        if kind == "BF16":
            bits = np.frombuffer(data[b:e], dtype="<u2").reshape(shape)
            out[name] = bf16_bits_to_f32(bits) if bf16 == "f32" else bits.copy()
        else:
            out[name] = np.frombuffer(data[b:e], dtype=np.dtype(_NP[kind]).newbyteorder("<")).reshape(shape).copy()
    for name in [n for n, info in header.items() if info["dtype"] == "I8" and n + QUANT_SCALE_SUFFIX in header]:
        out[name] = dequantize_int8(out[name], out.pop(name + QUANT_SCALE_SUFFIX))
    return out, meta


def dtypes(path):
    header, _ = read_header(path)
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
