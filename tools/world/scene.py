"""Scene sampling and the prompt grammar of the procedural world.

A scene is a plain dict (JSON-serialisable) drawn from `random.Random(seed)`, so a seed gives the
same scene on every machine. Prompts use only words of resources/vocab/tiny-words.txt (tested).
"""
import random

SUBJECTS = ["ball", "cube", "ring", "bird", "fish", "car", "star", "cloud"]
COLOURS = {
    "red": (0.86, 0.12, 0.10), "orange": (1.00, 0.55, 0.08), "yellow": (0.97, 0.86, 0.12),
    "green": (0.16, 0.72, 0.22), "blue": (0.14, 0.36, 0.92), "purple": (0.56, 0.20, 0.78),
    "pink": (1.00, 0.52, 0.72), "white": (0.96, 0.96, 0.96), "brown": (0.50, 0.30, 0.14),
    "golden": (0.90, 0.70, 0.20),
}
MOTIONS = ["bouncing", "drifting_left", "drifting_right", "rising", "falling", "orbiting", "spinning"]
SETTINGS = ["sky", "sea", "grass", "desert", "snow", "space"]
TIMES = ["dawn", "noon", "sunset", "night"]
CAMERAS = ["static", "pan_left", "pan_right", "zoom_in", "zoom_out"]
PARTICLES = ["none", "rain", "snow", "fireflies"]
SIZES = {"small": 0.72, "normal": 1.0, "big": 1.3}
SPEEDS = {"slow": 0.55, "normal": 1.0, "fast": 1.7}
EVENTS = ["none", "colour", "enter", "camera"]

# Attribute lists for the evaluation probe (index = class id).
LABELS = {"subject": SUBJECTS, "colour": list(COLOURS), "motion": MOTIONS, "setting": SETTINGS,
          "time": TIMES + ["none"], "camera": CAMERAS, "particles": PARTICLES}


def _subject(rng, kind=None, setting="sky", avoid_colour=None):
    kind = kind or rng.choice(SUBJECTS)
    colours = [c for c in COLOURS if c != avoid_colour]
    if setting == "snow":
        colours = [c for c in colours if c != "white"]
    motions = list(MOTIONS)
    if setting == "sky" or setting == "space":
        motions.remove("bouncing")  # no ground to bounce on
    motion = rng.choice(motions)
    return {
        "kind": kind, "colour": rng.choice(colours), "motion": motion,
        "size": rng.choice(list(SIZES)), "speed": rng.choice(list(SPEEDS)),
        "x0": rng.uniform(-0.45, 0.45), "y0": rng.uniform(-0.25, 0.35),
        "phase": rng.uniform(0.0, 6.283), "facing": rng.choice([-1, 1]), "enter_frame": 0,
    }


def sample_scene(seed, n_frames=48, event_prob=0.35, chunk_video_frames=12):
    """One clip's scene. Events happen at a chunk boundary (a multiple of chunk_video_frames)."""
    rng = random.Random(int(seed))
    setting = rng.choice(SETTINGS)
    time = "none" if setting == "space" else rng.choice(TIMES)
    scene = {
        "seed": int(seed), "setting": setting, "time": time,
        "camera": rng.choice(CAMERAS) if rng.random() < 0.6 else "static", "camera_frame": 0,
        "particles": rng.choice(PARTICLES[1:]) if rng.random() < 0.3 else "none",
        "subjects": [_subject(rng, setting=setting)], "event": {"type": "none", "frame": n_frames},
    }
    if setting == "space" and scene["particles"] != "none":
        scene["particles"] = "none"
    n_chunks = n_frames // chunk_video_frames
    if n_chunks >= 2 and rng.random() < event_prob:
        kind = rng.choice(EVENTS[1:])
        frame = chunk_video_frames * rng.randint(1, n_chunks - 1)
        if kind == "colour":
            s = scene["subjects"][0]
            new = rng.choice([c for c in COLOURS if c != s["colour"] and not (setting == "snow" and c == "white")])
            scene["event"] = {"type": "colour", "frame": frame, "colour": new}
        elif kind == "enter":
            other = _subject(rng, rng.choice([k for k in SUBJECTS if k != scene["subjects"][0]["kind"]]), setting,
                             avoid_colour=scene["subjects"][0]["colour"])
            other["enter_frame"] = frame
            other["motion"] = rng.choice(["drifting_left", "drifting_right"])
            scene["subjects"].append(other)
            scene["event"] = {"type": "enter", "frame": frame}
        else:
            scene["camera"] = rng.choice(["pan_left", "pan_right"])
            scene["camera_frame"] = frame
            scene["event"] = {"type": "camera", "frame": frame}
    rng2 = random.Random(int(seed) * 7919 + 1)
    scene["prompt"] = prompt(scene, after_event=False, rng=rng2)
    scene["prompt2"] = prompt(scene, after_event=True, rng=rng2) if scene["event"]["type"] != "none" else scene["prompt"]
    scene["event_text"] = event_text(scene, rng2)
    return scene


# --------------------------------------------------------------------------------------------
# Grammar

_VERBS = {
    "bouncing": [["bouncing"], ["bounces"]],
    "rising": [["rising"], ["rises"]],
    "falling": [["falling"], ["falls"]],
    "orbiting": [["orbiting"], ["orbits"], ["circling"]],
    "spinning": [["spinning"], ["spins"], ["rotating"]],
}
_MOVE = {"bird": [["flying"], ["flies"]], "fish": [["swimming"], ["swims"]], "car": [["driving"], ["moving"]],
         "cloud": [["drifting"], ["floating"], ["drifts"]]}
_MOVE_DEFAULT = [["drifting"], ["moving"], ["drifts"], ["moves"]]
_SETTING = {
    "sky": [["in", "the", "sky"], ["across", "the", "sky"], ["through", "the", "sky"]],
    "sea": [["over", "the", "sea"], ["on", "the", "beach"], ["above", "the", "ocean", "waves"], ["over", "the", "waves"]],
    "grass": [["on", "a", "grass", "field"], ["in", "a", "meadow"], ["over", "the", "grass"]],
    "desert": [["in", "the", "desert"], ["over", "the", "desert", "dunes"], ["across", "the", "dunes"]],
    "snow": [["on", "a", "snowy", "field"], ["in", "the", "snow"], ["over", "the", "snow"]],
    "space": [["in", "space"], ["in", "starry", "space"], ["in", "space", "with", "stars"]],
}
_PARTICLES = {"rain": [["in", "the", "rain"], ["while", "raining"]], "snow": [["while", "snowing"]],
              "fireflies": [["with", "fireflies"], ["with", "glowing", "fireflies"]]}
_CAMERA = {"pan_left": [["while", "the", "camera", "pans", "left"], ["camera", "panning", "left"]],
           "pan_right": [["while", "the", "camera", "pans", "right"], ["camera", "panning", "right"]],
           "zoom_in": [["while", "the", "camera", "zooms", "in"], ["camera", "zooming", "in"]],
           "zoom_out": [["while", "the", "camera", "zooms", "out"], ["camera", "zooming", "out"]],
           "static": [[], [], ["static", "camera"], ["still", "camera"]]}
_ADVERB = {"slow": [["slowly"], ["gently"], []], "fast": [["quickly"], ["fast"], []], "normal": [[]]}


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def subject_words(s, colour=None, rng=None):
    colour = colour or s["colour"]
    size = {"small": rng.choice(["small", "little"]), "big": "big", "normal": None}[s["size"]]
    words = ([size] if size and rng.random() < 0.7 else []) + [colour, s["kind"]]
    return [_article(words[0])] + words


def motion_words(s, rng):
    m = s["motion"]
    if m.startswith("drifting"):
        verb = rng.choice(_MOVE.get(s["kind"], _MOVE_DEFAULT)) + [m.split("_")[1]]
    else:
        verb = list(rng.choice(_VERBS[m]))
    return verb + list(rng.choice(_ADVERB[s["speed"]]))


def prompt(scene, after_event, rng):
    ev = scene["event"]
    subs = [s for s in scene["subjects"] if after_event or s["enter_frame"] == 0]
    words = []
    for i, s in enumerate(subs):
        colour = ev["colour"] if (after_event and ev["type"] == "colour" and i == 0) else None
        if i:
            words.append("and")
        words += subject_words(s, colour, rng) + motion_words(s, rng)
    words += rng.choice(_SETTING[scene["setting"]])
    if scene["time"] != "none" and not (scene["time"] == "noon" and rng.random() < 0.2):
        words += ["at", scene["time"]]
    if scene["particles"] != "none":
        words += rng.choice(_PARTICLES[scene["particles"]])
    cam = scene["camera"] if (after_event or scene["camera_frame"] == 0) else "static"
    words += rng.choice(_CAMERA[cam])
    return " ".join(words)


def event_text(scene, rng):
    ev = scene["event"]
    if ev["type"] == "colour":
        kind = scene["subjects"][0]["kind"]
        return " ".join(["the", kind] + rng.choice([["turns"], ["becomes"], ["changes", "to"]]) + [ev["colour"]])
    if ev["type"] == "enter":
        s = scene["subjects"][1]
        return " ".join([_article(s["colour"]), s["colour"], s["kind"], rng.choice(["enters", "appears"])])
    if ev["type"] == "camera":
        d = scene["camera"].split("_")[1]
        return " ".join(["the", "camera", rng.choice(["starts", "begins"]), "panning", d])
    return ""


def prompt_schedule(scene, n_chunks, chunk_video_frames=12):
    """Per chunk: index of the prompt in force (0 before the event, 1 from the event's chunk on)."""
    f = scene["event"]["frame"]
    return [0 if k * chunk_video_frames < f else 1 for k in range(n_chunks)]
