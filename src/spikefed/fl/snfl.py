"""SNFL: synergistic neuromorphic federated learning (ANN clients, SNN server).

Each round a client loads the broadcast ANN weights ``W_A`` and BatchNorm parameters
``(gamma, beta, mu, sigma^2)`` into its ANN, puts back *its own* ANN biases (kept in
``client_state``; the server never sends biases), trains with the base algorithm's local
objective (FedAvg, FedProx or MOON), then converts the ANN to an SNN with its private
calibration data and uploads the SNN: folded weights ``W_S``, calibrated biases ``b_S``,
firing thresholds (keys ``snn.<name>``) and the BatchNorm parameters (``bn.<name>``).

The server (1) averages the SNN parameters into the global SNN, which is the server model and
is evaluated as an SNN, and (2) recovers every client's ANN weight ``W_A = W_S * sigma / gamma``
and averages those; it broadcasts the averaged ``W_A`` and BatchNorm parameters (ANN
state-dict names) and, unless ``bias_back`` is set, no biases.

Ablations (paper Table 3): ``calibration='bias'`` is the paper's bias calibration (BC),
``'none'`` turns it off (``'light'``/``'advanced'`` add potential/weight calibration);
``bias_back=True`` sends the mean of the biases the server infers
(``b_A = mu + (b_S - beta) * sigma / gamma``) back to the clients.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from spikefed.convert import bn_pairs, convert_ann_to_snn, spiking_copy, unfold_bn_weight
from spikefed.convert.trace import LAYERS
from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.fedavg import FedAvg, clone_state
from spikefed.fl.fedprox import FedProx
from spikefed.fl.local import client_generator, local_train
from spikefed.fl.moon import Moon

SNN, BN = "snn.", "bn."
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def infer_ann_bias(b_s: torch.Tensor, gamma: torch.Tensor | None = None,
                   beta: torch.Tensor | None = None, mean: torch.Tensor | None = None,
                   var: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """The ANN bias a server infers from an SNN bias by inverting BN folding.

    ``b_A = mu + (b_S - beta) * sigma / gamma``; exact when the client did no bias
    calibration. A layer without BatchNorm (all BN arguments ``None``) gives ``b_S`` itself.
    """
    if mean is None or var is None:
        return b_s.clone()
    gamma = torch.ones_like(mean) if gamma is None else gamma
    beta = torch.zeros_like(mean) if beta is None else beta
    return mean + (b_s - beta) * torch.sqrt(var + eps) / gamma


def _layout(model: nn.Module) -> dict[str, Any]:
    """Public structure of the ANN: weight layers, ANN-bias layers, BN pairs and eps."""
    pairs = bn_pairs(model)
    return {
        "layers": [n for n, m in model.named_modules() if isinstance(m, LAYERS)],
        "bias_layers": [n for n, m in model.named_modules()
                        if isinstance(m, LAYERS) and m.bias is not None],
        "bn_of": {layer: bn for layer, bn in pairs},
        "eps": {bn: float(model.get_submodule(bn).eps) for _, bn in pairs},
    }


class SNFL(Algorithm):
    """Wrap a base algorithm (FedAvg, FedProx, MOON) in the SNFL protocol."""

    def __init__(self, base: FedAvg, T: int = 32, threshold: str = "mmse",
                 calibration: str = "bias", calib_size: int = 128,
                 bias_back: bool = False) -> None:
        if not isinstance(base, FedAvg):
            raise ValueError(f"SNFL wraps FedAvg, FedProx or MOON, not {type(base).__name__}")
        if T < 1 or calib_size < 1:
            raise ValueError(f"algorithm.params T={T} and calib_size={calib_size} must be >= 1")
        self.base = base
        self.name = "s-" + base.name
        self.T, self.threshold, self.calibration = T, threshold, calibration
        self.calib_size, self.bias_back = calib_size, bias_back
        self._skeleton: nn.Module | None = None

    # ----- server ------------------------------------------------------------------------
    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        layout = _layout(model)
        bias_keys = {f"{n}.bias" for n in layout["bias_layers"]}
        broadcast = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if k not in bias_keys and not k.endswith("num_batches_tracked")}
        return {"layout": layout, "snn": {}, "ann": broadcast}, broadcast

    def aggregate(
        self, server_state: dict[str, Any], uploads: list[Upload]
    ) -> tuple[dict[str, Any], Tensors]:
        layout = server_state["layout"]
        snn_keys = [k for k in uploads[0].tensors if k.startswith(SNN)]
        snn = {k[len(SNN):]: v for k, v in self.combine(uploads, snn_keys).items()}
        recovered = [Upload(u.client_id, self.recover_ann(u.tensors, layout), u.num_samples)
                     for u in uploads]
        broadcast = self.combine(recovered)
        return {**server_state, "snn": snn, "ann": broadcast}, broadcast

    def recover_ann(self, tensors: Tensors, layout: dict[str, Any]) -> Tensors:
        """What the server sends for one client: ``W_A = W_S sigma / gamma``, BN parameters
        and, with ``bias_back``, the inferred ANN biases."""
        out: Tensors = {}
        for layer in layout["layers"]:
            w_s = tensors[f"{SNN}{layer}.weight"]
            bn = layout["bn_of"].get(layer)
            if bn is None:
                out[f"{layer}.weight"] = w_s
            else:
                out[f"{layer}.weight"] = unfold_bn_weight(
                    w_s, tensors[f"{BN}{bn}.weight"], tensors[f"{BN}{bn}.running_var"],
                    layout["eps"][bn])
        for bn in layout["bn_of"].values():
            for p in BN_KEYS:
                out[f"{bn}.{p}"] = tensors[f"{BN}{bn}.{p}"]
        if self.bias_back:
            out.update(inferred_biases(tensors, layout))
        return out

    def server_model_state(self, server_state: dict[str, Any]) -> Tensors | None:
        return server_state["snn"] or None

    def server_model(self, server_state: dict[str, Any], model_fn) -> nn.Module | None:
        """The global SNN: a converted skeleton of ``model_fn()`` loaded with the averages."""
        state = self.server_model_state(server_state)
        if state is None:
            return None
        model = copy.deepcopy(self._snn_skeleton(model_fn))
        model.load_state_dict(state)
        return model

    def _snn_skeleton(self, model_fn) -> nn.Module:
        if self._skeleton is None:
            self._skeleton = spiking_copy(model_fn().eval(), self.T)
        return self._skeleton

    def upload_keys(self, model: nn.Module) -> set[str]:
        skeleton = self._snn_skeleton(lambda: copy.deepcopy(model))
        bns = [bn for _, bn in bn_pairs(model)]
        return ({SNN + k for k in skeleton.state_dict()}
                | {f"{BN}{bn}.{p}" for bn in bns for p in BN_KEYS})

    # ----- client ------------------------------------------------------------------------
    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        ann, _, metrics, client_state = self.train_ann(client_id, broadcast, client_state, data,
                                                       ctx)
        return self.package(client_id, ann, ann, client_state, data, ctx, metrics)

    def train_ann(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[nn.Module, Tensors, dict[str, float], dict[str, Any]]:
        """Local training: the trained ANN (eval mode), the ANN state it started from (the
        broadcast plus the client's own biases), the metrics and the client state."""
        torch.manual_seed(ctx.seed)  # round 1: the clients' biases are the seeded initial ones
        ann = ctx.model_fn()
        self._load_broadcast(ann, broadcast, client_state)
        reference = clone_state(ann)
        if isinstance(self.base, Moon):
            metrics, client_state = self.base.train_local(client_id, ann, reference, client_state,
                                                           data, ctx)
        else:
            metrics = local_train(ann, data, ctx, client_id,
                                  penalty=self.base.penalty(reference, ctx))
        ann.eval()
        return ann, reference, metrics, client_state

    def package(self, client_id: int, ann: nn.Module, upload_ann: nn.Module,
                client_state: dict[str, Any], data: ClientData, ctx: TrainContext,
                metrics: dict[str, float]
                ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        """Convert ``upload_ann`` to an SNN on the private calibration batch and upload it;
        the client keeps ``ann``'s biases and state (the same module for an honest client)."""
        biases = {k: v.detach().cpu().clone() for k, v in ann.state_dict().items()
                  if k in self._bias_keys(ann)}
        converted = convert_ann_to_snn(upload_ann, self._calibration_batch(data, ctx, client_id),
                                       self.T, threshold=self.threshold,
                                       calibration=self.calibration)
        tensors = {SNN + k: v.detach().cpu().clone()
                   for k, v in converted.model.state_dict().items()}
        upload_state = {k: v.detach().cpu().clone() for k, v in upload_ann.state_dict().items()}
        for _, bn in bn_pairs(upload_ann):
            tensors.update({f"{BN}{bn}.{p}": upload_state[f"{bn}.{p}"] for p in BN_KEYS})
        ann_state = {k: v.detach().cpu().clone() for k, v in ann.state_dict().items()}
        new_state = {**client_state, "bias": biases, "ann": ann_state}
        return Upload(client_id, tensors, len(data), metrics), new_state, metrics

    @staticmethod
    def _bias_keys(model: nn.Module) -> set[str]:
        return {f"{n}.bias" for n, m in model.named_modules()
                if isinstance(m, LAYERS) and m.bias is not None}

    def _load_broadcast(self, ann: nn.Module, broadcast: Tensors,
                        client_state: dict[str, Any]) -> None:
        bias_keys = self._bias_keys(ann)
        missing, unexpected = ann.load_state_dict(broadcast, strict=False)
        allowed = bias_keys | {k for k in ann.state_dict() if k.endswith("num_batches_tracked")}
        if unexpected or set(missing) - allowed:
            raise ValueError(f"SNFL broadcast does not fit the client ANN: unexpected keys "
                             f"{sorted(unexpected)}, missing {sorted(set(missing) - allowed)}")
        if "bias" in client_state and not (self.bias_back and bias_keys <= set(broadcast)):
            ann.load_state_dict(client_state["bias"], strict=False)

    def _calibration_batch(self, data: ClientData, ctx: TrainContext, client_id: int
                           ) -> torch.Tensor:
        g = client_generator(ctx.seed + 1, ctx.round, client_id)
        idx = torch.randperm(len(data), generator=g)[: self.calib_size]
        x = data.x[idx]
        if data.transform is not None:
            x = data.transform(x)
        if x.dim() == 5 and x.dtype == torch.uint8:   # event frames [B, T, C, H, W]: the ANN's
            x = x.float().mean(1)                     # input is their mean (ZooModel.forward)
        return x.to(ctx.device)

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        return client_state.get("ann")


def inferred_biases(tensors: Tensors, layout: dict[str, Any]) -> Tensors:
    """ANN biases a server infers from one SNFL upload (bias-carrying ANN layers only)."""
    out: Tensors = {}
    for layer in layout["bias_layers"]:
        bn = layout["bn_of"].get(layer)
        b_s = tensors[f"{SNN}{layer}.bias"]
        if bn is None:
            out[f"{layer}.bias"] = infer_ann_bias(b_s)
        else:
            out[f"{layer}.bias"] = infer_ann_bias(
                b_s, *(tensors[f"{BN}{bn}.{p}"] for p in BN_KEYS), eps=layout["eps"][bn])
    return out


# ----- registry glue -------------------------------------------------------------------------
class SnflParams(BaseModel):
    """Parameters shared by every SNFL variant."""

    model_config = ConfigDict(extra="forbid")
    T: int = Field(32, ge=1, description="SNN simulation length of the converted models")
    threshold: Literal["mmse", "max", "percentile"] = "mmse"
    calibration: Literal["none", "bias", "light", "advanced"] = Field(
        "bias", description="client-side calibration ('bias': the paper's BC; 'none': off)")
    calib_size: int = Field(128, ge=1, description="private calibration samples per client")
    bias_back: bool = Field(False, description="server sends inferred ANN biases back")


class SFedProxParams(SnflParams):
    mu: float = Field(0.01, ge=0, description="FedProx proximal weight")


class SMoonParams(SnflParams):
    mu: float = Field(1.0, ge=0, description="MOON contrastive weight")
    temperature: float = Field(0.5, gt=0)
    proj_dim: int = Field(64, ge=0)


def s_fedavg(**params: Any) -> SNFL:
    """S-FedAvg."""
    return SNFL(FedAvg(), **params)


def s_fedprox(mu: float = 0.01, **params: Any) -> SNFL:
    """S-FedProx."""
    return SNFL(FedProx(mu), **params)


def s_moon(mu: float = 1.0, temperature: float = 0.5, proj_dim: int = 64, **params: Any) -> SNFL:
    """S-MOON."""
    return SNFL(Moon(mu, temperature, proj_dim), **params)

