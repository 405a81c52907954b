"""Counter-based Gaussian noise, identical on every backend (docs/MODEL.md section 5).

Philox4x32-10 (Salmon et al., Random123) in numpy: uint32 lanes held in uint64 arrays so that the
32x32->64 multiplications are exact. Element e of chunk c's latent at step s uses the pair
q = e // 2: counter (q mod 2^32, q >> 32, c, s), key (seed mod 2^32, seed >> 32); Box-Muller in
float64 on (r0, r1), rounded to float32.
"""
import numpy as np

M32 = np.uint64(0xFFFFFFFF)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
TWO_PI = 6.283185307179586  # the double nearest to 2*pi
INV_2_32 = 2.3283064365386963e-10  # 2^-32, exact


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds. Arguments are integers or arrays (broadcast); returns four uint64
    arrays holding the uint32 outputs."""
    c0, c1, c2, c3, k0, k1 = (np.asarray(v, dtype=np.uint64) & M32 for v in (c0, c1, c2, c3, k0, k1))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    for r in range(10):
        if r:
            k0 = (k0 + PHILOX_W0) & M32
            k1 = (k1 + PHILOX_W1) & M32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32)
    return c0, c1, c2, c3


def gaussian(shape, seed, chunk, step):
    """Standard normal float32 array of `shape` for (seed, chunk, step), row-major element order."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape, dtype=np.int64))
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    nq = (n + 1) // 2
    q = np.arange(nq, dtype=np.uint64)
    r0, r1, _, _ = philox4x32_10(q & M32, q >> np.uint64(32), int(chunk) & 0xFFFFFFFF, int(step) & 0xFFFFFFFF,
                                 seed & 0xFFFFFFFF, seed >> 32)
    u1 = (r0.astype(np.float64) + 0.5) * INV_2_32
    u2 = (r1.astype(np.float64) + 0.5) * INV_2_32
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = TWO_PI * u2
    out = np.empty(2 * nq, dtype=np.float64)
    out[0::2] = radius * np.cos(angle)
    out[1::2] = radius * np.sin(angle)
    return out[:n].astype(np.float32).reshape(shape)
