import os
import tempfile
import unittest

import numpy as np
import torch

from tests.python import _util
from vmla_ref import init as vinit
from vmla_ref import st

NAMES = ["ref_mla_model.safetensors", "ref_mha_model.safetensors", "ref_mla_rollout.safetensors",
         "ref_mha_rollout.safetensors"]


class Fixtures(unittest.TestCase):
    def test_small(self):
        total = sum(os.path.getsize(os.path.join(_util.FIXTURES, n)) for n in os.listdir(_util.FIXTURES))
        self.assertLess(total, 3_000_000)

    def test_reproducible(self):
        with tempfile.TemporaryDirectory() as d:
            _util.make_fixtures.write_all(d)
            for n in NAMES:
                new, new_meta = st.load(os.path.join(d, n))
                old, old_meta = st.load(os.path.join(_util.FIXTURES, n))
                self.assertEqual(new_meta, old_meta, n)
                self.assertEqual(sorted(new), sorted(old), n)
                self.assertEqual(st.dtypes(os.path.join(d, n)), st.dtypes(os.path.join(_util.FIXTURES, n)))
                for k in old:
                    if "model" in n:
                        np.testing.assert_array_equal(new[k], old[k], err_msg=f"{n}:{k}")
                    else:  # float64 BLAS may differ in the last bits across machines
                        np.testing.assert_allclose(new[k], old[k], rtol=1e-6, atol=1e-6, err_msg=f"{n}:{k}")

    def test_shipped_model_fixture_reproducible(self):
        """The shipped model's rollout fixture belongs to the model file in resources/models."""
        name = "shipped_mla_rollout.safetensors"
        with tempfile.TemporaryDirectory() as d:
            _util.make_fixtures.write_shipped(d)
            new, new_meta = st.load(os.path.join(d, name))
            old, old_meta = st.load(os.path.join(_util.FIXTURES, name))
            self.assertEqual(new_meta, old_meta, "fixture out of date: run tools/make_fixtures.py --shipped")
            self.assertEqual(sorted(new), sorted(old))
            for k in old:
                np.testing.assert_allclose(new[k], old[k], rtol=1e-5, atol=1e-5, err_msg=k)

    def test_expanded_path_matches_absorbed_fixture(self):
        vocab = _util.vocabulary()
        model, _, _ = vinit.load(os.path.join(_util.FIXTURES, "ref_mla_model.safetensors"))
        tensors, _ = _util.make_fixtures.rollout(model, vocab, "expanded", with_frames=False)
        ref, _ = st.load(os.path.join(_util.FIXTURES, "ref_mla_rollout.safetensors"))
        for k, v in tensors.items():
            scale = max(1.0, float(np.abs(ref[k]).max()))
            self.assertLess(float(np.abs(v - ref[k]).max()) / scale, 1e-5, k)

    def test_float32_engine_like_run_is_close(self):
        """A float32 run of the same rollout stays close to the float64 reference (what the C++
        CPU backend is compared against)."""
        vocab = _util.vocabulary()
        model, _, _ = vinit.load(os.path.join(_util.FIXTURES, "ref_mla_model.safetensors"))
        from vmla_ref import stream
        ref, _ = st.load(os.path.join(_util.FIXTURES, "ref_mla_rollout.safetensors"))
        s = stream.Streamer(model.float(), 1234, vocab, path="absorbed")
        s.set_prompt(_util.make_fixtures.PROMPTS[0])
        for c in range(3):
            if c == 2:
                s.set_prompt(_util.make_fixtures.PROMPTS[1], recache=True)
            out = s.step_chunk()
            for k in ("x0", "frames"):
                r = ref[f"chunk{c}.{k}"]
                err = float(np.abs(out[k].numpy() - r).max()) / max(1.0, float(np.abs(r).max()))
                self.assertLess(err, 1e-4, f"chunk{c}.{k}")


if __name__ == "__main__":
    unittest.main()
