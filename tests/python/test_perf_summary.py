"""tools/reference/perf_summary.py: the targets block of perf_compare.sh from its JSON files."""
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

from tests.python import _util  # noqa: F401  (puts tools/ on the path)

sys.path.insert(0, os.path.join(_util.ROOT, "tools", "reference"))
import perf_summary  # noqa: E402


def engine(fps, chunk_ms, first_s, cache, mha_cache):
    return {"ms_per_pass": chunk_ms / 5, "ms_per_chunk_dit": chunk_ms, "fps_dit": fps, "first_chunk_s": first_s,
            "cache_bytes": cache, "mha_cache_bytes": mha_cache}


def torch_run(chunk_ms):
    return {"ms_per_pass": chunk_ms / 5, "ms_per_chunk_dit": chunk_ms, "fps_dit": 12000 / chunk_ms,
            "sdpa_backend": "CUDNN_ATTENTION"}


class PerfSummary(unittest.TestCase):
    def write(self, d, name, obj):
        with open(os.path.join(d, name), "w") as f:
            json.dump(obj, f)

    def summary(self, d):
        out = io.StringIO()
        with redirect_stdout(out):
            perf_summary.main([d])
        return out.getvalue()

    def test_every_target_read_from_the_runs(self):
        with tempfile.TemporaryDirectory() as d:
            mha_cache = 3072 * 100
            self.write(d, "engine-wan1.3b-mha.json", engine(43.6, 275.2, 0.258, mha_cache, mha_cache))
            self.write(d, "engine-wan1.3b-mla.json", engine(45.3, 264.9, 0.265, 224 * 100, mha_cache))
            self.write(d, "torch-wan1.3b-mha.json", torch_run(438.4))
            self.write(d, "torch-wan1.3b-mla.json", torch_run(327.7))
            self.write(d, "streams-wan1.3b-mha.json", {"projected_streams": 36, "budget_bytes": 80e9})
            self.write(d, "streams-wan1.3b-mla.json", {"projected_streams": 318, "budget_bytes": 80e9})
            text = self.summary(d)
        lines = {ln.split("  ")[1].strip(): ln for ln in text.splitlines() if ln.startswith("  ")}
        self.assertIn("MISSED", lines["wan1.3b-mha: >= 45 FPS DiT"])
        self.assertTrue(lines["wan1.3b-mla: >= 45 FPS DiT"].endswith("met"))
        self.assertIn("1.59x", lines["wan1.3b-mha: >= 1.5x PyTorch eager"])
        self.assertIn("MISSED", lines["wan1.3b-mla: >= 1.5x PyTorch eager"])
        self.assertTrue(lines["MLA FPS >= MHA FPS, at 13.7x less cache"].endswith("met"))
        self.assertIn("318 vs 36 streams in 80 GB: 8.8x", lines["MLA fits >= 8x the streams of MHA"])
        self.assertIn("targets met: 6 of 8", text)

    def test_a_missing_run_is_not_measured_rather_than_met(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, "engine-wan1.3b-mla.json", engine(45.3, 264.9, 0.265, 22400, 307200))
            text = self.summary(d)
        self.assertIn("failed", text)  # the comparison row of the MHA config
        self.assertIn("targets met: 2 of 8", text)
        self.assertEqual(text.count("not measured"), 2 * 6)  # value and verdict of six rows


if __name__ == "__main__":
    unittest.main()
