import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

import numpy as np
import torch

from tests.python import _util

import export  # noqa: E402
import train  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from vmla_ref import st  # noqa: E402
from world import LABELS as world_labels  # noqa: E402

COMMON = ["--micro", "--batch", "2", "--chunks", "3", "--log-every", "1", "--device", "cpu", "--pool", "4"]


def run(stage, d, *extra):
    out = io.StringIO()
    with redirect_stdout(out):
        train.main(["--stage", stage, "--ckpt-dir", d] + COMMON + list(extra))
    return out.getvalue()


def launch(n, script_args, code=None, extra_env=None):
    """n processes as torchrun starts them (its environment variables; Debian's torch 1.13 torchrun
    fails under Python 3.11): train.py with script_args, or `python -c code`. Returns their outputs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for r in range(n):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(n), RANK=str(r),
                   LOCAL_RANK=str(r), OMP_NUM_THREADS="1", **(extra_env or {}))
        cmd = [sys.executable] + (["-c", code] if code else [os.path.join(_util.TOOLS, "train.py")] + script_args)
        procs.append(subprocess.Popen(cmd, env=env, cwd=_util.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    return [p.returncode for p in procs], outs


PARALLEL_CHECK = """
import os, sys, torch
sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import train
par = train.Parallel()
par.start(torch.device("cpu"))
torch.manual_seed(par.rank)                      # different weights and data in each process
net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
par.broadcast(net)
net(torch.randn(5, 4)).pow(2).sum().backward()
net[1].bias.grad = None                          # a parameter without a gradient in this process
own = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]
par.average(list(net.parameters()))
res = dict(weights=[p.detach().clone() for p in net.parameters()], own=own,
           avg=[p.grad.clone() for p in net.parameters()], agree=par.agree(par.rank == 1, False),
           mean=par.mean(torch.tensor(float(par.rank))))
torch.save(res, os.environ["OUT"] + f"/rank{par.rank}.pt")
par.stop()
"""


class MicroTraining(unittest.TestCase):
    """One short run of every stage on the CPU, in order, plus resume, export and the evaluation."""

    def test_pipeline(self):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as d:
            self.assertIn("stage=ae step=2/2 done", run("ae", d, "--steps", "2"))
            out = run("teacher", d, "--steps", "1")
            self.assertIn("step=1/1 done", out)
            # resume: a larger step target continues from the checkpoint
            out = run("teacher", d, "--steps", "2")
            self.assertIn("teacher 2 ", out)
            self.assertNotIn("teacher 1 ", out)
            self.assertIn("step=2/2 done", out)
            for init in ("random", "calibrated", "spectral"):
                out = run("convert", d, "--init", init)
                self.assertIn("done init=" + init, out)
                self.assertIn("velocity error against the source", out)
                self.assertIn("velocity_error", train.load_ckpt(os.path.join(d, "convert.pt")))
            self.assertIn("step=1/1 done", run("finetune", d, "--steps", "1"))
            for arch in ("mla", "mha"):
                out = run("student", d, "--arch", arch, "--steps", "1", "--fake-steps", "1", "--fake-warmup", "1")
                self.assertIn(f"stage=student_{arch} step=1/1 done", out)
            # a student stopped by the clock keeps its EMA and fake score; the next segment goes on with them
            out = run("student", d, "--arch", "mha", "--steps", "3", "--fake-warmup", "1", "--max-minutes", "0.001")
            self.assertIn("stage=student_mha step=2/3 incomplete", out)
            ck = train.load_ckpt(os.path.join(d, "student_mha.pt"))
            self.assertTrue({"model", "ema", "fake"} <= set(ck))
            self.assertTrue(any(not torch.equal(ck["ema"][k], ck["model"][k]) for k in ck["model"]))
            out = run("student", d, "--arch", "mha", "--steps", "3", "--fake-warmup", "1")
            self.assertIn("student_mha: resumed at step 2 (generator, EMA and fake score restored)", out)
            self.assertIn("stage=student_mha step=3/3 done", out)
            self.assertEqual(set(train.load_ckpt(os.path.join(d, "student_mha.pt"))) & {"model", "ema", "fake"}, {"ema"})
            # --pack gathers what a student segment needs, --out copies a stage's own files
            carry = os.path.join(d, "carry")
            with redirect_stdout(io.StringIO()):
                train.main(["--stage", "student", "--arch", "mla", "--ckpt-dir", d, "--pack", carry])
            self.assertEqual(sorted(f.split(".")[0] for f in os.listdir(carry)),
                             ["student_mla", "student_mla", "teacher", "teacher"])
            outdir = os.path.join(d, "out")
            run("convert", d, "--init", "random", "--out", outdir)
            self.assertEqual(sorted(os.listdir(outdir)), ["convert.pt", "convert.s0.pt", "ranks_convert_calibrated.json",
                                                          "ranks_convert_random.json", "ranks_convert_spectral.json"])
            # a stage that is out of time stops cleanly and says so
            out = run("finetune", d, "--steps", "50", "--max-minutes", "0.001")
            self.assertIn("incomplete", out)
            models = os.path.join(d, "models")
            with redirect_stdout(io.StringIO()):
                paths = export.export(d, models)
            for p in paths:
                _, meta = st.load(p)
                self.assertEqual(meta["trained"], "true")
                self.assertEqual(meta["format"], "vmla-dit/1")
                # the DiT blocks' linear weights int8 with F16 group scales, the rest BF16
                kinds = st.dtypes(p)
                self.assertEqual(set(kinds.values()), {"BF16", "I8", "F16"})
                for name, kind in kinds.items():
                    self.assertEqual(kind == "I8", name.startswith("blocks.") and name.endswith(".weight")
                                     and name + "_scale" in kinds, name)
                    self.assertEqual(kind == "F16", name.endswith("_scale") and kinds.get(name[:-6]) == "I8", name)
                model, vocab, _ = vinit.load(p)
                self.assertEqual(vocab, _util.vocabulary())
                self.assertTrue(hasattr(model, "decoder") and hasattr(model, "encoder"))
                self.assertIn("int8 rounded by GPTQ on 16 calibration rollouts", meta["description"])
            # rounding to nearest instead: the same format, other int8 values, and said so
            with redirect_stdout(io.StringIO()):
                nearest = export.export(d, os.path.join(d, "nearest"), archs=("mla",), rounding="nearest")[0]
            self.assertNotIn("GPTQ", st.load(nearest)[1]["description"])
            self.assertEqual(st.dtypes(nearest), st.dtypes(paths[0]))
            a, b = st.load(nearest)[0], st.load(paths[0])[0]
            self.assertTrue(any(not np.array_equal(a[k], b[k]) for k in a if k.startswith("blocks.") and k.endswith(".weight")))
            from eval import run as evrun
            report = os.path.join(d, "QUALITY.md")
            with redirect_stdout(io.StringIO()):
                evrun.main(["--ckpt-dir", d, "--models", ",".join(paths), "--out", report, "--probe-steps", "2",
                            "--probe-batch", "2", "--n-videos", "2", "--chunks", "3", "--long-chunks", "3",
                            "--size", "32", "--device", "cpu", "--shipped", "vmla-tiny,vmla-tiny-mha"])
            with open(report) as f:
                text = f.read()
            for section in ("Prompt adherence", "Temporal consistency", "prompt switch", "99%-energy rank",
                            "Targets of the shipped model"):
                self.assertIn(section, text)
            self.assertIn(", 95% ", text)  # the shipped pair's paired interval in the target section
            for a in ("subject", "colour", "motion"):  # the targets again on the clips that show the subject
                self.assertIn(f"| {a} accuracy, subject in the picture | ", text)
            # --switch-videos / --switch-modes: a larger switch evaluation of one mode; the event
            # counts per column are kept and reported
            rdir = os.path.join(d, "switch")
            with redirect_stdout(io.StringIO()):
                evrun.main(["--ckpt-dir", d, "--models", "sw=" + paths[0], "--out", report, "--probe-steps", "2",
                            "--n-videos", "1", "--chunks", "3", "--long-chunks", "3", "--size", "32",
                            "--device", "cpu", "--results-dir", rdir, "--switch-videos", "3",
                            "--switch-modes", "recache"])
            with open(os.path.join(rdir, "eval_sw.json")) as f:
                r = json.load(f)
            self.assertEqual(list(r["switch"]), ["recache"])
            # subject accuracy per kind: hits <= clips, and the clips add up to all probed chunks
            for side in ("generated", "real"):
                by = r["subject_by_kind"][side]
                self.assertTrue(all(0 <= h <= n for h, n in by.values()), by)
                self.assertEqual(sum(n for _, n in by.values()), 1 * 3)  # 1 video of 3 chunks
                # the misreadings are the misses: as many clips as the kinds' clips minus their hits
                mis = r["subject_misread"][side]
                self.assertEqual(sum(mis.values()), sum(n - h for h, n in by.values()), mis)
                self.assertTrue(all(k.split(">")[0] != k.split(">")[1] for k in mis), mis)
            n = r["in_picture"]["clips"]  # hits over the clips that show the subject
            self.assertTrue(0 <= n <= 3)
            for side in ("generated", "real"):
                self.assertEqual(sorted(r["in_picture"][side]), ["colour", "motion", "subject"])
                self.assertTrue(all(0 <= h <= n for h in r["in_picture"][side].values()), r["in_picture"])
            # per-clip hits: one row per video, one 0/1 per chunk, as many hits as the adherence says
            self.assertEqual(sorted(r["hits"]), sorted(r["adherence"]))
            self.assertEqual([len(v) for v in r["hits"]["subject"]], [3])
            self.assertAlmostEqual(sum(map(sum, r["hits"]["colour"])) / 3, r["adherence"]["colour"], places=6)
            # by the subject's drawn size: the clips that show the subject, their subject hits
            for side in ("generated", "real"):
                by = r["subject_by_size"][side]
                self.assertEqual(sum(c for _, c in by.values()), n)
            self.assertEqual(sum(h for h, _ in r["subject_by_size"]["generated"].values()),
                             r["in_picture"]["generated"]["subject"])
            self.assertEqual(sorted(r["switch_events"]), ["0", "1", "2"])
            self.assertLessEqual(max(r["switch_events"].values()), 3)
            with open(report) as f:
                text = f.read()
            self.assertIn(f"| sw ({r['switch_events']['0']} / ", text)
            self.assertIn("## Subject accuracy by kind", text)
            self.assertIn("## Subject accuracy by drawn size", text)
            self.assertIn("| model | < 12 px | 12-16 px | 16-22 px | >= 22 px |", text)
            self.assertIn("Most frequent misreadings of the subject", text)
            self.assertIn("| in the picture: subject / colour / motion |", text)
            # --timesteps: the same model sampled on another grid of the same length, named in the result
            with redirect_stdout(io.StringIO()):
                evrun.main(["--ckpt-dir", d, "--models", "ts=" + paths[0], "--out", os.path.join(d, "ts.md"),
                            "--probe-steps", "2", "--n-videos", "1", "--chunks", "2", "--long-chunks", "2",
                            "--size", "32", "--device", "cpu", "--results-dir", os.path.join(d, "ts"),
                            "--switch-videos", "1", "--switch-modes", "recache", "--timesteps", "1000,600,200"])
            with open(os.path.join(d, "ts", "eval_ts.json")) as f:
                self.assertTrue(json.load(f)["sampler"].endswith(" at 1000,600,200"))
            for bad in ("1000,200,600", "900,500", "1000,x"):
                with self.assertRaises(SystemExit) as e:
                    evrun.main(["--ckpt-dir", d, "--models", "ts=" + paths[0], "--timesteps", bad])
                self.assertIn(f"--timesteps {bad}", str(e.exception))
            with self.assertRaises(SystemExit) as e:
                evrun.main(["--ckpt-dir", d, "--report-only", "--switch-modes", "recache,re-cache"])
            self.assertIn("unknown --switch-modes re-cache", str(e.exception))
            # misread_sheet: the evaluation's clips read as one kind, a row of 3 + 3 frames per clip;
            # the barely trained probe reads (nearly) one kind for everything, so some kind has clips
            from eval import misread_sheet
            sheet, wrote = os.path.join(d, "sheet.png"), []
            for kind in world_labels["subject"]:
                try:
                    with redirect_stdout(io.StringIO()):
                        misread_sheet.main(["--model", paths[0], "--probe", os.path.join(d, "probe.pt"), "--out",
                                            sheet, "--as", kind, "--n-videos", "2", "--chunks", "3", "--rows", "2"])
                    wrote.append(kind)
                except SystemExit as e:
                    self.assertIn(f"is read as a {kind}", str(e))
            self.assertTrue(wrote)
            with open(sheet, "rb") as f:
                w, h = struct.unpack(">II", f.read(24)[16:24])
            self.assertEqual(w, 6 * 32 + 6)
            self.assertIn(h, (32, 2 * 32 + 4))
            # --roundtrip: the real clips through the file's autoencoder; a sheet, or the clear error
            # when the barely trained probe misreads none whose real render it reads right
            try:
                with redirect_stdout(io.StringIO()) as out:
                    misread_sheet.main(["--model", paths[0], "--probe", os.path.join(d, "probe.pt"), "--out",
                                        sheet, "--roundtrip", "--as", "any", "--n-videos", "2", "--chunks", "3"])
                self.assertIn("lost in the round trip, per prompted kind", out.getvalue())
            except SystemExit as e:
                self.assertIn("no round trip of", str(e))
            # ae_ceiling: the round trip per chunk, whose mean is the whole reading
            from eval import ae_ceiling
            with redirect_stdout(io.StringIO()):
                ae_ceiling.main(["--model", paths[0], "--probe", os.path.join(d, "probe.pt"), "--out",
                                 os.path.join(d, "ae.json"), "--n-videos", "2", "--chunks", "3"])
            with open(os.path.join(d, "ae.json")) as f:
                ae = json.load(f)
            self.assertEqual(len(ae["roundtrip_per_chunk"]), 3)
            ae_ceiling.BATCH = 1  # one video at a time: the same readings
            try:
                with redirect_stdout(io.StringIO()):
                    ae_ceiling.main(["--model", paths[0], "--probe", os.path.join(d, "probe.pt"), "--out",
                                     os.path.join(d, "ae1.json"), "--n-videos", "2", "--chunks", "3"])
            finally:
                ae_ceiling.BATCH = 16
            with open(os.path.join(d, "ae1.json")) as f:
                ae1 = json.load(f)
            self.assertEqual(ae1["roundtrip_per_chunk"], ae["roundtrip_per_chunk"])
            self.assertAlmostEqual(ae1["psnr"], ae["psnr"], places=4)
            self.assertAlmostEqual(sum(c["subject"] for c in ae["real_per_chunk"]) / 3, ae["real"]["subject"], places=6)
            # the clips without their weather: a video that has none renders the same, so reads the same
            w = ae["subject_by_weather"]
            self.assertEqual(w["videos"]["with"] + w["videos"]["without"], 2)
            self.assertEqual(w["real_without_weather"]["without"], w["real"]["without"])
            self.assertEqual(sorted(ae["real_without_weather"]), sorted(ae["real"]))
            for side in ("real", "roundtrip"):  # per prompted kind: every clip once, the hits the accuracy's
                by = ae["subject_by_kind"][side]
                self.assertEqual(sum(n for _, n in by.values()), 2 * 3)
                self.assertAlmostEqual(sum(h for h, _ in by.values()) / 6, ae[side]["subject"], places=6)
            # per clip (as run.py's hits) and by the subject's drawn size; by_size.py reads the same
            # bins back from the hits of the file, and refuses files judged on other videos
            self.assertAlmostEqual(sum(map(sum, ae["hits"]["roundtrip"]["subject"])) / 6, ae["roundtrip"]["subject"],
                                   places=6)
            from eval import by_size
            mcfg = vinit.load(paths[0])[0].cfg
            cv = mcfg["stream"]["chunk_frames"] * mcfg["video"]["temporal_stride"]
            with redirect_stdout(io.StringIO()) as out:
                rows = by_size.main([os.path.join(d, "ae.json"), "--chunk-video", str(cv),
                                     "--size", str(mcfg["video"]["width"]), "--fps", str(mcfg["video"]["fps"])])
            self.assertEqual([lab for lab, _ in rows], ["real renders", "round trip, " + ae["label"]])
            self.assertEqual(rows[1][1], ae["subject_by_size"]["roundtrip"])
            from eval import metrics as M
            from world import World
            scenes = M.eval_scenes(World(seed=M.WORLD_SEED, size=mcfg["video"]["width"]), 2, 3 * cv)
            bare = {k: v for k, v in ae.items() if k != "subject_by_size"}  # a file of before: from its hits
            self.assertEqual(by_size.rows_of(bare, scenes, cv, mcfg["video"]["fps"], mcfg["video"]["width"]), rows)
            # --kind: the videos of one prompted subject; the kinds' clips add up to all of them
            per_kind = [by_size.rows_of(ae, scenes, cv, mcfg["video"]["fps"], mcfg["video"]["width"], k)[1][1]
                        for k in world_labels["subject"]]
            for b, (h, n) in rows[1][1].items():
                self.assertEqual([sum(p[b][0] for p in per_kind), sum(p[b][1] for p in per_kind)], [h, n])
            self.assertIn("| subject radius | < 12 px |", out.getvalue())
            with self.assertRaises(SystemExit) as e:
                by_size.main([os.path.join(d, "ae.json"), os.path.join(rdir, "eval_sw.json")])
            self.assertIn("judged on different videos", str(e.exception))
            # sdedit: real first chunks noised to each level and denoised by the model; level 0 is the
            # autoencoder's round trip (no latent error); the same noise twice gives the same hits
            from eval import sdedit
            with redirect_stdout(io.StringIO()):
                r1 = sdedit.run(paths[0], os.path.join(d, "probe.pt"), 2, (0.0, 0.5, 1.0), log=lambda *_: None)
                r2 = sdedit.run(paths[0], os.path.join(d, "probe.pt"), 2, (0.0, 0.5, 1.0), guidance=2.0,
                                log=lambda *_: None)
            self.assertEqual([x["sigma"] for x in r1["rows"]], [0.0, 0.5, 1.0])
            self.assertEqual(r1["rows"][0]["latent_error"], 0.0)
            self.assertGreater(r1["rows"][2]["latent_error"], 0.0)
            self.assertEqual(r1["hits"]["0.0"], r2["hits"]["0.0"])  # no sampling at level 0
            self.assertEqual(len(r1["hits"]["1.0"]["subject"]), 2)
            self.assertEqual(sdedit.run(paths[0], os.path.join(d, "probe.pt"), 2, (0.0, 0.5, 1.0),
                                        log=lambda *_: None)["hits"], r1["hits"])
            self.assertEqual(sdedit.schedule_below([1.0, 0.75, 0.5, 0.25], 0.6), [0.6, 0.5, 0.25])
            r1["label"] = "m"
            self.assertIn("| 0.5 | ", sdedit.table([r1]))
            with self.assertRaises(SystemExit):
                sdedit.main(["--model", paths[0], "--probe", os.path.join(d, "probe.pt"), "--levels", "0,1.5"])

    def test_subject_weighted_autoencoder_loss(self):
        """--fg-weight: the weight map marks exactly the pixels a subject changes (plus a 2-pixel rim)
        and the ae stage trains with it."""
        from world import World
        w = World(seed=3, size=64)
        video, scenes = w.batch(0, 3, 4, "cpu")
        wt = train.subject_weight(video, scenes, w, 0, 20.0)
        self.assertEqual(tuple(wt.shape), (3, 4, 1, 64, 64))
        self.assertEqual(set(torch.unique(wt).tolist()) <= {1.0, 21.0}, True)
        frac = float((wt > 1).float().mean())
        self.assertGreater(frac, 0.002)
        self.assertLess(frac, 0.3)
        # a clip without subjects has no weighted pixels
        bare = [dict(s, subjects=[]) for s in scenes]
        from world import render
        self.assertEqual(float((train.subject_weight(render(bare, 4, 64), bare, w, 0, 20.0) > 1).sum()), 0.0)
        with tempfile.TemporaryDirectory() as d:
            out = run("ae", d, "--steps", "1", "--fg-weight", "20")
            self.assertIn("subject psnr", out)
            self.assertIn("stage=ae step=1/1 done", out)

    def test_subject_weighted_flow_matching(self):
        """teacher --fg-weight: the latent pool keeps each clip's subject cells (latent_mask of the pixel
        mask), the loss weighs them, and --init-from warm-starts a teacher from another one's weights."""
        m = torch.zeros(1, 8, 1, 16, 16)
        m[0, 5, 0, 9, 3] = 1.0  # one pixel of video frame 5 -> latent frame 1, cell (1, 0) of an 8x8 grid
        lm = train.latent_mask(m, (1, 2, 4, 2, 2))
        self.assertEqual(tuple(lm.shape), (1, 2, 1, 2, 2))
        self.assertEqual(lm.nonzero().tolist(), [[0, 1, 0, 1, 0]])
        a, b = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)
        self.assertAlmostEqual(float(train.weighted_mse(a, b, torch.ones(2, 3, 1, 5, 5))),
                               float(torch.nn.functional.mse_loss(a, b)), places=5)
        w = torch.ones(2, 3, 1, 5, 5)
        w[0, 0, 0, 0, 0] = 100.0
        self.assertGreater(float(train.weighted_mse(a, b, w)), 0.0)
        with tempfile.TemporaryDirectory() as d:
            run("ae", d, "--steps", "1")
            self.assertIn("step=1/1 done", run("teacher", d, "--steps", "1", "--fg-weight", "8"))
            args = train.parse(["--stage", "teacher", "--ckpt-dir", d, "--micro", "--fg-weight", "8"])
            cfg = train.load_cfg(args, "mha")
            data = train.Data(args, cfg, torch.device("cpu"))
            enc = train.load_encoder(args, cfg, torch.device("cpu"))
            pool = train.LatentPool(data, enc, torch.device("cpu"), 3, 2, 1, 0, masks=True)
            x0, scenes, mask = pool.sample(2)
            self.assertEqual(mask.shape[:2], x0.shape[:2])
            self.assertEqual(tuple(mask.shape[2:]), (1,) + tuple(x0.shape[3:]))
            self.assertGreater(float(mask.sum()), 0.0)  # every world clip has a subject
            self.assertLess(float(mask.mean()), 0.6)
            # warm start: a second folder's teacher begins from the first one's weights
            with tempfile.TemporaryDirectory() as d2:
                run("ae", d2, "--steps", "1")
                out = run("teacher", d2, "--steps", "1", "--init-from", os.path.join(d, "teacher.pt"))
                self.assertIn("step=1/1 done", out)
                with self.assertRaises(SystemExit):
                    run("teacher", os.path.join(d2, "x"), "--steps", "1", "--init-from", os.path.join(d, "ae.pt"))

    def test_kept_probe(self):
        """The evaluation's probe kept in git (tools/eval/probes/probe3.pt, bf16) loads at its width
        and reads the world's real renders as its evaluations did (91-100% per attribute there)."""
        from eval.probe import ATTRS, label_tensor, load_probe
        from world import World
        probe, steps = load_probe(os.path.join(_util.ROOT, "tools", "eval", "probes", "probe3.pt"))
        self.assertEqual((probe.width, steps), (64, 3000))
        video, scenes = World(seed=123, size=128).batch(5000, 16, 12, "cpu")
        with torch.no_grad():
            logits, _ = probe.eval()(video)
        labels = label_tensor(scenes, 0, 12, "cpu")
        hits = sum(int((logits[a].argmax(-1) == labels[a]).sum()) for a in ATTRS)
        self.assertGreaterEqual(hits / (16 * len(ATTRS)), 0.9)

    def test_probe_softening(self):
        """The probe's training augmentation blurs some clips and leaves the others as they are, with
        colours kept (the mean of a blurred clip barely moves)."""
        from eval.probe import soften
        from world import World
        video, _ = World(seed=5, size=64).batch(0, 8, 4, "cpu")
        out = soften(video, torch.Generator().manual_seed(0))
        same = [(out[b] == video[b]).all().item() for b in range(8)]
        self.assertTrue(any(same) and not all(same))
        blurred = soften(video, torch.Generator().manual_seed(0), noise=0.0)
        for b in range(8):
            if not same[b]:
                self.assertLess(abs(float(out[b].mean() - video[b].mean())), 0.02)
                self.assertLess(float((blurred[b][..., 1:] - blurred[b][..., :-1]).abs().mean()),
                                float((video[b][..., 1:] - video[b][..., :-1]).abs().mean()))

    def test_subject_on_screen(self):
        """subject_on_screen follows the renderer: a subject in the middle of a static shot is in the
        picture and drawn; one parked past the frame's edge is out of it and changes no pixel; a drifting
        one leaves; zooming in crops one near the edge. shown_chunks/hits_where count by chunk."""
        import copy
        from eval import metrics as M
        from world import render, sample_scene, subject_on_screen
        base = sample_scene(7, 24, 0.0, 12)
        base.update(setting="sky", camera="static", camera_frame=0, particles="none")
        base["subjects"] = base["subjects"][:1]
        base["subjects"][0].update(kind="ball", size="small", motion="spinning", speed="normal", x0=0.0,
                                   y0=0.2, enter_frame=0)

        def scene(cam="static", **sub):
            s = copy.deepcopy(base)
            s["camera"] = cam
            s["subjects"][0].update(sub)
            return s

        def repaint(s):  # the same scene with the subject in another colour
            s = copy.deepcopy(s)
            s["subjects"][0]["colour"] = "red" if s["subjects"][0]["colour"] != "red" else "blue"
            return s

        centre, outside = scene(), scene(x0=1.3)
        on = subject_on_screen([centre, outside], 24)
        self.assertTrue(bool(on[0].all()) and not bool(on[1].any()))
        for s, drawn in ((centre, True), (outside, False)):
            a, b = render([s], 24, 32), render([repaint(s)], 24, 32)
            self.assertEqual(bool((a != b).any()), drawn)
        drift = subject_on_screen([scene(motion="drifting_right", speed="fast", x0=0.6)], 24)[0]
        self.assertTrue(bool(drift[0]) and not bool(drift[-1]))
        zoom = subject_on_screen([scene("zoom_in", x0=0.8)], 48)[0]
        self.assertTrue(bool(zoom[0]) and not bool(zoom[-1]))
        shown = M.shown_chunks([centre, outside], 2, 12)
        self.assertEqual([m.tolist() for m in shown], [[True, False], [True, False]])
        chunks = [({"subject": torch.tensor([True, True])}, None), ({"subject": torch.tensor([False, True])}, None)]
        self.assertEqual(M.hits_where(chunks, shown, "subject"), 1)  # of the 2 clips shown
        # subject_radius: a small subject is drawn 0.22 x 0.72 of the half-frame, a zoom-in enlarges it
        # up to 1.8x; subject_by_size bins the clips that show the subject by that radius
        from world import subject_radius
        rad = subject_radius([centre, scene("zoom_in")], 48)
        self.assertTrue(torch.allclose(rad[0], torch.full((48,), 0.22 * 0.72 * 64)))
        self.assertAlmostEqual(float(rad[1, 0]), 0.22 * 0.72 * 64, places=4)
        self.assertTrue(bool((rad[1, 1:] >= rad[1, :-1]).all()) and float(rad[1, -1]) > 1.3 * float(rad[1, 0]))
        self.assertLessEqual(float(rad[1].max()), 1.8 * float(rad[1, 0]) + 1e-4)
        by = M.subject_by_size([[1, 0], [1, 1]], [centre, outside], 12)  # the outside one is never shown
        self.assertEqual(list(by), M.size_bins())
        self.assertEqual(by["< 12 px"], [1, 2])
        self.assertEqual(sum(n for _, n in by.values()), 2)
        big = scene(size="big")  # 18.3 pixels: the third bin
        self.assertEqual(M.subject_by_size([[1, 1]], [big], 12)["16-22 px"], [2, 2])

    def test_probe_width(self):
        """A probe keeps its width in its checkpoint (in a folder it creates): it resumes and loads at
        that width, and a contradicting width is refused; files written before the width was kept
        load at 32."""
        from eval.probe import load_probe, train_probe
        from world import World
        world = World(seed=5, size=32)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "new", "probe.pt")
            probe, done = train_probe(world, path, 1, 2, "cpu", 5, chunk_frames=4, max_start_chunk=0,
                                      log=lambda s: None, width=16)
            self.assertTrue(done)
            self.assertEqual(load_probe(path, 32)[0].width, 16)
            probe, done = train_probe(world, path, 2, 2, "cpu", 5, chunk_frames=4, max_start_chunk=0,
                                      log=lambda s: None)
            self.assertEqual((probe.width, load_probe(path, 32)[1]), (16, 2))
            with self.assertRaises(SystemExit):
                train_probe(world, path, 3, 2, "cpu", 5, chunk_frames=4, max_start_chunk=0, log=lambda s: None,
                            width=32)
            ck = torch.load(path, weights_only=False)
            del ck["width"]
            torch.save(ck, path)
            with self.assertRaises(RuntimeError):  # 16-wide weights do not fit the default 32
                load_probe(path, 32)

    def test_widened_autoencoder(self):
        """--ae-width scales the autoencoder's channels; resuming keeps the checkpoint's shape, a
        contradicting width is refused, and the encoder of later stages follows the checkpoint."""
        with tempfile.TemporaryDirectory() as d:
            self.assertIn("stage=ae step=1/1 done", run("ae", d, "--steps", "1", "--ae-width", "2"))
            ck = train.load_ckpt(os.path.join(d, "ae.pt"))
            base = train.load_cfg(train.parse(["--stage", "ae", "--ckpt-dir", d, "--micro"]), "mla")
            self.assertEqual(ck["cfg"]["decoder"]["channels"], [2 * c for c in base["decoder"]["channels"]])
            self.assertEqual(ck["cfg"]["encoder"]["channels"], 2 * base["encoder"]["channels"])
            self.assertIn("stage=ae step=2/2 done", run("ae", d, "--steps", "2"))
            with self.assertRaises(SystemExit):
                run("ae", d, "--steps", "3", "--ae-width", "3")
            enc = train.load_encoder(train.parse(["--stage", "teacher", "--ckpt-dir", d, "--micro"]), base, "cpu")
            self.assertEqual(sum(p.numel() for p in enc.parameters()),
                             sum(p.numel() for p in train.build_ae(ck["cfg"])[0].parameters()))

    def test_paired_interval(self):
        """The paired bootstrap interval of MLA / MHA - 1: empty when the two hit the same clips, around
        the true ratio when one hits twice as often, wider for fewer videos, the same for the same seed."""
        from eval import metrics as M
        g = torch.Generator().manual_seed(3)
        a = (torch.rand(48, 5, generator=g) < 0.6).int().tolist()
        self.assertEqual(M.paired_interval(a, a), (0.0, 0.0))
        half = [[1, 0] * 2 for _ in range(40)]  # 50% of the clips of every video
        lo, hi = M.paired_interval([[1] * 4] * 40, half)
        self.assertAlmostEqual(lo, 1.0)
        self.assertAlmostEqual(hi, 1.0)
        b = (torch.rand(48, 5, generator=g) < 0.6).int().tolist()
        wide, narrow = M.paired_interval(a[:12], b[:12]), M.paired_interval(a, b)
        self.assertGreater(wide[1] - wide[0], narrow[1] - narrow[0])
        self.assertTrue(narrow[0] < sum(map(sum, a)) / sum(map(sum, b)) - 1 < narrow[1])
        self.assertEqual(M.paired_interval(a, b), narrow)
        # paired.py: the same comparison from result files, found by label in --dir or by path
        from eval import paired
        with tempfile.TemporaryDirectory() as d:
            for name, hits in (("a", a), ("b", b), ("short", a[:12])):
                with open(os.path.join(d, f"eval_{name}.json"), "w") as f:
                    json.dump({"name": name, "chunks": 5, "hits": {"subject": hits, "colour": hits}}, f)
            with redirect_stdout(io.StringIO()) as out:
                rows = paired.main(["--dir", d, "a:" + os.path.join(d, "eval_b.json"), "--attrs", "subject"])
            diff, lo, hi = rows[0][1]["subject"]
            self.assertAlmostEqual(diff, sum(map(sum, a)) / sum(map(sum, b)) - 1)
            self.assertEqual((lo, hi), narrow)
            self.assertIn("| a against ", out.getvalue())
            for pair, msg in (("a:short", "judged on different videos"), ("a:c", "no eval_c.json"),
                              ("a", "a pair is A:B")):
                with self.assertRaises(SystemExit) as e:
                    paired.main(["--dir", d, pair, "--attrs", "subject"])
                self.assertIn(msg, str(e.exception))
            with self.assertRaises(SystemExit) as e:
                paired.main(["--dir", d, "a:b"])
            self.assertIn("no readings of motion, setting, camera", str(e.exception))

    def test_guided_generation(self):
        """The evaluation's classifier-free guidance: scale 1 is the plain sampler, scale 0 samples the
        empty prompt exactly as the plain sampler does when given it (its own cache), scale 3 differs."""
        from eval import metrics as M
        from world import World
        model = _util.small_model("mha", dtype=torch.float32).eval()
        model.cfg["sampler"] = {"kind": "euler", "timesteps": [1000.0, 500.0], "shift": 3.0, "context_t": 0}
        vocab = _util.vocabulary()
        cv = model.cfg["stream"]["chunk_frames"] * model.cfg["video"]["temporal_stride"]
        scenes = M.eval_scenes(World(seed=M.WORLD_SEED, size=32), 2, 3 * cv)
        cpu = torch.device("cpu")
        gen = lambda sc, g: M.generate(model, vocab, sc, 3, cpu, seed=5, switch=False, guidance=g)  # noqa: E731
        plain = gen(scenes, 1.0)
        self.assertTrue(torch.equal(plain, M.generate(model, vocab, scenes, 3, cpu, seed=5, switch=False)))
        empty = [dict(s, prompt="", prompt2="") for s in scenes]
        self.assertTrue(torch.equal(gen(scenes, 0.0), gen(empty, 1.0)))
        guided = gen(scenes, 3.0)
        self.assertTrue(torch.isfinite(guided).all())
        self.assertGreater(float((guided - plain).abs().max()), 1e-3)

    def test_misread_sheet_rows(self):
        """misread_sheet.pick: one row per video, new prompted kinds first, in clip order."""
        from eval.misread_sheet import pick
        clips = [(0, 0, "car"), (1, 0, "car"), (2, 0, "star"), (0, 1, "car"), (3, 1, "fish"), (4, 2, "car")]
        self.assertEqual(pick(clips, 3), [(0, 0, "car"), (2, 0, "star"), (3, 1, "fish")])
        self.assertEqual(pick(clips, 5), [(0, 0, "car"), (2, 0, "star"), (3, 1, "fish"), (1, 0, "car"),
                                          (4, 2, "car")])
        self.assertEqual(pick([], 4), [])
        from eval.misread_sheet import misread
        read = [(0, 0, "car", "bird"), (1, 0, "star", "star"), (2, 0, "fish", "ring"), (0, 1, "car", "bird")]
        self.assertEqual(misread(read, "bird"), [(0, 0, "car"), (0, 1, "car")])
        self.assertEqual(misread(read, "any"), [(0, 0, "car"), (2, 0, "fish"), (0, 1, "car")])
        # a round trip: only the clips whose real render is read right (video 2's is not)
        real = [(0, 0, "car", "car"), (1, 0, "star", "star"), (2, 0, "fish", "bird"), (0, 1, "car", "car")]
        self.assertEqual(misread(read, "any", real), [(0, 0, "car"), (0, 1, "car")])

    def test_repatch(self):
        """repatch 2x2 -> 1x1: a latent flat over each 2x2 block embeds every pixel as the old patch
        embedding did its block, and the new head's output is the mean of the old head's over the
        block; a size that does not divide the old one is an error."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        cfg = vinit.file_config(cfg, _util.vocabulary())
        old = vinit.random_model(cfg, _util.vocabulary(), 1, "strong").eval()
        state = train.repatch(old.state_dict(), [2, 2], [1, 1], cfg["out_channels"])
        new = vinit.random_model(dict(cfg, patch=[1, 1, 1]), _util.vocabulary(), 2, "strong").eval()
        new.load_state_dict(state)
        torch.manual_seed(0)
        coarse = torch.randn(1, 2, 16, 2, 2)
        x = coarse.repeat_interleave(2, 3).repeat_interleave(2, 4)  # flat over each 2x2 block
        with torch.no_grad():
            t_old = old.patchify(x).view(1, 2, 2, 2, -1)  # [B, F, gh, gw, dim]
            t_new = new.patchify(x).view(1, 2, 4, 4, -1)
            self.assertLess(float((t_new[:, :, ::2, 1::2] - t_old).abs().max()), 1e-5)
            h, e = torch.randn(1, 2, 4, cfg["dim"]), torch.randn(1, 2, cfg["dim"])
            y_old = old.unpatchify(old.head(h, e), 4, 4)  # [B, F, C, 4, 4]
            h_rep = h.view(1, 2, 2, 2, -1).repeat_interleave(2, 2).repeat_interleave(2, 3).reshape(1, 2, 16, -1)
            y_new = new.unpatchify(new.head(h_rep, e), 4, 4)
            mean = torch.nn.functional.avg_pool2d(y_old.flatten(0, 1), 2).view(1, 2, -1, 2, 2)
            self.assertLess(float((y_new[..., 1::2, ::2] - mean).abs().max()), 1e-5)
        with self.assertRaises(SystemExit):
            train.repatch(old.state_dict(), [2, 2], [3, 3], cfg["out_channels"])

    def test_calibrated_conversion(self):
        """convert --init calibrated (calibrate_block) fits one MLA self-attention to what an MHA one
        computes on sample inputs; on other inputs it reproduces the MHA attention's output closer than
        the spectral init (convert_block) does, and refine_block (Adam on the attention's output over
        sample sequences) brings it closer still."""
        load = lambda name: train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs", name)))  # noqa: E731
        cfg_mha, cfg_mla = load("tiny-mha.json"), load("tiny.json")
        mha = vinit.random_model(cfg_mha, _util.vocabulary(), 4, "strong").eval()
        dim = cfg_mha["dim"]
        gen = torch.Generator().manual_seed(0)
        scale = torch.rand(dim, generator=gen) * 2 + 0.2  # anisotropic inputs, as a DiT's are
        shift = torch.randn(dim, generator=gen)
        gh, gw = 4, 4
        frames = cfg_mha["stream"]["chunk_frames"]
        sample = lambda n: torch.randn(n, dim, generator=gen) * scale + shift  # noqa: E731
        x_fit, x = sample(4096), sample(32 * frames * gh * gw).view(32, frames * gh * gw, dim)
        errs = {}
        with torch.no_grad():
            ref, _ = mha.blocks[0].self_attn(x, *mha.rope_tables(0, frames, gh, gw, x.device))
            for init, fn in (("spectral", train.convert_block), ("calibrated", train.calibrate_block)):
                mla = vinit.random_model(cfg_mla, _util.vocabulary(), 5).eval()
                fn(mha.blocks[0], mla.blocks[0], mla.cfg, x_fit)
                out, _ = mla.blocks[0].self_attn(x, *mla.rope_tables(0, frames, gh, gw, x.device))
                errs[init] = float((out - ref).norm() / ref.norm())
            seqs = sample(64 * frames * gh * gw).view(64, frames * gh * gw, dim)
            before, after = train.refine_block(mha.blocks[0], mla.blocks[0],
                                               (seqs, *mha.rope_tables(0, frames, gh, gw, x.device)),
                                               mla.rope_tables(0, frames, gh, gw, x.device), 100)
            out, _ = mla.blocks[0].self_attn(x, *mla.rope_tables(0, frames, gh, gw, x.device))
            errs["refined"] = float((out - ref).norm() / ref.norm())
        self.assertLess(errs["calibrated"], 0.5 * errs["spectral"], errs)
        self.assertLess(after, 0.9 * before)
        self.assertLess(errs["refined"], errs["calibrated"], errs)

    def test_conversion_report(self):
        """tools/eval/conversion.py: per block, the self-attention error of each part of the MLA form
        and of the whole spectral and calibrated conversions, as a table and a JSON file."""
        from eval import conversion
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as d:
            run("ae", d, "--steps", "1")
            run("teacher", d, "--steps", "2")
            out = io.StringIO()
            with redirect_stdout(out):
                conversion.main(["--ckpt-dir", d, "--micro", "--clips", "8", "--refine-steps", "20",
                                 "--json", os.path.join(d, "c.json")])
            self.assertIn("| shared key rank1 |", out.getvalue())
            with open(os.path.join(d, "c.json")) as f:
                rep = json.load(f)
            self.assertEqual((rep["source"], rep["step"], len(rep["blocks"])), ("teacher", 2, 2))
            for blk in rep["blocks"]:
                self.assertEqual(set(blk), {"partial rope", "shared key mean", "shared key rank1", "kv latent",
                                            "values only", "keys only", "q latent", "spectral", "calibrated",
                                            "calibrated, refined"})
                self.assertTrue(all(0 <= v < 2 for v in blk.values()), blk)
                self.assertLess(blk["calibrated"], blk["spectral"])

    def test_mla_student_from_mha_student(self):
        """convert --source student makes an MLA copy of the finished MHA student (its EMA; the
        teacher stays the DMD score), and student --arch mla --start convert distills on from that
        copy, with no fine-tune in the folder."""
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as d:
            run("ae", d, "--steps", "1")
            run("teacher", d, "--steps", "1")
            run("student", d, "--arch", "mha", "--steps", "2", "--fake-warmup", "1")
            self.assertIn("from student_mha step 2", run("convert", d, "--source", "student"))
            conv = train.load_ckpt(os.path.join(d, "convert.pt"))
            student = train.load_ckpt(os.path.join(d, "student_mha.pt"))["ema"]
            teacher = train.load_ckpt(os.path.join(d, "teacher.pt"))["ema"]
            self.assertEqual(conv["source"], "student_mha")
            name = "blocks.0.ffn.0.weight"
            self.assertTrue(torch.equal(conv["ema"][name], student[name]))
            self.assertFalse(torch.equal(conv["ema"][name], teacher[name]))
            carry = os.path.join(d, "carry")
            with redirect_stdout(io.StringIO()):
                train.main(["--stage", "student", "--arch", "mla", "--ckpt-dir", d, "--start", "convert", "--pack", carry])
            self.assertEqual(sorted({f.split(".")[0] for f in os.listdir(carry)}), ["convert", "teacher"])
            self.assertFalse(os.path.exists(os.path.join(d, "finetune.pt")))
            out = run("student", d, "--arch", "mla", "--start", "convert", "--steps", "1", "--fake-warmup", "1")
            self.assertIn("stage=student_mla step=1/1 done", out)

    def test_decoder_fine_tune_of_a_model_file(self):
        """ae --decoder-only --init-from FILE: the file's autoencoder with the encoder frozen (the
        latent space kept) and the decoder trained; export --dit-from draws that file's DiT through
        the new decoder. Resuming the other way round is an error."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        src = vinit.random_model(cfg, _util.vocabulary(), 4, "strong").eval()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "twin.safetensors")
            vinit.export(src, _util.vocabulary(), path, int8=False, dtype="F32")
            ck = os.path.join(d, "ck")
            out = run("ae", ck, "--init-from", path, "--decoder-only", "--steps", "2", "--fg-weight", "4")
            self.assertIn("stage=ae step=2/2 done", out)
            self.assertNotIn("step=0/0", out)
            ae = train.load_ckpt(os.path.join(ck, "ae.pt"))
            self.assertTrue(ae["decoder_only"])
            self.assertEqual(ae["from"], "twin.safetensors")
            for k, v in src.encoder.state_dict().items():
                self.assertTrue(torch.equal(ae["encoder"][k], v), k)
            self.assertFalse(all(torch.equal(ae["decoder"][k], v) for k, v in src.decoder.state_dict().items()))
            self.assertIn("stage=ae step=3/3 done", run("ae", ck, "--steps", "3"))  # resumes decoder-only
            ae = train.load_ckpt(os.path.join(ck, "ae.pt"))
            self.assertTrue(all(torch.equal(ae["encoder"][k], v) for k, v in src.encoder.state_dict().items()))
            whole = os.path.join(d, "whole")
            run("ae", whole, "--steps", "2")
            with self.assertRaises(SystemExit) as e:  # an autoencoder trained whole does not go on frozen
                run("ae", whole, "--steps", "3", "--decoder-only")
            self.assertIn("trained whole", str(e.exception))
            import export
            model, info = export.build(ck, "mha", "student", dit_from=path)
            self.assertIn("the DiT of twin.safetensors", info)
            self.assertIn("the decoder of an earlier twin.safetensors, trained 3 steps more", info)
            sd = model.state_dict()
            self.assertTrue(torch.equal(sd["blocks.0.ffn.0.weight"], src.state_dict()["blocks.0.ffn.0.weight"]))
            self.assertTrue(all(torch.equal(sd["decoder." + k], v) for k, v in ae["decoder"].items()))
            with self.assertRaises(SystemExit):
                export.main(["--ckpt-dir", ck, "--dit-from", path, "--out-dir", d])  # --arch both
            with self.assertRaises(SystemExit):
                export.build(ck, "mla", "student", dit_from=path)  # an MHA file as MLA

    def test_ae_gan(self):
        """ae --gan-weight: a PatchGAN learns from the first step, its term enters the decoder's loss
        after --gan-start steps; the checkpoint keeps the discriminator, and a resume without
        --gan-weight is an error. The discriminator gives one logit per 8 x 8 pixels of each frame,
        and the adversarial weight is VQGAN's gradient ratio at the decoder's last layer."""
        with tempfile.TemporaryDirectory() as d:
            out = run("ae", d, "--steps", "3", "--fg-weight", "4", "--gan-weight", "0.5", "--gan-start", "1")
            lines = [ln for ln in out.splitlines() if ln.startswith("ae ")]
            self.assertEqual(len(lines), 3)
            self.assertIn(" disc ", lines[0])
            self.assertNotIn(" gan ", lines[0])  # the discriminator alone for --gan-start steps
            self.assertTrue(all(" gan " in ln for ln in lines[1:]), lines)
            ae = train.load_ckpt(os.path.join(d, "ae.pt"))
            self.assertEqual((ae["gan_weight"], ae["gan_from"]), (0.5, 0))
            disc = train.PatchDisc()
            disc.load_state_dict(ae["disc"])
            self.assertEqual(tuple(disc(torch.rand(2, 3, 3, 32, 32)).shape), (2, 3, 1, 4, 4))
            self.assertIn("stage=ae step=4/4 done",
                          run("ae", d, "--steps", "4", "--fg-weight", "4", "--gan-weight", "0.5", "--gan-start", "1"))
            with self.assertRaises(SystemExit) as e:
                run("ae", d, "--steps", "5")
            self.assertIn("trained with a discriminator", str(e.exception))
        # the adaptive weight: gan_weight times |grad rec| / |grad gan| at the last layer
        last = torch.nn.Parameter(torch.randn(4))
        rec_loss = (3 * last).sum()
        disc = lambda x: x.view(1, 1, 1, 2, 2)  # noqa: E731
        rec = last * 1.0
        g, w = train.gan_terms(disc, rec, None, last, rec_loss, 0.5, 1.0)
        self.assertAlmostEqual(float(g), -float(last.mean()), places=6)
        self.assertAlmostEqual(float(w), 0.5 * 6.0 / 0.5, places=4)  # |3 * 1| * 2 / |0.25 * 2|

    def test_latent_channels(self):
        """ae --latent-channels N: an autoencoder of other latents from scratch; the teacher and the
        export in its folder follow its latents; a mismatch (another --latent-channels on the folder,
        a teacher --init-from a file of other latents, a model file's autoencoder) is an error."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        with tempfile.TemporaryDirectory() as d:
            ck = os.path.join(d, "ck")
            self.assertIn("stage=ae step=2/2 done", run("ae", ck, "--steps", "2", "--latent-channels", "8"))
            ae = train.load_ckpt(os.path.join(ck, "ae.pt"))
            self.assertEqual(ae["cfg"]["video"]["latent_channels"], 8)
            self.assertEqual(tuple(ae["encoder"]["conv_out.weight"].shape[:1]), (8,))
            with self.assertRaises(SystemExit) as e:
                run("ae", ck, "--steps", "3", "--latent-channels", "4")
            self.assertIn("latents of 8 channels", str(e.exception))
            self.assertIn("stage=teacher step=2/2 done", run("teacher", ck, "--steps", "2"))
            t = train.load_ckpt(os.path.join(ck, "teacher.pt"))
            self.assertEqual((t["cfg"]["in_channels"], t["cfg"]["out_channels"]), (8, 8))
            import export
            with redirect_stdout(io.StringIO()):
                path = export.export(ck, os.path.join(d, "out"), source="teacher", archs=("mha",))[0]
            model, _, _ = vinit.load(path)
            self.assertEqual((model.cfg["in_channels"], model.cfg["video"]["latent_channels"]), (8, 8))
            x = torch.randn(1, 3, 8, 4, 4)
            self.assertEqual(tuple(model.decoder(x)[0].shape[2:]), (3, 32, 32))
            # a teacher of 16-channel latents cannot start a teacher on these
            src = os.path.join(d, "twin.safetensors")
            vinit.export(vinit.random_model(cfg, _util.vocabulary(), 4, "strong").eval(), _util.vocabulary(), src,
                         int8=False, dtype="F32")
            other = os.path.join(d, "other")
            shutil.copytree(ck, other, ignore=shutil.ignore_patterns("teacher*"))
            with self.assertRaises(SystemExit) as e:
                run("teacher", other, "--steps", "2", "--init-from", src)
            self.assertIn("latents of 16 channels", str(e.exception))
            with self.assertRaises(SystemExit) as e:
                run("ae", os.path.join(d, "imp"), "--init-from", src, "--latent-channels", "8")
            self.assertIn("latents of 16 channels", str(e.exception))

    def test_wider_teacher_and_student_apart(self):
        """--ffn-dim grows a teacher's feed-forward layers from a narrower start with silent new units
        (the same function at the start); --student-from starts a student of its own, narrower shape
        from a model file, distils it against the wide teacher, resumes it, and exports it."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        src = vinit.random_model(cfg, _util.vocabulary(), 4, "strong").eval()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "twin.safetensors")
            vinit.export(src, _util.vocabulary(), path, int8=False, dtype="F32")
            wide = train.file_config(dict(cfg, ffn_dim=2 * cfg["ffn_dim"]), _util.vocabulary())
            model = train.make_dit(wide, torch.device("cpu")).eval()
            with redirect_stdout(io.StringIO()):
                model.load_state_dict(train.teacher_start(path, wide))
            x = torch.randn(2, 3, cfg["in_channels"], 4, 4)
            ids, lens = torch.tensor([[5, 9, 2, 0], [7, 3, 0, 0]]), torch.tensor([3, 2])
            with torch.no_grad():
                a = src.dit_pass(x, torch.tensor([500.0, 900.0]), src.cross_kv(src.encode_text(ids, lens)))[0]
                b = model.dit_pass(x, torch.tensor([500.0, 900.0]), model.cross_kv(model.encode_text(ids, lens)))[0]
            self.assertLess(float((a - b).abs().max()), 1e-4 * float(a.abs().max()))
            self.assertEqual(model.state_dict()["blocks.0.ffn.0.weight"].shape[0], 2 * cfg["ffn_dim"])
            ck = os.path.join(d, "ck")
            run("ae", ck, "--init-from", path)
            out = run("teacher", ck, "--steps", "1", "--init-from", path, "--ffn-dim", str(2 * cfg["ffn_dim"]))
            self.assertIn(f"widened from {cfg['ffn_dim']} to {2 * cfg['ffn_dim']}", out)
            self.assertEqual(train.load_ckpt(os.path.join(ck, "teacher.pt"))["cfg"]["ffn_dim"], 2 * cfg["ffn_dim"])
            with self.assertRaises(SystemExit):  # the folder's teacher has another width
                run("teacher", ck, "--steps", "2", "--ffn-dim", str(3 * cfg["ffn_dim"]))
            with self.assertRaises(SystemExit):  # feed-forward layers grow, never shrink
                train.widen_ffn(src.state_dict(), cfg["ffn_dim"], cfg["ffn_dim"] // 2)
            # the MHA student starts from the narrow file, keeps its shape, resumes, exports
            out = run("student", ck, "--arch", "mha", "--student-from", path, "--steps", "1", "--fake-warmup", "1")
            self.assertIn(f"starts from {path}", out)
            self.assertIn("stage=student_mha step=1/1 done", out)
            self.assertIn("stage=student_mha step=2/2 done",
                          run("student", ck, "--arch", "mha", "--steps", "2", "--fake-warmup", "1"))
            sck = train.load_ckpt(os.path.join(ck, "student_mha.pt"))
            self.assertEqual(sck["cfg"]["ffn_dim"], cfg["ffn_dim"])
            self.assertEqual(sck["cfg"]["sampler"]["kind"], "renoise")
            self.assertEqual(sck["from"], "twin.safetensors")  # kept through the resume
            import export
            m, info = export.build(ck, "mha", "student")
            self.assertEqual(m.cfg["ffn_dim"], cfg["ffn_dim"])
            self.assertIn("student_mha step 2 started from twin.safetensors", info)
            # an MLA student of its own from an MLA file; the wrong attention is an error
            mcfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny.json")))
            mpath = os.path.join(d, "mla.safetensors")
            vinit.export(vinit.random_model(mcfg, _util.vocabulary(), 5).eval(), _util.vocabulary(), mpath)
            self.assertIn("stage=student_mla step=1/1 done",
                          run("student", ck, "--arch", "mla", "--student-from", mpath, "--steps", "1",
                              "--fake-warmup", "1"))
            shutil.copytree(ck, os.path.join(d, "ck2"))
            os.remove(os.path.join(d, "ck2", "student_mla.pt"))
            with self.assertRaises(SystemExit) as e:
                run("student", os.path.join(d, "ck2"), "--arch", "mla", "--student-from", path, "--steps", "1")
            self.assertIn("is an mha model, not mla", str(e.exception))
            # --ffn-dim with --student-from: a student wider than its file (the file's function at the
            # start, as a widened teacher), exported at its width; a folder's student keeps its width
            out = run("student", os.path.join(d, "ck2"), "--arch", "mla", "--student-from", mpath, "--steps", "1",
                      "--fake-warmup", "1", "--ffn-dim", str(3 * cfg["ffn_dim"] // 2))
            self.assertIn(f"widened from {mcfg['ffn_dim']} to {3 * cfg['ffn_dim'] // 2}", out)
            self.assertIn("stage=student_mla step=1/1 done", out)
            m, _ = export.build(os.path.join(d, "ck2"), "mla", "student")
            self.assertEqual(m.cfg["ffn_dim"], 3 * cfg["ffn_dim"] // 2)
            self.assertEqual(m.state_dict()["blocks.0.ffn.0.weight"].shape[0], 3 * cfg["ffn_dim"] // 2)
            with self.assertRaises(SystemExit) as e:
                run("student", os.path.join(d, "ck2"), "--arch", "mla", "--steps", "2", "--ffn-dim", str(2 * cfg["ffn_dim"]))
            self.assertIn("a student of another width starts in a new folder", str(e.exception))
            os.remove(os.path.join(d, "ck2", "student_mha.pt"))
            with self.assertRaises(SystemExit) as e:  # a student from the teacher has the teacher's width
                run("student", os.path.join(d, "ck2"), "--arch", "mha", "--steps", "1", "--ffn-dim", str(3 * cfg["ffn_dim"]))
            self.assertIn("widens a student that starts apart from its teacher", str(e.exception))

    def test_chain_from_model_file(self):
        """A new chain from a shipped model file (the int8 export): ae --init-from takes its
        autoencoder as finished, teacher --init-from its DiT and text encoder (dequantized), here
        made shallower and of 1x1 patches; the chain after the teacher keeps its patch size, and a
        contradicting --patch or an MLA file as a teacher's start are errors."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        src = vinit.random_model(cfg, _util.vocabulary(), 4, "strong").eval()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "twin.safetensors")
            vinit.export(src, _util.vocabulary(), path, int8=True)
            ck = os.path.join(d, "ck")
            self.assertIn("stage=ae step=0/0 done", run("ae", ck, "--init-from", path))
            ae = train.load_ckpt(os.path.join(ck, "ae.pt"))
            self.assertTrue(torch.equal(ae["encoder"]["stages.0.blocks.0.conv.0.weight"],
                                        src.encoder.state_dict()["stages.0.blocks.0.conv.0.weight"]))
            out = run("teacher", ck, "--steps", "1", "--init-from", path, "--patch", "1", "--layers", "1")
            self.assertIn("shrunk from 2 to 1 blocks", out)
            self.assertIn("patches of 2x2 made into 1x1", out)
            self.assertIn("step=1/1 done", out)
            run("convert", ck)
            self.assertEqual(train.load_ckpt(os.path.join(ck, "convert.pt"))["cfg"]["patch"], [1, 1, 1])
            import export  # the export names where the autoencoder came from
            self.assertIn("the autoencoder of an earlier twin.safetensors", export.build(ck, "mha", "teacher")[1])
            with self.assertRaises(SystemExit):
                run("finetune", ck, "--steps", "1", "--patch", "2")
            # the teacher starts from the dequantized weights (int8: within a group's rounding)
            start = train.teacher_start(path, dict(train.load_cfg(train.parse(["--stage", "teacher", "--ckpt-dir",
                                                                               os.path.join(d, "none"), "--micro"]), "mha")))
            w, q = src.state_dict()["blocks.1.ffn.0.weight"], start["blocks.1.ffn.0.weight"]
            self.assertLess(float((w - q).abs().max() / w.abs().max()), 0.01)
            mla = vinit.random_model(train.micro_config(_util.vmodel.load_config(
                os.path.join(_util.ROOT, "resources/configs/tiny.json"))), _util.vocabulary(), 5)
            vinit.export(mla, _util.vocabulary(), os.path.join(d, "mla.safetensors"))
            with self.assertRaises(SystemExit):
                run("teacher", os.path.join(d, "t2"), "--steps", "1", "--init-from", os.path.join(d, "mla.safetensors"))
            with self.assertRaises(SystemExit):
                run("ae", os.path.join(d, "a2"), "--init-from", os.path.join(d, "none.safetensors"))

    def test_grown_teacher(self):
        """--layers with teacher --init-from a shallower teacher: the old blocks are spread out, the new
        ones start as identities, so the grown DiT computes what the old one did (random weights, with
        every block's output projections non-zero); later stages take the teacher's depth."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny-mha.json")))
        cfg = vinit.file_config(cfg, _util.vocabulary())
        old = vinit.random_model(cfg, _util.vocabulary(), 1, "strong").eval()
        grown_state = train.resize_blocks(old.state_dict(), 2, 5)
        new = vinit.random_model(dict(cfg, layers=5), _util.vocabulary(), 2, "strong").eval()
        new.load_state_dict(grown_state)
        # block 0 -> 0, block 1 -> 2; blocks 1, 3, 4 are copies with zeroed outputs
        self.assertTrue(torch.equal(new.blocks[2].ffn[0].weight, old.blocks[1].ffn[0].weight))
        self.assertTrue(torch.equal(new.blocks[1].self_attn.q.weight, old.blocks[0].self_attn.q.weight))
        self.assertEqual(float(new.blocks[4].cross_attn.o.weight.abs().sum()), 0.0)
        self.assertGreater(float(old.blocks[1].cross_attn.o.weight.abs().sum()), 0.0)
        torch.manual_seed(0)
        x, text = torch.randn(1, 2, 16, 4, 4), torch.randn(1, cfg["text_len"], cfg["text_dim"])
        with torch.no_grad():
            a, _ = old.dit_pass(x, 500.0, old.cross_kv(text))
            b, _ = new.dit_pass(x, 500.0, new.cross_kv(text))
        self.assertGreater(float(a.abs().mean()), 0.0)
        self.assertLess(float((a - b).abs().max() / a.abs().max()), 1e-5)
        # shallower: the first and the last block kept (5 -> 4 drops the middle one), none zeroed
        shrunk = train.resize_blocks(grown_state, 5, 4)
        self.assertEqual(sorted({k.split(".")[1] for k in shrunk if k.startswith("blocks.")}), ["0", "1", "2", "3"])
        for n, i in enumerate([0, 1, 3, 4]):
            self.assertTrue(torch.equal(shrunk[f"blocks.{n}.ffn.2.weight"], grown_state[f"blocks.{i}.ffn.2.weight"]))
        with self.assertRaises(SystemExit):
            train.resize_blocks(old.state_dict(), 2, 0)
        with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as d2:
            run("ae", d, "--steps", "1")
            run("teacher", d, "--steps", "1")
            run("ae", d2, "--steps", "1")
            out = run("teacher", d2, "--steps", "1", "--init-from", os.path.join(d, "teacher.pt"), "--layers", "3")
            self.assertIn("grown from 2 to 3 blocks", out)
            self.assertIn("step=1/1 done", out)
            # the chain after the teacher is as deep as it, with no --layers; a contradicting one is an error
            run("convert", d2)
            self.assertEqual(train.load_ckpt(os.path.join(d2, "convert.pt"))["cfg"]["layers"], 3)
            with self.assertRaises(SystemExit):
                run("finetune", d2, "--steps", "1", "--layers", "4")

    def test_data_parallel_helpers(self):
        """Parallel over two gloo processes: rank 0's weights everywhere, gradients averaged (a missing
        one counts as zero), a flag raised in one process raised in all, logged values averaged."""
        with tempfile.TemporaryDirectory() as d:
            codes, outs = launch(2, None, PARALLEL_CHECK, extra_env={"OUT": d})
            self.assertEqual(codes, [0, 0], outs)
            r0, r1 = (torch.load(os.path.join(d, f"rank{r}.pt")) for r in (0, 1))
        for a, b in zip(r0["weights"], r1["weights"]):
            self.assertTrue(torch.equal(a, b))
        self.assertFalse(torch.equal(r0["own"][0], r1["own"][0]))
        for g0, g1, o0, o1 in zip(r0["avg"], r1["avg"], r0["own"], r1["own"]):
            self.assertTrue(torch.equal(g0, g1))
            self.assertTrue(torch.allclose(g0, (o0 + o1) / 2, atol=1e-6))
        self.assertEqual(r0["agree"], (True, False))
        self.assertEqual(r1["agree"], (True, False))
        self.assertEqual(r0["mean"], (0.5,))

    def test_data_parallel_stages(self):
        """teacher, finetune and student under two processes (torchrun's environment, gloo): each
        finishes with one log and one set of files; one-process stages refuse to start."""
        with tempfile.TemporaryDirectory() as d:
            run("ae", d, "--steps", "1")
            for stage, extra in (("teacher", []), ("finetune", []), ("student", ["--arch", "mha"])):
                if stage == "finetune":
                    run("convert", d)
                codes, outs = launch(2, ["--stage", stage, "--ckpt-dir", d, "--steps", "2"] + COMMON + extra)
                self.assertEqual(codes, [0, 0], outs)
                name = "student_mha" if stage == "student" else stage
                self.assertIn(f"STATUS stage={name} step=2/2 done", outs[0])
                self.assertNotIn("STATUS", outs[1])  # rank 1 prints nothing
                self.assertTrue(train.load_ckpt(os.path.join(d, f"{name}.pt"))["done"])
            codes, outs = launch(2, ["--stage", "convert", "--ckpt-dir", d] + COMMON)
            self.assertNotEqual(codes[0], 0)
            self.assertIn("runs in one process", outs[0])

    def test_spectral_conversion_of_dense_attention(self):
        """With d_c and d_q at full rank, the spectral init reproduces the MHA attention logits of
        the nope channels (norm calibration aside), and the rope key is the heads' mean."""
        cfg = train.micro_config(_util.vmodel.load_config(os.path.join(_util.ROOT, "resources/configs/tiny.json")))
        cfg["mla"].update(kv_latent=64, q_latent=64)
        cfg = vinit.file_config(cfg, _util.vocabulary())
        mha_cfg = dict(cfg, attention="mha")
        mha = vinit.random_model(mha_cfg, _util.vocabulary(), 1, "strong")
        mla = vinit.random_model(cfg, _util.vocabulary(), 2, "strong")
        x = torch.randn(256, 64)
        train.convert_block(mha.blocks[0], mla.blocks[0], cfg, x)
        a, b = mha.blocks[0].self_attn, mla.blocks[0].self_attn
        rope_idx, nope_idx = train.rope_channel_split(cfg)
        wq = (a.q.weight * a.norm_q.weight[:, None]).view(2, 32, 64)[:, nope_idx].reshape(-1, 64)
        wk = (a.k.weight * a.norm_k.weight[:, None]).view(2, 32, 64)[:, nope_idx].reshape(-1, 64)
        ref = (x @ wq.T).view(256, 2, 24)[:, 0] @ (x @ wk.T).view(256, 2, 24)[:, 0].T
        got = (x @ (b.q_up.weight @ b.q_down.weight).T).view(256, 2, 24)[:, 0] @ \
              (x @ (b.k_up.weight @ b.kv_down.weight).T).view(256, 2, 24)[:, 0].T
        self.assertLess(float((ref - got).abs().max() / ref.abs().max()), 1e-4)
        self.assertEqual(rope_idx, [0, 1, 2, 3, 12, 13, 22, 23])


if __name__ == "__main__":
    unittest.main()
