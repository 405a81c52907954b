import math
import unittest

import torch
import torch.nn.functional as F

from tests.python import _util
from vmla_ref import model as M
from vmla_ref import stream as S


def populated(model, n_chunks=2, seed=11):
    """A Streamer after n_chunks (the cache holds sink + a full, evicted ring)."""
    s = S.Streamer(model, seed, _util.vocabulary())
    s.set_prompt("a green bird flying over the sea")
    for _ in range(n_chunks):
        s.step_chunk()
    return s


class MLAPaths(unittest.TestCase):
    def test_expanded_equals_absorbed_float64(self):
        m = _util.small_model("mla")
        s = populated(m)
        x = torch.randn(1, 3, 16, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        ctx, n = s.cache.context(), s.cache.n_frames()
        v_abs, e_abs = m.dit_pass(x, 937.5, s.cross, ctx, n, "absorbed")
        v_exp, e_exp = m.dit_pass(x, 937.5, s.cross, ctx, n, "expanded")
        self.assertGreater(float(v_abs.abs().mean()), 0.1)
        self.assertLess(float((v_abs - v_exp).abs().max()), 1e-11)
        for a, b in zip(e_abs, e_exp):
            for k in a:
                self.assertLess(float((a[k] - b[k]).abs().max()), 1e-11)

    def test_expanded_equals_absorbed_float32(self):
        m = _util.small_model("mla", dtype=torch.float32)
        s = populated(m)
        x = torch.randn(1, 3, 16, 4, 6, generator=torch.Generator().manual_seed(1))
        ctx, n = s.cache.context(), s.cache.n_frames()
        v_abs, _ = m.dit_pass(x, 500.0, s.cross, ctx, n, "absorbed")
        v_exp, _ = m.dit_pass(x, 500.0, s.cross, ctx, n, "expanded")
        self.assertLess(float((v_abs - v_exp).abs().max() / v_abs.abs().max()), 1e-5)


class Rope(unittest.TestCase):
    def _scores(self, q, k, freqs, pairs, qpos, kpos):
        cq, sq = M.rope_table(qpos, freqs, pairs)
        ck, sk = M.rope_table(kpos, freqs, pairs)
        return M.apply_rope(q, cq, sq)[0] @ M.apply_rope(k, ck, sk)[0].T

    def test_window_local_equals_absolute_scores(self):
        g = torch.Generator().manual_seed(2)
        for pairs, axis in (([5, 4, 3], [10, 8, 6]), ([2, 1, 1], [10, 8, 6]), ([22, 21, 21], [44, 42, 42])):
            P = sum(pairs)
            freqs = M.rope_freqs(10000.0, axis, pairs)
            kpos = M.token_positions(5, 2, 3)  # sink + window + chunk, window-local 0..4
            qpos = kpos[-12:]
            q = torch.randn(1, 12, 2 * P, dtype=torch.float64, generator=g)
            k = torch.randn(1, 30, 2 * P, dtype=torch.float64, generator=g)
            local = self._scores(q, k, freqs, pairs, qpos, kpos)
            for off in (1, 7, 1000):
                shift = torch.tensor([off, 0, 0])
                absolute = self._scores(q, k, freqs, pairs, qpos + shift, kpos + shift)
                self.assertLess(float((local - absolute).abs().max()), 1e-9)

    def test_pair_layout_and_direction(self):
        # one pair (2i, 2i+1) rotates like the complex number x0 + i x1 times exp(i pos freq)
        freqs = M.rope_freqs(10000.0, [4, 2, 2], [2, 1, 1])
        pos = torch.tensor([[3, 1, 2]])
        x = torch.arange(8, dtype=torch.float64).view(1, 1, 8) + 1
        c, s = M.rope_table(pos, freqs, [2, 1, 1])
        y = M.apply_rope(x, c, s)[0, 0]
        angles = [3 * 1.0, 3 * 10000 ** (-2 / 4), 1 * 1.0, 2 * 1.0]
        for i, a in enumerate(angles):
            z = complex(x[0, 0, 2 * i], x[0, 0, 2 * i + 1]) * complex(math.cos(a), math.sin(a))
            self.assertAlmostEqual(float(y[2 * i]), z.real, places=12)
            self.assertAlmostEqual(float(y[2 * i + 1]), z.imag, places=12)

    def test_model_pass_invariant_to_temporal_offset(self):
        for att in ("mla", "mha"):
            m = _util.small_model(att)
            s = populated(m)
            x = torch.randn(1, 3, 16, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
            ctx, n = s.cache.context(), s.cache.n_frames()
            v0, _ = m.dit_pass(x, 750.0, s.cross, ctx, n)
            orig = m.rope_tables

            def shifted(n_ctx, n_frames, gh, gw, device, off=17):
                pos = M.token_positions(n_ctx + n_frames, gh, gw) + torch.tensor([off, 0, 0])
                cos, sin = M.rope_table(pos, m._freqs, m.rope_pairs)
                nq = n_frames * gh * gw
                return (cos[-nq:], sin[-nq:]), (cos, sin)

            m.rope_tables = shifted
            v1, _ = m.dit_pass(x, 750.0, s.cross, ctx, n)
            m.rope_tables = orig
            self.assertLess(float((v0 - v1).abs().max()), 1e-9, att)


class Layout(unittest.TestCase):
    def test_patchify_matches_conv3d(self):
        m = _util.small_model("mha")
        x = torch.randn(2, 3, 16, 4, 6, dtype=torch.float64)
        tok = m.patchify(x)  # [B, F, gh*gw, dim]
        ref = F.conv3d(x.transpose(1, 2), m.patch_embedding.weight, m.patch_embedding.bias, stride=(1, 2, 2))
        ref = ref.flatten(3).permute(0, 2, 3, 1)  # [B, F, gh*gw, dim]
        self.assertLess(float((tok - ref).abs().max()), 1e-12)

    def test_unpatchify_index(self):
        m = _util.small_model("mha")
        B, Fr, H, W, co = 1, 2, 4, 6, 16
        y = torch.arange(B * Fr * 6 * 4 * co, dtype=torch.float64).view(B, Fr, 6, 4 * co)
        out = m.unpatchify(y, H, W)
        for (f, c, r, col) in ((1, 5, 3, 4), (0, 15, 0, 5), (1, 0, 2, 1)):
            tok = (r // 2) * 3 + col // 2
            p, q = r % 2, col % 2
            self.assertEqual(float(out[0, f, c, r, col]), float(y[0, f, tok, (p * 2 + q) * co + c]))

    def test_sinusoid_matches_wan(self):
        t = torch.tensor([0.0, 250.0, 937.5, 1000.0], dtype=torch.float64)
        half = 16
        ref_w = torch.pow(10000, -torch.arange(half).to(torch.float64).div(half))
        ref = torch.outer(t, ref_w)
        ref = torch.cat([torch.cos(ref), torch.sin(ref)], dim=1)
        self.assertLess(float((M.sinusoid(t, 32) - ref).abs().max()), 1e-12)

    def test_state_dict_names(self):
        cfg = _util.make_fixtures.fixture_config("mla")
        sd = {k: tuple(v.shape) for k, v in _util.small_model("mla").state_dict().items()}
        d, C = cfg["dim"], cfg["in_channels"]
        expect = {
            "patch_embedding.weight": (d, C, 1, 2, 2), "patch_embedding.bias": (d,),
            "text_embedding.0.weight": (d, cfg["text_dim"]), "text_embedding.2.weight": (d, d),
            "time_embedding.0.weight": (d, cfg["freq_dim"]), "time_embedding.2.weight": (d, d),
            "time_projection.1.weight": (6 * d, d), "blocks.1.modulation": (1, 6, d),
            "blocks.0.norm3.weight": (d,), "blocks.0.norm3.bias": (d,),
            "blocks.0.cross_attn.q.weight": (d, d), "blocks.0.cross_attn.norm_k.weight": (d,),
            "blocks.0.ffn.0.weight": (cfg["ffn_dim"], d), "blocks.0.ffn.2.weight": (d, cfg["ffn_dim"]),
            "head.modulation": (1, 2, d), "head.head.weight": (4 * 16, d),
            "blocks.0.self_attn.q_down.weight": (32, d), "blocks.0.self_attn.q_norm.weight": (32,),
            "blocks.0.self_attn.q_up.weight": (2 * 16, 32), "blocks.0.self_attn.q_rope.weight": (2 * 8, 32),
            "blocks.0.self_attn.kv_down.weight": (16, d), "blocks.0.self_attn.kv_norm.weight": (16,),
            "blocks.0.self_attn.k_up.weight": (2 * 16, 16), "blocks.0.self_attn.v_up.weight": (2 * 24, 16),
            "blocks.0.self_attn.k_rope.weight": (8, d), "blocks.0.self_attn.o.weight": (d, 2 * 24),
            "blocks.0.self_attn.o.bias": (d,),
            "text_encoder.token_embedding.weight": (len(_util.vocabulary()), 32),
            "text_encoder.position_embedding.weight": (16, 32),
            "text_encoder.blocks.0.attn.qkv.weight": (96, 32), "text_encoder.blocks.0.attn.o.weight": (32, 32),
            "text_encoder.blocks.0.norm1.weight": (32,), "text_encoder.blocks.0.ffn.0.weight": (64, 32),
            "text_encoder.norm.bias": (32,),
            "decoder.conv_in.weight": (16, 16, 3, 3), "decoder.stages.0.blocks.0.conv.0.weight": (16, 32, 3, 3),
            "decoder.stages.0.blocks.0.conv.4.bias": (16,), "decoder.stages.0.conv_out.weight": (8, 16, 3, 3),
            "decoder.stages.1.tgrow.weight": (16, 8, 1, 1), "decoder.conv_final.weight": (3, 8, 3, 3),
            "encoder.conv_in.weight": (8, 3, 3, 3), "encoder.stages.0.tpool.weight": (8, 16, 1, 1),
            "encoder.stages.0.conv_down.weight": (8, 8, 3, 3), "encoder.conv_out.weight": (16, 8, 3, 3),
        }
        for k, shape in expect.items():
            self.assertEqual(sd.get(k), shape, k)
        for k in ("blocks.0.self_attn.q_down.bias", "blocks.0.self_attn.k_up.bias", "decoder.stages.0.tgrow.weight",
                  "decoder.stages.0.conv_out.bias", "encoder.stages.2.tpool.weight", "encoder.stages.0.conv_down.bias"):
            self.assertNotIn(k, sd)
        mha = {k: tuple(v.shape) for k, v in _util.small_model("mha").state_dict().items()}
        for n in ("q", "k", "v", "o"):
            self.assertEqual(mha[f"blocks.0.self_attn.{n}.weight"], (d, d))
            self.assertEqual(mha[f"blocks.0.self_attn.{n}.bias"], (d,))
        self.assertEqual(mha["blocks.0.self_attn.norm_q.weight"], (d,))


class Text(unittest.TestCase):
    def setUp(self):
        self.tok = M.Tokenizer(_util.vocabulary(), 6)

    def test_tokenizer(self):
        r = self.tok.encode("A RED ball, bouncing... on the Zorblax-beach\u00e9 (zorblax) at sunset")
        v = self.tok.index
        self.assertEqual(r["ids"], [v["a"], v["red"], v["ball"], v["bouncing"], v["on"], v["the"]])
        self.assertEqual(r["dropped"], ["zorblax", "beach", "zorblax", "at", "sunset"])
        r = M.Tokenizer(_util.vocabulary(), 16).encode("Zorblax-beach\u00e9 x2 it's <pad>")
        self.assertEqual(r["ids"], [1, v["beach"], 1, 1, 1])
        self.assertEqual(r["unknown"], ["zorblax", "x2", "it's", "pad"])
        self.assertEqual(self.tok.encode("")["ids"], [])

    def test_batch_equals_single(self):
        m = _util.small_model("mla")
        tok = M.Tokenizer(_util.vocabulary(), 16)
        prompts = ["a red ball", "a blue fish swimming in the sea at night", ""]
        ids = torch.zeros(3, 16, dtype=torch.long)
        lens = torch.tensor([len(tok.encode(p)["ids"]) for p in prompts])
        for i, p in enumerate(prompts):
            e = tok.encode(p)["ids"]
            ids[i, :len(e)] = torch.tensor(e)
        batch = m.encode_text(ids, lens)
        for i in range(3):
            L = int(lens[i])
            if L:
                alone = m.text_encoder.norm(self._plain(m.text_encoder, ids[i, :L]))
                self.assertLess(float((batch[i, :L] - alone).abs().max()), 1e-12)
            self.assertEqual(float(batch[i, L:].abs().max()) if L < 16 else 0.0, 0.0)

    @staticmethod
    def _plain(te, ids):
        """Section 6 written out for one prompt of L real tokens, no mask."""
        L = ids.shape[0]
        x = te.token_embedding.weight[ids] + te.position_embedding.weight[:L]
        for b in te.blocks:
            h = b.norm1(x)
            q, k, v = b.attn.qkv(h).chunk(3, dim=-1)
            H = b.attn.heads
            D = x.shape[-1] // H
            q, k, v = (t.view(L, H, D).transpose(0, 1) for t in (q, k, v))
            a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D), -1) @ v
            x = x + b.attn.o(a.transpose(0, 1).reshape(L, -1))
            x = x + b.ffn(b.norm2(x))
        return x


if __name__ == "__main__":
    unittest.main()
