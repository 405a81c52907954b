import unittest

import torch

from tests.python import _util
from vmla_ref import stream as S


def fake_entries(first_id, n_frames, tokens=2, layers=2):
    """Per-layer entries whose values are the frame's id (to read the cache order back)."""
    v = torch.arange(first_id, first_id + n_frames, dtype=torch.float64).repeat_interleave(tokens)
    return [{"c_kv": v.view(1, -1, 1) + 100 * l} for l in range(layers)]


class CacheOrder(unittest.TestCase):
    def test_sink_and_fifo(self):
        c = S.Cache(1, 2)
        got = []
        for k in range(4):
            c.append(fake_entries(3 * k, 3), 3)
            got.append((list(c.sink_ids), list(c.ring_ids)))
        self.assertEqual(got, [([0], [1, 2]), ([0], [4, 5]), ([0], [7, 8]), ([0], [10, 11])])
        ctx = c.context()
        self.assertEqual(ctx[0]["c_kv"].view(-1).tolist(), [0, 0, 10, 10, 11, 11])
        self.assertEqual(ctx[1]["c_kv"].view(-1).tolist(), [100, 100, 110, 110, 111, 111])

    def test_larger_sink_and_window(self):
        c = S.Cache(2, 6)
        for k in range(5):
            c.append(fake_entries(3 * k, 3), 3)
        self.assertEqual(c.sink_ids, [0, 1])
        self.assertEqual(c.ring_ids, [9, 10, 11, 12, 13, 14])
        c0 = S.Cache(0, 0)
        c0.append(fake_entries(0, 3), 3)
        self.assertIsNone(c0.context())

    def test_streamer_cache_ids_and_snapshot(self):
        m = _util.small_model("mla")
        s = S.Streamer(m, 5, _util.vocabulary())
        s.set_prompt("a red ball")
        s.step_chunk()
        snap = s.snapshot()
        a = s.step_chunk()
        self.assertEqual((s.cache.sink_ids, s.cache.ring_ids), ([0], [4, 5]))
        self.assertEqual(sorted(s.latents), [0, 4, 5])
        s.restore(snap)
        self.assertEqual((s.cache.sink_ids, s.cache.ring_ids), ([0], [1, 2]))
        b = s.step_chunk()
        for k in ("noise0", "v0", "x0", "frames"):
            self.assertTrue(torch.equal(a[k], b[k]), k)


class Recache(unittest.TestCase):
    def test_recache_is_one_pass_with_sink_context(self):
        m = _util.small_model("mha")
        s = S.Streamer(m, 5, _util.vocabulary())
        s.set_prompt("a red ball")
        s.step_chunk()
        s.step_chunk()
        sink_before = s.cache.sink[0]
        s.set_prompt("a blue fish", recache=True)
        x = torch.stack([s.latents[4], s.latents[5]], dim=1)
        _, ref = m.dit_pass(x, 0.0, s.cross, S.Cache._cat(s.cache.sink), 1)
        ctx = s.cache.context()
        for l in range(2):
            for k in ("k", "v"):
                self.assertTrue(torch.equal(ctx[l][k][:, 6:], ref[l][k]))
                self.assertTrue(torch.equal(ctx[l][k][:, :6], sink_before[l][k]))


class TrainingRollouts(unittest.TestCase):
    def test_teacher_forcing_equals_streaming(self):
        """Teacher forcing on the Streamer's own clean chunks reproduces its first-step velocities:
        the training pass sees exactly the inference cache (sink, FIFO, window-local positions)."""
        for att in ("mla", "mha"):
            m = _util.small_model(att)
            s = S.Streamer(m, 9, _util.vocabulary())
            s.set_prompt("a white star spinning in space")
            outs = [s.step_chunk() for _ in range(4)]
            clean = torch.stack([o["x0"] for o in outs]).flatten(0, 1)[None]
            noisy = torch.stack([o["noise0"] for o in outs]).flatten(0, 1)[None]
            t = torch.full((1, 4), 1000.0 * S.warp_sigma(1000, 5.0), dtype=torch.float64)
            v = S.teacher_forcing(m, clean, noisy, t, s.cross, 3, 1, 2)
            ref = torch.stack([o["v0"] for o in outs]).flatten(0, 1)[None]
            self.assertLess(float((v - ref).abs().max()), 1e-10, att)

    def test_teacher_forcing_prompt_switch_with_recache(self):
        m = _util.small_model("mla")
        s = S.Streamer(m, 4, _util.vocabulary())
        s.set_prompt("a red ball bouncing")
        c1 = s.cross
        outs = [s.step_chunk(), s.step_chunk()]
        s.set_prompt("a blue fish swimming", recache=True)
        c2 = s.cross
        outs += [s.step_chunk(), s.step_chunk()]
        clean = torch.stack([o["x0"] for o in outs]).flatten(0, 1)[None]
        noisy = torch.stack([o["noise0"] for o in outs]).flatten(0, 1)[None]
        t = torch.full((1, 4), 1000.0, dtype=torch.float64)
        rc = [torch.tensor([b]) for b in (False, False, True, False)]
        v = S.teacher_forcing(m, clean, noisy, t, [c1, c1, c2, c2], 3, 1, 2, recache=rc)
        ref = torch.stack([o["v0"] for o in outs]).flatten(0, 1)[None]
        self.assertLess(float((v - ref).abs().max()), 1e-10)
        v_no = S.teacher_forcing(m, clean, noisy, t, [c1, c1, c2, c2], 3, 1, 2)
        self.assertGreater(float((v_no[:, 6:9] - ref[:, 6:9]).abs().max()), 1e-6)

    def test_self_rollout_gradients(self):
        m = _util.small_model("mla", dtype=torch.float32)
        s = S.Streamer(m, 1, _util.vocabulary())
        s.set_prompt("a red ball")
        out, step = S.self_rollout(m, s.cross, (1, 16, 4, 6), 3, [1000, 750, 500, 250], 5.0, 3, 1, 2,
                                   exit_step=1, generator=torch.Generator().manual_seed(0))
        self.assertEqual(tuple(out.shape), (1, 9, 16, 4, 6))
        out.pow(2).mean().backward()
        self.assertIsNotNone(m.blocks[0].self_attn.kv_down.weight.grad)

    def test_sigmas(self):
        self.assertEqual([round(x, 4) for x in S.sigmas([1000, 750, 500, 250], 5.0)], [1.0, 0.9375, 0.8333, 0.625])


if __name__ == "__main__":
    unittest.main()
