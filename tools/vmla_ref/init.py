"""Random initialisation of a VMLA model from a config and export to a model file.

Weights come from the Philox generator of noise.py (tensor i in sorted-name order uses chunk i,
step INIT_STEP), so a (config, seed, profile) triple gives bit-identical float32 weights on every
machine and torch version.

Profiles:
- "train": normal(0, 0.02) linears and embeddings, zero biases, ones for norms, small modulation
  (normal(0, 0.02)), He-normal convs; a sensible start for training.
- "strong": every branch matters (for parity fixtures): linears normal(0, 1/sqrt(fan_in)), biases
  normal(0, 0.1), norm weights 1 + normal(0, 0.1), norm biases normal(0, 0.1), modulation
  normal(0, 0.3) (gates and scales of order 0.1-0.5 with the time projection added), embeddings
  normal(0, 1), convs normal(0, sqrt(2/fan_in)).
"""
import json
import math

import numpy as np
import torch

from . import noise, st
from .model import VMLA, load_config

INIT_STEP = 0x494E4954  # "INIT"
FORMAT = "vmla-dit/1"


def _std(name, shape, profile):
    """(mean, std) for a tensor by name and shape."""
    last = name.rsplit(".", 1)[-1]
    is_norm = any(p in name for p in ("norm", "norm3")) and len(shape) == 1
    if name.endswith("modulation"):
        return 0.0, (0.3 if profile == "strong" else 0.02)
    if is_norm and last == "weight":
        return 1.0, (0.1 if profile == "strong" else 0.0)
    if is_norm and last == "bias":
        return 0.0, (0.1 if profile == "strong" else 0.0)
    if last == "bias":
        return 0.0, (0.1 if profile == "strong" else 0.0)
    if "embedding" in name and len(shape) == 2 and ("token_" in name or "position_" in name):
        return 0.0, (1.0 if profile == "strong" else 0.02)
    if len(shape) == 4 or (len(shape) == 5 and "patch_embedding" not in name):  # conv
        fan_in = int(np.prod(shape[1:]))
        return 0.0, math.sqrt(2.0 / fan_in)
    fan_in = int(np.prod(shape[1:]))
    return 0.0, (1.0 / math.sqrt(fan_in) if profile == "strong" else 0.02)


def init_state(model, seed, profile="train"):
    """Fills `model` in place with deterministic weights; returns the state dict (float32 numpy)."""
    sd = model.state_dict()
    out = {}
    for i, name in enumerate(sorted(sd)):
        shape = tuple(sd[name].shape)
        mean, std = _std(name, shape, profile)
        if std == 0.0:
            a = np.full(shape, mean, dtype=np.float32)
        else:
            a = (mean + std * noise.gaussian(shape, seed, i, INIT_STEP).astype(np.float64)).astype(np.float32)
        out[name] = a
    model.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()})
    return out


def file_config(cfg, vocabulary):
    """The config as stored in a model file: text_encoder.vocab_size = len(vocabulary)."""
    cfg = load_config(cfg)
    if cfg.get("text_encoder") is not None and vocabulary is not None:
        cfg["text_encoder"]["vocab_size"] = len(vocabulary)
    return cfg


def random_model(cfg, vocabulary, seed, profile="train"):
    cfg = file_config(cfg, vocabulary)
    model = VMLA(cfg)
    init_state(model, seed, profile)
    return model


def metadata(cfg, vocabulary, trained, description):
    return {"config": json.dumps(cfg, separators=(",", ":")), "vocabulary": json.dumps(list(vocabulary)),
            "format": FORMAT, "trained": "true" if trained else "false", "description": description}


INT8_GROUP = 32


def int8_candidate(name, a):
    """The tensors stored as int8 by export(int8=True): the DiT blocks' linear weights."""
    return name.startswith("blocks.") and name.endswith(".weight") and a.ndim == 2 and a.shape[1] % INT8_GROUP == 0


def export(model, vocabulary, path, dtype="F32", trained=False, description="", int8=False, hessians=None):
    """Writes the model's state dict with the file metadata of docs/MODEL.md section 8. int8: the DiT
    blocks' linear weights as int8 with float16 scales per 32 values of a row (section 8), the rest
    in `dtype`; rounded to nearest, or by GPTQ where `hessians` (weight name -> sum of x x^T over
    calibration inputs, tools/export.py) has the weight's."""
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    if int8:
        for k in [k for k, a in sd.items() if int8_candidate(k, a)]:
            if hessians is not None and k in hessians:
                sd[k], sd[k + st.QUANT_SCALE_SUFFIX] = st.quantize_int8_gptq(sd[k], hessians[k], INT8_GROUP)
            else:
                sd[k], sd[k + st.QUANT_SCALE_SUFFIX] = st.quantize_int8(sd[k], INT8_GROUP)
        dtype = {k: "F16" if k.endswith(st.QUANT_SCALE_SUFFIX) else dtype for k in sd}  # the scales stay F16
    st.save(path, sd, metadata(model.cfg, vocabulary, trained, description), dtype=dtype)


def load(path, dtype=torch.float32, **kw):
    """Loads a model file -> (VMLA, vocabulary, metadata)."""
    tensors, meta = st.load(path)
    cfg = load_config(json.loads(meta["config"]))
    vocab = json.loads(meta["vocabulary"]) if "vocabulary" in meta else None
    model = VMLA(cfg, with_text=any(k.startswith("text_encoder.") for k in tensors),
                 with_decoder=any(k.startswith("decoder.") for k in tensors),
                 with_encoder=any(k.startswith("encoder.") for k in tensors), **kw)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()})
    return model.to(dtype), vocab, meta
