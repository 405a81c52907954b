"""Shared helpers: makes tools/ importable and builds small models."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import torch  # noqa: E402

import make_fixtures  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from vmla_ref import model as vmodel  # noqa: E402

VOCAB_PATH = os.path.join(ROOT, "resources", "vocab", "tiny-words.txt")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def vocabulary():
    return vmodel.read_vocabulary(VOCAB_PATH)


def small_model(attention="mla", seed=3, dtype=torch.float64, **overrides):
    """The fixture config (optionally changed) with strong random weights."""
    cfg = make_fixtures.fixture_config(attention)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return vinit.random_model(cfg, vocabulary(), seed, profile="strong").to(dtype)
