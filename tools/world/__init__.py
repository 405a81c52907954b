"""Procedural video world for training the tiny model: endless, deterministic from a seed.

    w = World(seed=0)
    video, scenes = w.batch(step=0, batch=8, n_frames=48, device="cuda")   # [B, T, 3, 128, 128]

Each scene has `prompt` (before its event), `prompt2` (after; equal without event), `event_text`,
and the attributes used by the evaluation probe (scene.LABELS).
"""
from .render import render, subject_on_screen, subject_radius
from .scene import LABELS, prompt_schedule, sample_scene


class World:
    def __init__(self, seed=0, size=128, fps=16, event_prob=0.35, chunk_video_frames=12):
        self.seed, self.size, self.fps = int(seed), size, fps
        self.event_prob, self.chunk_video_frames = event_prob, chunk_video_frames

    def scene(self, index, n_frames):
        return sample_scene(self.seed * 1_000_003 + int(index), n_frames, self.event_prob, self.chunk_video_frames)

    def scenes(self, first, n, n_frames):
        return [self.scene(first + i, n_frames) for i in range(n)]

    def batch(self, step, batch, n_frames, device="cpu", frame0=0):
        """Clips step*batch .. step*batch+batch-1 (frames frame0 .. frame0+n_frames-1)."""
        scenes = self.scenes(step * batch, batch, frame0 + n_frames)
        return render(scenes, n_frames, self.size, self.fps, device, frame0), scenes


__all__ = ["World", "render", "subject_on_screen", "subject_radius", "sample_scene", "prompt_schedule", "LABELS"]
