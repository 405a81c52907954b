import unittest

import torch

from tests.python import _util


class Autoencoder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = _util.small_model("mla")

    def test_decoder_shapes(self):
        z = torch.randn(1, 3, 16, 4, 6, dtype=torch.float64)
        y, state = self.m.decoder(z)
        self.assertEqual(tuple(y.shape), (1, 12, 3, 32, 48))
        self.assertEqual(len(state), 3)

    def test_chunked_decoding_equals_whole(self):
        g = torch.Generator().manual_seed(4)
        z = torch.randn(2, 7, 16, 4, 6, dtype=torch.float64, generator=g) * 2
        whole, _ = self.m.decoder(z)
        parts, state = [], None
        for a, b in ((0, 3), (3, 4), (4, 7)):
            y, state = self.m.decoder(z[:, a:b], state)
            parts.append(y)
        chunked = torch.cat(parts, dim=1)
        self.assertGreater(float(whole.std()), 0.1)
        self.assertLess(float((whole - chunked).abs().max()), 1e-12)

    def test_decoder_is_causal(self):
        z = torch.randn(1, 4, 16, 4, 6, dtype=torch.float64)
        y1, _ = self.m.decoder(z)
        z2 = z.clone()
        z2[:, 2:] += 1.0
        y2, _ = self.m.decoder(z2)
        self.assertEqual(float((y1[:, :8] - y2[:, :8]).abs().max()), 0.0)
        self.assertGreater(float((y1[:, 8:] - y2[:, 8:]).abs().max()), 1e-3)

    def test_chunked_encoding_equals_whole(self):
        x = torch.rand(1, 16, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        whole, _ = self.m.encoder(x)
        self.assertEqual(tuple(whole.shape), (1, 4, 16, 4, 6))
        parts, state = [], None
        for a, b in ((0, 4), (4, 12), (12, 16)):
            z, state = self.m.encoder(x[:, a:b], state)
            parts.append(z)
        self.assertLess(float((whole - torch.cat(parts, 1)).abs().max()), 1e-12)

    def test_tgrow_frame_order(self):
        # channels [0, C) of the 1x1 TGrow conv become frame 2i, [C, 2C) frame 2i+1
        st = self.m.decoder.stages[1]
        x = torch.randn(1, 2, 8, 3, 3, dtype=torch.float64)
        B, N, C, H, W = x.shape
        y = st.tgrow(x.flatten(0, 1)).view(B, N, 2 * C, H, W)
        from vmla_ref.model import _conv2d_frames
        grown = _conv2d_frames(st.tgrow, x).view(B, N, 2, C, H, W).reshape(B, 2 * N, C, H, W)
        self.assertTrue(torch.equal(grown[:, 2], y[:, 1, :C]))
        self.assertTrue(torch.equal(grown[:, 3], y[:, 1, C:]))


if __name__ == "__main__":
    unittest.main()
