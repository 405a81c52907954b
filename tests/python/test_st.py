import os
import tempfile
import unittest

import numpy as np

from tests.python import _util  # noqa: F401
from vmla_ref import st


class SafeTensors(unittest.TestCase):
    def test_round_trip(self):
        rng = np.random.RandomState(0)
        t = {
            "a.f32": rng.randn(3, 4).astype(np.float32),
            "b.f16": rng.randn(5).astype(np.float16),
            "c.i32": np.arange(7, dtype=np.int32).reshape(7, 1),
            "d.u8": np.arange(11, dtype=np.uint8),
            "e.scalar": np.float32(3.5).reshape(()),
            "f.empty": np.zeros((0, 3), np.float32),
        }
        meta = {"config": '{"x": 1}', "note": "h\u00e9llo"}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "t.safetensors")
            st.save(p, t, meta)
            back, m = st.load(p)
            self.assertEqual(m, meta)
            for k, v in t.items():
                self.assertEqual(back[k].dtype, v.dtype, k)
                np.testing.assert_array_equal(back[k], v)
            header, start = st.read_header(p)
            self.assertEqual(start % 8, 0)
            # the data section is contiguous: no holes between tensors (the format forbids them)
            spans = sorted(info["data_offsets"] for k, info in header.items() if k != "__metadata__")
            self.assertEqual(spans[0][0], 0)
            for (_, e), (b, _) in zip(spans, spans[1:]):
                self.assertEqual(b, e)
            self.assertEqual(os.path.getsize(p), start + spans[-1][1])

    def test_bf16(self):
        x = np.array([1.0, -2.5, 3.14159265, 1e-3, 65504.0, 0.0, 1 + 2**-8, 1 + 3 * 2**-8], np.float32)
        bits = st.f32_to_bf16_bits(x)
        # 1 + 2^-8 is a tie -> even (1.0); 1 + 3*2^-8 is a tie -> even (1 + 2^-6)
        self.assertEqual(int(bits[6]), 0x3F80)
        self.assertEqual(int(bits[7]), 0x3F82)
        self.assertEqual(int(bits[0]), 0x3F80)
        self.assertEqual(int(bits[1]), 0xC020)
        back = st.bf16_bits_to_f32(bits)
        np.testing.assert_allclose(back, x, rtol=2**-8)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "b.safetensors")
            st.save(p, {"w": x, "i": np.arange(3, dtype=np.int32)}, dtype="BF16")
            self.assertEqual(st.dtypes(p), {"w": "BF16", "i": "I32"})
            back2, _ = st.load(p)
            np.testing.assert_array_equal(back2["w"], back)
            raw, _ = st.load(p, bf16="bits")
            np.testing.assert_array_equal(raw["w"], bits)
            self.assertEqual(os.path.getsize(p), st.read_header(p)[1] + 16 + 12)

    def test_int8_group_scales(self):
        rng = np.random.RandomState(1)
        w = rng.randn(6, 96).astype(np.float32)
        w[2, 32:64] = 0.0  # an all-zero group: scale 0, values 0
        q, scale = st.quantize_int8(w, 32)
        self.assertEqual((q.dtype, scale.dtype, scale.shape), (np.int8, np.float16, (6, 3)))
        self.assertEqual(int(np.abs(q).max()), 127)
        back = st.dequantize_int8(q, scale)
        self.assertTrue(np.all(back[2, 32:64] == 0.0))
        # rounding error at most half a step of each group's scale
        step = np.repeat(scale.astype(np.float32), 32, axis=1)
        self.assertTrue(np.all(np.abs(back - w) <= 0.5 * step * (1 + 1e-3) + 1e-7))
        self.assertLess(np.linalg.norm(back - w) / np.linalg.norm(w), 0.01)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "q.safetensors")
            st.save(p, {"w": q, "w_scale": scale, "b": np.ones(6, np.float32)})
            self.assertEqual(st.dtypes(p), {"w": "I8", "w_scale": "F16", "b": "F32"})
            out, _ = st.load(p)  # dequantized on load, the scale folded in
            self.assertEqual(sorted(out), ["b", "w"])
            np.testing.assert_array_equal(out["w"], back)

    def test_int8_gptq(self):
        rng = np.random.RandomState(2)
        w = rng.randn(48, 96).astype(np.float32)
        # uncorrelated inputs of equal scale: nothing to compensate, GPTQ rounds to nearest
        q, scale = st.quantize_int8_gptq(w, np.eye(96) * 50.0, 32)
        q0, scale0 = st.quantize_int8(w, 32)
        np.testing.assert_array_equal(q, q0)
        np.testing.assert_array_equal(scale, scale0)
        # correlated inputs (a few directions carry them): the layer's outputs, not its weights, stay
        # closer to the original than rounding to nearest keeps them; the same reader and format
        x = rng.randn(4000, 8) @ rng.randn(8, 96) + 0.05 * rng.randn(4000, 96)
        q, scale = st.quantize_int8_gptq(w, x.T @ x, 32)
        self.assertEqual((q.dtype, scale.dtype, scale.shape), (np.int8, np.float16, (48, 3)))
        self.assertLessEqual(int(np.abs(q).max()), 127)
        out = lambda v: x @ v.T.astype(np.float64)
        err_gptq = np.linalg.norm(out(st.dequantize_int8(q, scale)) - out(w))
        err_nearest = np.linalg.norm(out(st.dequantize_int8(q0, scale0)) - out(w))
        self.assertLess(err_gptq, 0.5 * err_nearest)
        # a fixed point of rounding to nearest (videomla convert --dtype int8 of its f32 values)
        q2, scale2 = st.quantize_int8(st.dequantize_int8(q, scale), 32)
        np.testing.assert_array_equal(q2, q)
        np.testing.assert_array_equal(scale2, scale)
        # the weights themselves stay near: a few steps at most
        self.assertLess(np.linalg.norm(st.dequantize_int8(q, scale) - w) / np.linalg.norm(w), 0.05)
        with self.assertRaisesRegex(ValueError, "hessian"):
            st.quantize_int8_gptq(w, np.eye(32), 32)
        with self.assertRaisesRegex(ValueError, "multiple of the group"):
            st.quantize_int8_gptq(w[:, :40], np.eye(40), 32)

    def test_nan_stays_nan(self):
        b = st.f32_to_bf16_bits(np.array([np.nan, np.inf, -np.inf], np.float32))
        back = st.bf16_bits_to_f32(b)
        self.assertTrue(np.isnan(back[0]))
        self.assertEqual(back[1], np.inf)
        self.assertEqual(back[2], -np.inf)


if __name__ == "__main__":
    unittest.main()
