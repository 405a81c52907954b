import unittest

import torch

from tests.python import _util
from world import World, prompt_schedule, render, sample_scene
from world.scene import COLOURS, MOTIONS, SETTINGS, SUBJECTS


class Scenes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scenes = [sample_scene(i, 60) for i in range(600)]
        cls.vocab = set(_util.vocabulary())

    def test_deterministic(self):
        self.assertEqual(sample_scene(42, 60), sample_scene(42, 60))
        self.assertNotEqual(sample_scene(42, 60), sample_scene(43, 60))

    def test_prompts_use_only_vocabulary_words(self):
        tok = _util.vmodel.Tokenizer(_util.vocabulary(), 32)
        for s in self.scenes:
            for text in (s["prompt"], s["prompt2"], s["event_text"]):
                words = tok.words(text)
                self.assertEqual([w for w in words if w not in self.vocab], [], text)
                self.assertLessEqual(len(words), 32, text)
                self.assertEqual(tok.encode(text)["unknown"], [])

    def test_coverage(self):
        kinds = {s["subjects"][0]["kind"] for s in self.scenes}
        colours = {s["subjects"][0]["colour"] for s in self.scenes}
        motions = {s["subjects"][0]["motion"] for s in self.scenes}
        settings = {s["setting"] for s in self.scenes}
        self.assertEqual(kinds, set(SUBJECTS))
        self.assertGreaterEqual(len(colours), 8)
        self.assertEqual(motions, set(MOTIONS))
        self.assertEqual(settings, set(SETTINGS))
        self.assertEqual({s["camera"] for s in self.scenes}, {"static", "pan_left", "pan_right", "zoom_in", "zoom_out"})
        self.assertEqual({s["particles"] for s in self.scenes}, {"none", "rain", "snow", "fireflies"})
        self.assertEqual({s["event"]["type"] for s in self.scenes}, {"none", "colour", "enter", "camera"})
        self.assertTrue(set(COLOURS) >= colours)

    def test_events(self):
        for s in self.scenes:
            ev = s["event"]
            if ev["type"] == "none":
                self.assertEqual(s["prompt"], s["prompt2"])
                continue
            self.assertNotEqual(s["prompt"], s["prompt2"])
            self.assertEqual(ev["frame"] % 12, 0)
            sched = prompt_schedule(s, 5)
            self.assertEqual(sched, [0 if 12 * k < ev["frame"] else 1 for k in range(5)])
            if ev["type"] == "colour":
                self.assertIn(ev["colour"], s["prompt2"].split())


class Rendering(unittest.TestCase):
    def test_shapes_range_determinism(self):
        w = World(seed=7, size=32)
        a, sa = w.batch(3, 2, 6)
        b, sb = w.batch(3, 2, 6)
        self.assertEqual(tuple(a.shape), (2, 6, 3, 32, 32))
        self.assertTrue(torch.equal(a, b))
        self.assertEqual(sa, sb)
        self.assertGreaterEqual(float(a.min()), 0.0)
        self.assertLessEqual(float(a.max()), 1.0)
        # a later segment of the same endless clip equals the corresponding frames of a longer render
        long = render(sa, 10, 32)
        seg = render(sa, 4, 32, frame0=6)
        self.assertLess(float((long[:, 6:] - seg).abs().max()), 1e-5)

    def test_every_subject_is_drawn(self):
        base = sample_scene(5, 12, event_prob=0.0)
        base.update(setting="sky", time="noon", camera="static", particles="none")
        scenes = []
        for kind in SUBJECTS:
            s = dict(base, subjects=[dict(base["subjects"][0], kind=kind, x0=0.0, y0=0.0, motion="spinning",
                                          colour="red", size="big")])
            scenes.append(s)
        empty = dict(base, subjects=[dict(base["subjects"][0], enter_frame=10**6)])
        v = render(scenes + [empty], 1, 48)
        for i, kind in enumerate(SUBJECTS):
            self.assertGreater(float((v[i] - v[-1]).abs().amax(1).gt(0.2).float().sum()), 40, kind)


if __name__ == "__main__":
    unittest.main()
