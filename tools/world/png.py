"""Minimal PNG writer (RGB uint8) with zlib, for contact sheets and docs."""
import struct
import zlib

import numpy as np


def write_png(path, rgb):
    """rgb: uint8 array [H, W, 3] (or float in [0, 1])."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def contact_sheet(video, every=8):
    """video [B, T, 3, H, W] in [0, 1] (torch or numpy) -> [B*H, (T//every)*W, 3] array."""
    v = video.detach().cpu().numpy() if hasattr(video, "detach") else np.asarray(video)
    v = v[:, ::every]
    B, T, C, H, W = v.shape
    return v.transpose(0, 3, 1, 4, 2).reshape(B * H, T * W, C)
