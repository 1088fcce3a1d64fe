"""Model files: a trained network with its architecture, training config and metrics.

A model file is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(..., weights_only=True)`` — nothing is ever unpickled.  Its layout::

    {"format": "xbarlab-model", "version": 1,
     "arch": {"sizes": [2, 8, 1], "activation": "sigmoid", "layers": ["CrossbarLinear", ...]},
     "layer_options": {"aware": True, "noise": 0.0, "transfers": 8, "variability": {...}},
     "train": {...TrainConfig...}, "metrics": {...}, "state_dict": {...}}
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .layers import ACTIVATIONS, MLP, SCALES, CrossbarLinear
from .variability import transfer_model_from_dict

FORMAT, VERSION = "xbarlab-model", 1
LAYER_TYPES = {"CrossbarLinear": CrossbarLinear, "Linear": nn.Linear}


class ModelError(ValueError):
    """A model cannot be saved, loaded or deployed (names what is wrong)."""


def check_model(model) -> MLP:
    """Refuse anything deployment cannot map: not an :class:`MLP`, unknown layer types or
    activations, non-finite weights, or layer sizes that do not chain."""
    if not isinstance(model, MLP):
        raise ModelError(f"expected an xbarlab MLP, got {type(model).__name__}")
    if model.activation not in ACTIVATIONS:
        raise ModelError(f"unknown activation {model.activation!r}; expected one of {sorted(ACTIVATIONS)}")
    prev = None
    for i, layer in enumerate(model.layers):
        if type(layer) not in LAYER_TYPES.values():
            raise ModelError(f"layer {i} is a {type(layer).__name__}; only Linear and CrossbarLinear layers "
                             "can be mapped onto a crossbar")
        w, b = layer.weight, layer.bias
        if b is None:
            raise ModelError(f"layer {i} has no bias; crossbar layers store their bias as a row")
        for name, t in (("weight", w), ("bias", b)):
            bad = ~torch.isfinite(t.detach())
            if bad.any():
                idx = tuple(int(j) for j in torch.nonzero(bad)[0])
                raise ModelError(f"layer {i} {name} has a non-finite value ({float(t.detach()[idx])}) at {idx}")
        if prev is not None and w.shape[1] != prev:
            raise ModelError(f"layer {i} takes {w.shape[1]} inputs but layer {i - 1} gives {prev}")
        prev = w.shape[0]
    return model


def layer_options(model: MLP) -> dict:
    first = model.layers[0]
    if not isinstance(first, CrossbarLinear):
        return {}
    return {"aware": first.aware, "noise": first.noise, "transfers": first.transfers,
            "compensate": first.compensate, "variability": first.variability.to_dict()}


def save_model(path, model: MLP, train_config: dict | None = None, metrics: dict | None = None) -> Path:
    """Write ``model`` (checked first) with its config and metrics to ``path``."""
    check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "version": VERSION,
        "arch": {"sizes": list(model.sizes), "activation": model.activation,
                 "layers": [type(l).__name__ for l in model.layers], "scales": model.scales},
        "layer_options": layer_options(model),
        "train": dict(train_config or {}),
        "metrics": {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in (metrics or {}).items()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def _load_failure(exc: BaseException) -> str:
    """Why torch refused the file, in our words: torch's own message advises
    ``weights_only=False`` (which would run the file's code) and is never passed on."""
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
        return "it holds pickled Python objects, which xbarlab never loads"
    return f"not a torch tensor archive ({type(exc).__name__})"


def load_model(path) -> tuple[MLP, dict]:
    """Load a model file (``weights_only=True``); returns the model (eval mode) and the file's
    metadata (``arch``, ``layer_options``, ``train``, ``metrics``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal or corrupt file
        raise ModelError(f"{path} is not an xbarlab model file ({_load_failure(exc)}); model files are "
                         f"written by `xbar train` (tensors only)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an xbarlab model file (no '{FORMAT}' format tag)")
    if payload.get("version") != VERSION:
        raise ModelError(f"{path} has model format version {payload.get('version')!r}; this xbarlab reads {VERSION}")
    arch = payload.get("arch") or {}
    sizes, activation, kinds = arch.get("sizes"), arch.get("activation"), arch.get("layers")
    if not isinstance(sizes, list) or not isinstance(kinds, list) or len(kinds) != len(sizes) - 1:
        raise ModelError(f"{path}: malformed architecture {arch!r}")
    unknown = [k for k in kinds if k not in LAYER_TYPES]
    if unknown:
        raise ModelError(f"{path}: unknown layer type(s) {unknown}; known: {sorted(LAYER_TYPES)}")
    if len(set(kinds)) != 1:
        raise ModelError(f"{path}: mixed layer types {kinds} are not supported")
    if activation not in ACTIVATIONS:
        raise ModelError(f"{path}: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    scales = arch.get("scales", "layer")          # files written before per-output scales had one per layer
    if scales not in SCALES:
        raise ModelError(f"{path}: unknown scales {scales!r}; expected one of {SCALES}")
    opts = dict(payload.get("layer_options") or {})
    try:
        if kinds[0] == "CrossbarLinear":
            if "variability" in opts:
                opts["variability"] = transfer_model_from_dict(opts["variability"])
            model = MLP(sizes, activation, "crossbar", scales, **opts)
        else:
            model = MLP(sizes, activation, "linear", scales)
        model.load_state_dict(payload.get("state_dict") or {}, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: weights do not match the architecture {sizes}: {exc}") from None
    check_model(model)
    model.eval()
    meta = {k: payload.get(k) for k in ("arch", "layer_options", "train", "metrics")}
    return model, meta
