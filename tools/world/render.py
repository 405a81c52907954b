"""Batched torch renderer of world scenes (CPU or GPU), deterministic given the scenes.

Screen coordinates: u to the right, v up, both in [-1, 1]. Layers are drawn back to front with
parallax factors (far sky 0.1, hills 0.45, ground and subjects 1, particles 1.25) under a camera
that pans (world offset) and zooms (scale around the centre). Shapes are signed distance functions
with one-pixel anti-aliasing; subjects get simple shading and ground shadows.
"""
import math

import torch

from .scene import COLOURS, SIZES, SPEEDS, SUBJECTS

TIME_PALETTE = {  # zenith, horizon, sun colour, sun height, ambient
    "dawn": ((0.45, 0.60, 0.85), (1.00, 0.74, 0.58), (1.00, 0.86, 0.62), -0.02, (1.00, 0.92, 0.88)),
    "noon": ((0.22, 0.48, 0.95), (0.70, 0.85, 1.00), (1.00, 1.00, 0.88), 0.72, (1.00, 1.00, 1.00)),
    "sunset": ((0.32, 0.22, 0.52), (1.00, 0.48, 0.22), (1.00, 0.45, 0.18), 0.02, (1.00, 0.80, 0.70)),
    "night": ((0.02, 0.03, 0.10), (0.08, 0.10, 0.26), (0.92, 0.92, 0.80), 0.60, (0.45, 0.50, 0.72)),
    "none": ((0.01, 0.01, 0.03), (0.03, 0.02, 0.08), (0.0, 0.0, 0.0), -2.0, (1.00, 1.00, 1.00)),
}
SETTING_IDS = {"sky": 0, "sea": 1, "grass": 2, "desert": 3, "snow": 4, "space": 5}
GROUND_Y = {0: None, 1: -0.8, 2: -0.66, 3: -0.66, 4: -0.66, 5: None}
HORIZON = {0: -1.5, 1: -0.05, 2: -0.12, 3: -0.12, 4: -0.12, 5: -1.5}
MOTION_IDS = {"bouncing": 0, "drifting_left": 1, "drifting_right": 2, "rising": 3, "falling": 4, "orbiting": 5,
              "spinning": 6}
CAMERA_IDS = {"static": 0, "pan_left": 1, "pan_right": 2, "zoom_in": 3, "zoom_out": 4}
PARTICLE_IDS = {"none": 0, "rain": 1, "snow": 2, "fireflies": 3}


def _hash(a, b):
    return torch.frac(torch.sin(a * 12.9898 + b * 78.233) * 43758.5453)


def _wrap(x, lo, hi):
    return lo + torch.remainder(x - lo, hi - lo)


def _cov(d, px):
    """Coverage of a signed distance d (negative inside) with pixel size px."""
    return (0.5 - d / px).clamp(0.0, 1.0)


def _ellipse(qx, qy, cx, cy, rx, ry):
    return (torch.sqrt(((qx - cx) / rx) ** 2 + ((qy - cy) / ry) ** 2) - 1.0) * min(rx, ry)


def _box(qx, qy, cx, cy, hx, hy, round_=0.0):
    dx = (qx - cx).abs() - hx + round_
    dy = (qy - cy).abs() - hy + round_
    return torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2) + torch.maximum(dx, dy).clamp(max=0) - round_


def _star5(qx, qy, r=1.0, rf=0.45):
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    px = qx.abs()
    py = qy
    d1 = (k1x * px + k1y * py).clamp(min=0)
    px, py = px - 2 * d1 * k1x, py - 2 * d1 * k1y
    d2 = (k2x * px + k2y * py).clamp(min=0)
    px, py = px - 2 * d2 * k2x, py - 2 * d2 * k2y
    px = px.abs()
    py = py - r
    bax, bay = rf * (-k1y), rf * k1x - 1.0
    h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0.0, r)
    return torch.sqrt((px - bax * h) ** 2 + (py - bay * h) ** 2) * torch.sign(py * bax - px * bay)


def _mix(a, b, t):
    return a + (b - a) * t


# --------------------------------------------------------------------------------------------
# Subjects: each returns (sdf in unit coordinates, rgb [M, 3, H, W]) from rotated/mirrored unit
# coordinates (qx, qy), unrotated ones (ux, uy) for lighting, colour c [M, 3, 1, 1], time t [M, 1, 1].

def _light(ux, uy):
    nz = torch.sqrt((1.0 - ux * ux - uy * uy).clamp(min=0.0))
    lam = (-0.45 * ux + 0.55 * uy + 0.70 * nz).clamp(min=0.0)
    return lam


def _shape_ball(qx, qy, ux, uy, c, t):
    d = torch.sqrt(qx * qx + qy * qy) - 1.0
    lam = _light(ux, uy).unsqueeze(1)
    band = (qy.abs() < 0.2).float().unsqueeze(1) * (qx.abs() < 0.95).float().unsqueeze(1)
    base = _mix(c, torch.ones_like(c), 0.45 * band)
    rgb = base * (0.30 + 0.80 * lam) + 0.55 * lam ** 24
    return d, rgb


def _shape_cube(qx, qy, ux, uy, c, t):
    d = _box(qx, qy, 0.0, 0.0, 0.8, 0.8, 0.08)
    edge = (d > -0.14).float().unsqueeze(1)
    grad = (0.78 + 0.22 * (uy - ux) / 1.6).unsqueeze(1)
    inner = (_box(qx, qy, -0.15, 0.15, 0.35, 0.35) < 0).float().unsqueeze(1)
    rgb = c * grad * (1.0 - 0.45 * edge) + 0.12 * inner
    return d, rgb


def _shape_ring(qx, qy, ux, uy, c, t):
    r = torch.sqrt(qx * qx + (qy / 0.7) ** 2)
    d = (r - 0.72).abs() * 0.7 - 0.2
    ang = torch.atan2(qy, qx)
    rgb = c * (0.65 + 0.35 * torch.cos(ang - 2.2).unsqueeze(1)) + 0.25 * (torch.cos(ang - 2.2) > 0.9).float().unsqueeze(1)
    return d, rgb


def _shape_star(qx, qy, ux, uy, c, t):
    d = _star5(qx, qy)
    glow = torch.exp(-(qx * qx + qy * qy) * 3.0).unsqueeze(1)
    rgb = c * (0.75 + 0.25 * glow) + 0.25 * glow
    return d, rgb


def _parts(qx, qy, parts):
    """Union of (sdf, rgb) parts, later parts on top. Returns (sdf, rgb)."""
    d = None
    rgb = None
    for pd, pc in parts:
        inside = (pd < 0).float().unsqueeze(1)
        if d is None:
            d, rgb = pd, pc.expand(-1, 3, *pd.shape[1:]) * 1.0
        else:
            rgb = _mix(rgb, pc.expand_as(rgb), inside)
            d = torch.minimum(d, pd)
    return d, rgb


def _shape_bird(qx, qy, ux, uy, c, t):
    flap = torch.sin(t * 11.0)
    dark = c * 0.7
    orange = torch.tensor([1.0, 0.6, 0.1], device=c.device).view(1, 3, 1, 1)
    black = torch.zeros_like(c)
    wing_y = 0.2 + 0.35 * flap
    wq = qy - wing_y * (0.5 + 0.5 * (qx + 0.5).clamp(0, 1))
    parts = [
        (_ellipse(qx, qy, -0.78, 0.05, 0.3, 0.1), dark),
        (_ellipse(qx, qy, 0.0, 0.0, 0.72, 0.36), c),
        (_ellipse(qx, qy, 0.62, 0.2, 0.27, 0.25), c),
        (_ellipse(qx, qy, 0.95, 0.18, 0.18, 0.07), orange),
        (_ellipse(qx, wq, -0.05, 0.2, 0.45, 0.13), dark),
        (_ellipse(qx, qy, 0.7, 0.27, 0.06, 0.06), black),
    ]
    return _parts(qx, qy, parts)


def _shape_fish(qx, qy, ux, uy, c, t):
    wig = 0.25 * torch.sin(t * 9.0)
    dark = c * 0.72
    white = torch.ones_like(c)
    black = torch.zeros_like(c)
    body_d = _ellipse(qx, qy, 0.0, 0.0, 0.8, 0.45)
    stripe = (torch.sin(qx * 11.0) > 0.55).float().unsqueeze(1) * (body_d < -0.05).float().unsqueeze(1)
    body_c = _mix(c.expand(-1, 3, *qx.shape[1:]), dark.expand(-1, 3, *qx.shape[1:]), 0.6 * stripe)
    parts = [
        (_ellipse(qx, qy - wig * (-qx - 0.6).clamp(min=0), -0.9, 0.0, 0.3, 0.38), dark),
        (_ellipse(qx, qy, 0.0, 0.38, 0.3, 0.12), dark),
        (body_d, body_c),
        (_ellipse(qx, qy, 0.45, 0.1, 0.13, 0.13), white),
        (_ellipse(qx, qy, 0.48, 0.1, 0.07, 0.07), black),
    ]
    return _parts(qx, qy, parts)


def _shape_car(qx, qy, ux, uy, c, t):
    black = torch.full_like(c, 0.06)
    gray = torch.full_like(c, 0.6)
    glass = torch.tensor([0.65, 0.82, 1.0], device=c.device).view(1, 3, 1, 1).expand_as(c)
    yellow = torch.tensor([1.0, 0.95, 0.5], device=c.device).view(1, 3, 1, 1).expand_as(c)
    parts = [
        (_box(qx, qy, -0.05, 0.3, 0.5, 0.24, 0.08), c * 0.85),
        (_box(qx, qy, -0.28, 0.3, 0.18, 0.15, 0.03), glass),
        (_box(qx, qy, 0.15, 0.3, 0.18, 0.15, 0.03), glass),
        (_box(qx, qy, 0.0, -0.05, 0.95, 0.26, 0.1), c),
        (_ellipse(qx, qy, 0.88, 0.02, 0.07, 0.07), yellow),
        (_ellipse(qx, qy, -0.55, -0.34, 0.25, 0.25), black),
        (_ellipse(qx, qy, 0.55, -0.34, 0.25, 0.25), black),
        (_ellipse(qx, qy, -0.55, -0.34, 0.1, 0.1), gray),
        (_ellipse(qx, qy, 0.55, -0.34, 0.1, 0.1), gray),
    ]
    return _parts(qx, qy, parts)


def _shape_cloud(qx, qy, ux, uy, c, t):
    d = None
    for cx, cy, r in ((-0.5, -0.08, 0.42), (0.0, 0.2, 0.5), (0.5, -0.08, 0.42), (0.0, -0.18, 0.45), (0.28, 0.12, 0.38)):
        e = torch.sqrt((qx - cx) ** 2 + (qy - cy) ** 2) - r
        d = e if d is None else torch.minimum(d, e)
    base = _mix(c, torch.ones_like(c), 0.3)
    rgb = base * (0.82 + 0.18 * uy.clamp(-1, 1)).unsqueeze(1)
    return d, rgb


SHAPES = {"ball": _shape_ball, "cube": _shape_cube, "ring": _shape_ring, "bird": _shape_bird, "fish": _shape_fish,
          "car": _shape_car, "star": _shape_star, "cloud": _shape_cloud}
ROTATES = {"bird": 0.25, "fish": 0.25, "car": 0.15, "cloud": 0.2}  # spin damping for shapes with an up side


# --------------------------------------------------------------------------------------------
# Per-frame parameters


def _subject_track(s, setting, t, frame, fps, device):
    """Position, angle, facing and visibility of subject s over time t [N] (seconds)."""
    sp = SPEEDS[s["speed"]]
    r = 0.22 * SIZES[s["size"]]
    m = s["motion"]
    ph = s["phase"]
    x0, y0 = s["x0"], s["y0"]
    g = GROUND_Y[SETTING_IDS[setting]]
    if setting == "sea" and s["kind"] == "fish" and m not in ("rising", "falling", "orbiting"):
        y0 = -0.5 + 0.3 * (y0 + 0.25) / 0.6
    if s["kind"] == "car" and g is not None and m in ("drifting_left", "drifting_right", "spinning"):
        y0 = g + 0.6 * r
    facing = torch.full_like(t, float(s["facing"]))
    angle = 0.15 * torch.sin(1.3 * t + ph)
    if m == "bouncing":
        gy = g if g is not None else -0.6
        period = 1.1 / sp
        x = x0 + 0.06 * torch.sin(0.6 * t + ph)
        y = gy + r + 0.6 * torch.abs(torch.sin(math.pi * t / period + ph))
    elif m in ("drifting_left", "drifting_right"):
        d = -1.0 if m == "drifting_left" else 1.0
        x = x0 + d * 0.28 * sp * t
        y = y0 + 0.035 * torch.sin(2.0 * t + ph)
        facing = torch.full_like(t, d)
    elif m in ("rising", "falling"):
        d = 1.0 if m == "rising" else -1.0
        x = x0 + 0.05 * torch.sin(1.5 * t + ph)
        y = _wrap(y0 + d * 0.24 * sp * t, -1.3, 1.3)
    elif m == "orbiting":
        w = 1.5 * sp
        x = 0.45 * torch.cos(w * t + ph)
        y = 0.08 + 0.3 * torch.sin(w * t + ph)
        facing = torch.where(torch.sin(w * t + ph) > 0, -1.0, 1.0).to(t.dtype)
    else:  # spinning
        x = torch.full_like(t, x0)
        y = torch.full_like(t, y0)
        angle = 3.2 * sp * t + ph
    visible = (frame >= s["enter_frame"]).to(t.dtype)
    if s["enter_frame"] > 0:  # enters from the side it moves away from
        te = t - s["enter_frame"] / fps
        side = 1.0 if m == "drifting_left" else -1.0
        x = side * 1.25 - side * 0.28 * sp * te.clamp(min=0)
    return x, y, angle, facing, visible, r


def _params(scenes, n_frames, fps, frame0, device):
    B = len(scenes)
    frame = torch.arange(frame0, frame0 + n_frames, device=device, dtype=torch.float32).repeat(B)
    t = frame / fps
    P = {"t": t, "frame": frame}

    def per_scene(fn, dtype=torch.float32):
        return torch.tensor([fn(s) for s in scenes], device=device, dtype=dtype).repeat_interleave(n_frames, 0)

    P["setting"] = per_scene(lambda s: SETTING_IDS[s["setting"]], torch.long)
    P["particles"] = per_scene(lambda s: PARTICLE_IDS[s["particles"]], torch.long)
    pal = [TIME_PALETTE[s["time"]] for s in scenes]
    for i, key in enumerate(("zenith", "horizon_c", "sun_c")):
        P[key] = torch.tensor([p[i] for p in pal], device=device).repeat_interleave(n_frames, 0)
    P["sun_y"] = torch.tensor([p[3] for p in pal], device=device).repeat_interleave(n_frames, 0)
    P["ambient"] = torch.tensor([p[4] for p in pal], device=device).repeat_interleave(n_frames, 0)
    P["night"] = per_scene(lambda s: 1.0 if s["time"] in ("night", "none") else 0.0)
    cam = per_scene(lambda s: CAMERA_IDS[s["camera"]], torch.long)
    cam_t = (t - per_scene(lambda s: s["camera_frame"] / fps)).clamp(min=0)
    P["cam_x"] = torch.where(cam == 1, -0.22 * cam_t, torch.where(cam == 2, 0.22 * cam_t, torch.zeros_like(t)))
    zin = torch.exp(0.14 * cam_t).clamp(max=1.8)
    zout = (1.8 * torch.exp(-0.14 * cam_t)).clamp(min=1.0)
    P["zoom"] = torch.where(cam == 3, zin, torch.where(cam == 4, zout, torch.ones_like(t)))
    subs = []
    for j in range(2):
        xs, ys, an, fa, vi, rs, cols, kinds = [], [], [], [], [], [], [], []
        for b, s in enumerate(scenes):
            tb = t[b * n_frames:(b + 1) * n_frames]
            fb = frame[b * n_frames:(b + 1) * n_frames]
            if j < len(s["subjects"]):
                sub = s["subjects"][j]
                x, y, a, f, v, r = _subject_track(sub, s["setting"], tb, fb, fps, device)
                c0 = torch.tensor(COLOURS[sub["colour"]], device=device)
                ev = s["event"]
                if j == 0 and ev["type"] == "colour":
                    c1 = torch.tensor(COLOURS[ev["colour"]], device=device)
                    w = ((fb - ev["frame"] + 1) / 3.0).clamp(0, 1)[:, None]
                    col = c0 + (c1 - c0) * w
                else:
                    col = c0.expand(n_frames, 3)
                kinds.append(SUBJECTS.index(sub["kind"]))
            else:
                x = y = a = torch.zeros_like(tb)
                f = torch.ones_like(tb)
                v = torch.zeros_like(tb)
                r = 0.1
                col = torch.zeros(n_frames, 3, device=device)
                kinds.append(0)
            xs.append(x), ys.append(y), an.append(a), fa.append(f), vi.append(v), cols.append(col)
            rs.append(torch.full_like(tb, r))
        subs.append({"x": torch.cat(xs), "y": torch.cat(ys), "angle": torch.cat(an), "facing": torch.cat(fa),
                     "visible": torch.cat(vi), "r": torch.cat(rs), "colour": torch.cat(cols),
                     "kind": torch.tensor(kinds, device=device).repeat_interleave(n_frames, 0)})
    P["subjects"] = subs
    return P


def _slice(P, a, b):
    out = {}
    for k, v in P.items():
        if k == "subjects":
            out[k] = [{kk: vv[a:b] for kk, vv in s.items()} for s in v]
        else:
            out[k] = v[a:b]
    return out


# --------------------------------------------------------------------------------------------
# Frame rendering


def _layer_coords(u, v, P, parallax):
    """World coordinates [N, H, W] of a layer with the given parallax factor."""
    z = 1.0 + (P["zoom"] - 1.0) * parallax
    X = u[None] / z[:, None, None] + (P["cam_x"] * parallax)[:, None, None]
    Y = v[None] / z[:, None, None]
    return X, Y


def _placed_x(s, P):
    """World x at which a subject is drawn: subjects wrap around the camera window (a region wider than
    the picture) so that panning never loses them."""
    return P["cam_x"] + _wrap(s["x"] - P["cam_x"], -1.4, 1.4)


def _render_frames(P, S):
    dev = P["t"].device
    N = P["t"].shape[0]
    c = (torch.arange(S, device=dev, dtype=torch.float32) + 0.5) / S * 2 - 1
    v, u = torch.meshgrid(-c, c, indexing="ij")
    t3 = P["t"][:, None, None]
    setting = P["setting"][:, None, None]
    px = 2.0 / S

    # Sky (far layer)
    X, Y = _layer_coords(u, v, P, 0.1)
    hz = torch.tensor([HORIZON[i] for i in range(6)], device=dev)[P["setting"]][:, None, None]
    k = ((Y - hz) / (1.0 - hz)).clamp(0, 1).unsqueeze(1)
    img = _mix(P["horizon_c"][:, :, None, None], P["zenith"][:, :, None, None], k ** 0.7)
    sun_d = torch.sqrt((X - 0.45) ** 2 + (Y - P["sun_y"][:, None, None]) ** 2)
    sun = (_cov(sun_d - 0.11, px) + 0.35 * torch.exp(-((sun_d / 0.3) ** 2))).clamp(max=1).unsqueeze(1)
    img = _mix(img, P["sun_c"][:, :, None, None], sun * (P["sun_y"] > -1.0).float()[:, None, None, None])
    # Stars (night and space)
    Xs, Ys = _layer_coords(u, v, P, 0.05)
    cell = 22.0
    ix, iy = torch.floor(Xs * cell), torch.floor(Ys * cell)
    h = _hash(ix, iy)
    ox, oy = _hash(ix + 17.0, iy), _hash(ix, iy + 31.0)
    dd = torch.sqrt((Xs * cell - ix - 0.2 - 0.6 * ox) ** 2 + (Ys * cell - iy - 0.2 - 0.6 * oy) ** 2)
    tw = 0.65 + 0.35 * torch.sin(t3 * 4.0 + h * 60.0)
    star = ((h < 0.12).float() * torch.exp(-(dd / 0.22) ** 2) * tw * (0.5 + h * 4)).clamp(max=1)
    star = star * P["night"][:, None, None] * (Ys > hz).float()
    img = img + star.unsqueeze(1) * (1 - img)
    # Space: a planet
    is_space = (setting == 5).float()
    pd = torch.sqrt((X + 0.5) ** 2 + (Y - 0.45) ** 2)
    planet = _cov(pd - 0.22, px) * is_space
    pl = (0.4 + 0.6 * ((-(X + 0.5) * 0.5 + (Y - 0.45) * 0.6) / 0.22 + 0.5).clamp(0, 1)) * (
        0.85 + 0.15 * torch.sin((Y - 0.45) * 40.0))
    img = _mix(img, torch.stack([0.75 * pl, 0.45 * pl, 0.35 * pl], 1), planet.unsqueeze(1))

    # Hills (mid layer)
    Xm, Ym = _layer_coords(u, v, P, 0.45)
    hill = hz + 0.14 * torch.sin(Xm * 2.1 + 1.0) + 0.06 * torch.sin(Xm * 5.3 + 2.0) + 0.1
    dune = hz + 0.12 * torch.abs(torch.sin(Xm * 1.7 + 0.5)) + 0.05
    hill_c = torch.zeros(N, 3, device=dev)
    hill_c[P["setting"] == 2] = torch.tensor([0.12, 0.42, 0.16], device=dev)
    hill_c[P["setting"] == 3] = torch.tensor([0.86, 0.62, 0.34], device=dev)
    hill_c[P["setting"] == 4] = torch.tensor([0.84, 0.88, 0.96], device=dev)
    top = torch.where(setting == 3, dune, hill)
    has_hill = ((setting >= 2) & (setting <= 4)).float()
    hm = _cov(Ym - top, px) * has_hill
    shade = (0.85 + 0.15 * torch.cos(Xm * 3.4 + 1.0)).unsqueeze(1)
    img = _mix(img, hill_c[:, :, None, None] * shade, hm.unsqueeze(1))

    # Ground (near layer)
    Xg, Yg = _layer_coords(u, v, P, 1.0)
    depth = (hz - Yg).clamp(min=0)
    ground = _cov(Yg - hz, px) * ((setting >= 1) & (setting <= 4)).float()
    gcol = torch.zeros(N, 3, *u.shape, device=dev)
    # sea with waves and a beach
    wave = torch.sin(Xg * 9.0 / (depth + 0.25) + t3 * 2.6 + depth * 30.0) * torch.sin(Xg * 3.1 - t3 * 1.3)
    sea = torch.stack([0.05 + 0.0 * wave, 0.28 + 0.05 * wave, 0.50 + 0.08 * wave], 1)
    sea = sea + 0.5 * (wave > 0.75).float().unsqueeze(1) * (depth > 0.05).float().unsqueeze(1)
    shore = -0.66 + 0.025 * torch.sin(Xg * 3.0 + t3 * 1.5)
    beach = _cov(Yg - shore, px).unsqueeze(1)
    sand = torch.tensor([0.88, 0.78, 0.55], device=dev).view(1, 3, 1, 1)
    sea = _mix(sea, sand, beach)
    # grass, desert, snow textures
    blades = torch.sin(Xg * 70.0 + torch.sin(Yg * 45.0) * 2.0) * torch.sin(Yg * 50.0 / (depth + 0.3))
    grass = torch.stack([0.18 + 0.05 * blades, 0.55 + 0.08 * blades, 0.16 + 0.04 * blades], 1)
    ripple = torch.sin(Xg * 14.0 + Yg * 60.0 / (depth + 0.3))
    desert = torch.stack([0.92 + 0.04 * ripple, 0.74 + 0.04 * ripple, 0.44 + 0.03 * ripple], 1)
    snowg = torch.stack([0.92 + 0.03 * ripple, 0.94 + 0.03 * ripple, 0.99 + 0.0 * ripple], 1) - 0.1 * depth.unsqueeze(1)
    for sid, tex in ((1, sea), (2, grass), (3, desert), (4, snowg)):
        m = (P["setting"] == sid)
        if m.any():
            gcol[m] = tex[m]
    img = _mix(img, gcol * (1.0 - 0.25 * depth.clamp(max=1)).unsqueeze(1), ground.unsqueeze(1))
    amb = P["ambient"][:, :, None, None]
    img = img * amb

    # Shadows and subjects (near layer)
    gy = torch.tensor([GROUND_Y[i] if GROUND_Y[i] is not None else -9.0 for i in range(6)], device=dev)[P["setting"]]
    z = P["zoom"][:, None, None]
    for s in P["subjects"]:
        sx = _placed_x(s, P)
        sy, r = s["y"], s["r"]
        vis = s["visible"][:, None, None]
        h_above = (sy - r - gy).clamp(min=0)
        ex = (Xg - sx[:, None, None]) / (r[:, None, None] * (1.0 + h_above[:, None, None]))
        ey = (Yg - gy[:, None, None] - 0.01) / (r[:, None, None] * 0.25)
        sh = torch.exp(-(ex * ex + ey * ey) * 1.5) * 0.45 * torch.exp(-h_above / 0.5)[:, None, None]
        sh = sh * (gy > -5).float()[:, None, None] * vis * ground
        img = img * (1.0 - sh.unsqueeze(1))
        # subject shape in unit coordinates
        dx = (Xg - sx[:, None, None]) / r[:, None, None]
        dy = (Yg - sy[:, None, None]) / r[:, None, None]
        mask = (dx.abs() < 1.6) & (dy.abs() < 1.6)
        ca, sa = torch.cos(s["angle"])[:, None, None], torch.sin(s["angle"])[:, None, None]
        qx = (ca * dx + sa * dy) * s["facing"][:, None, None]
        qy = -sa * dx + ca * dy
        alpha = torch.zeros_like(dx)
        rgb = torch.zeros(N, 3, *dx.shape[1:], device=dev)
        lit = _mix(amb, torch.ones_like(amb), 0.55)
        for ki, kind in enumerate(SUBJECTS):
            idx = torch.nonzero((s["kind"] == ki) & (s["visible"] > 0) & mask.flatten(1).any(1)).flatten()
            if idx.numel() == 0:
                continue
            fq = ROTATES.get(kind)
            qxi, qyi = qx[idx], qy[idx]
            if fq is not None:  # these shapes keep their up side: damp the rotation
                ang = s["angle"][idx] * fq
                cb, sb = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
                qxi = (cb * dx[idx] + sb * dy[idx]) * s["facing"][idx][:, None, None]
                qyi = -sb * dx[idx] + cb * dy[idx]
            d, col = SHAPES[kind](qxi, qyi, dx[idx], dy[idx], s["colour"][idx][:, :, None, None], t3[idx])
            alpha[idx] = _cov(d * r[idx][:, None, None] * z[idx], px)
            rgb[idx] = col.clamp(0, 1.2) * lit[idx]
        img = _mix(img, rgb, (alpha * vis).unsqueeze(1))

    # Particles (screen-near layer)
    Xp, Yp = _layer_coords(u, v, P, 1.25)
    kind = P["particles"][:, None, None]
    # rain: slanted streaks
    rx = (Xp + 0.18 * Yp) * 28.0
    ry = (Yp + t3 * 2.6) * 5.0
    rix, riy = torch.floor(rx), torch.floor(ry)
    rh = _hash(rix, riy)
    streak = ((rx - rix - 0.5).abs() < 0.09).float() * ((ry - riy) < 0.55).float() * (rh < 0.3).float()
    rain = streak * (kind == 1).float() * 0.55
    img = _mix(img, torch.tensor([0.78, 0.82, 0.92], device=dev).view(1, 3, 1, 1), rain.unsqueeze(1))
    # snow: drifting flakes
    fx = (Xp + 0.05 * torch.sin(t3 * 1.3 + Yp * 3.0)) * 12.0
    fy = (Yp + t3 * 0.32) * 12.0
    fix, fiy = torch.floor(fx), torch.floor(fy)
    fh = _hash(fix, fiy)
    fd = torch.sqrt((fx - fix - 0.3 - 0.4 * _hash(fix + 3.0, fiy)) ** 2 + (fy - fiy - 0.3 - 0.4 * fh) ** 2)
    flake = _cov(fd - 0.14, px * 12.0) * (fh < 0.55).float() * (kind == 2).float()
    img = _mix(img, torch.ones(1, 3, 1, 1, device=dev), 0.9 * flake.unsqueeze(1))
    # fireflies: glowing dots wandering in their cells
    gx, gyy = Xp * 5.0, Yp * 5.0
    gix, giy = torch.floor(gx), torch.floor(gyy)
    gh = _hash(gix, giy)
    cx = gix + 0.5 + 0.3 * torch.cos(t3 * 1.3 + gh * 40.0)
    cy = giy + 0.5 + 0.3 * torch.sin(t3 * 1.7 + gh * 70.0)
    gd2 = (gx - cx) ** 2 + (gyy - cy) ** 2
    glow = torch.exp(-gd2 / 0.004) * (0.6 + 0.4 * torch.sin(t3 * 6.0 + gh * 90.0)) * (gh < 0.6).float()
    glow = glow * (kind == 3).float()
    img = img + glow.unsqueeze(1) * torch.tensor([1.0, 0.95, 0.45], device=dev).view(1, 3, 1, 1)
    return img.clamp(0.0, 1.0)


def subject_on_screen(scenes, n_frames, fps=16, device="cpu", frame0=0):
    """Whether each scene's main subject is in the picture, per frame -> bool [B, n_frames]: it has
    entered and its centre lies inside the frame after the camera's pan and zoom (the renderer's own
    geometry, without rendering). Drifting, rising and falling subjects leave the frame for a while
    and zooming in crops them, so some chunks of a clip show no subject at all."""
    P = _params(scenes, n_frames, fps, frame0, device)
    s = P["subjects"][0]
    ux = (_placed_x(s, P) - P["cam_x"]) * P["zoom"]  # screen u = (X - cam_x) * zoom (_layer_coords)
    uy = s["y"] * P["zoom"]
    shown = (s["visible"] > 0) & (ux.abs() <= 1.0) & (uy.abs() <= 1.0)
    return shown.view(len(scenes), n_frames)


def subject_radius(scenes, n_frames, size=128, fps=16, device="cpu", frame0=0):
    """The radius in pixels at which each scene's main subject is drawn, per frame -> float [B, n_frames]:
    its size (0.22 of the half-frame, times small 0.72 / normal 1 / big 1.3) times the camera's zoom
    (1 to 1.8), so 10-33 pixels at 128 x 128, about 1.3-4 latent cells of 8 pixels (without rendering)."""
    P = _params(scenes, n_frames, fps, frame0, device)
    return (P["subjects"][0]["r"] * P["zoom"] * (size / 2)).view(len(scenes), n_frames)


def render(scenes, n_frames, size=128, fps=16, device="cpu", frame0=0, chunk=None):
    """Renders frames [frame0, frame0 + n_frames) of each scene -> [B, n_frames, 3, size, size] in [0, 1]."""
    P = _params(scenes, n_frames, fps, frame0, device)
    N = len(scenes) * n_frames
    if chunk is None:  # frames per vectorised pass: bigger on a GPU (fewer launches), ~8 GiB at 1024
        chunk = max(1, (1024 if torch.device(device).type == "cuda" else 256) * (128 * 128) // (size * size))
    out = torch.empty(N, 3, size, size, device=device)
    for a in range(0, N, chunk):
        out[a:a + chunk] = _render_frames(_slice(P, a, min(N, a + chunk)), size)
    return out.view(len(scenes), n_frames, 3, size, size)
