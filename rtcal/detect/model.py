"""The learned footprint detector: Swin backbone, FPN, query decoder (DESIGN.md,
"The method it is built on", step 2).

    x (B, C_in, H, W) --SwinBackbone--> maps at 1/4, 1/8, 1/16, 1/32
      --FPN--> per-pixel embedding at 1/4, memory at 1/32, 1/16, 1/8
      --CentreHead--> centre heatmap at 1/4 --QueryInit--> Q queries
      --MaskDecoder--> per query: "neuron" logit, mask logits at 1/4

``forward(x)`` returns a dict (h, w = H/4, W/4):

- "logits" (B, Q): "neuron vs nothing" logit of each query, last layer;
- "masks" (B, Q, h, w): mask logits, last layer; mask = dot product of the
  query's mask embedding with the per-pixel embedding map (MaskFormer);
- "aux": list of n_decoder_layers dicts {"logits", "masks"}: the prediction
  from the initial queries and after each decoder layer but the last (Mask2Former's
  auxiliary predictions; the matcher is rerun on each);
- "centre" (B, 1, h, w): centre-heatmap logits. Training target (CenterNet,
  Zhou et al. 2019): Y = max_k exp(-|p - c_k|^2 / (2 sigma_k^2)) at 1/4
  resolution, c_k the true centroid / 4 rounded, sigma_k = radius_k / 4 (radius
  in 1/4 pixels), exactly 1 on each c_k; loss: the penalty-reduced pixel focal
  loss with p = sigmoid(logit), alpha = 2, beta = 4, normalised by the number of
  centres, -sum[(1-p)^a log p at Y = 1; (1-Y)^b p^a log(1-p) elsewhere] / K;
- "query_points" (B, Q, 2) float: (row, col) at 1/4 of each heatmap query's
  peak; (-1, -1) for the learned queries (the last n_learned_queries).

``export_forward(x)`` returns (logits, masks) only, for ONNX and TensorRT.
Every op is exportable at a fixed input size: no data-dependent Python control
flow (shape checks only), top-k and sort for the peaks, max-pool and comparisons
for the attention masks.

Choices for fast convergence on small simulated data:

- Queries from a centre heatmap (CenterNet-style head on the 1/4 map, 3x3
  max-pool NMS, top-Qh peaks). DETR's learned queries need hundreds of epochs to
  learn *where* to look (Conditional DETR, Meng et al. 2021; DAB-DETR, Liu et al.
  2022). Here each query starts at a likely soma, with content = the 1/4 feature
  under it and position = the sine code of the peak, so the Hungarian matching is
  stable from early on and the decoder only refines. The heatmap is a dense,
  per-pixel task that converges within a few hundred steps. A few learned
  queries catch what the heatmap misses.
- Position in the per-pixel embedding. Somata look alike; the sine code added
  to the 1/4 features lets a mask embedding select one cell among identical
  neighbours, and since the query content is read from the same map, the very
  first mask (before any decoder layer) already peaks around the query's peak.
- Masked attention (Mask2Former): each query attends only inside its current
  mask, which Mask2Former reports converges several times faster than plain
  cross-attention; max-pooled to coarse levels so small somata are not lost.
- Priors from the peak (``decoder.PredictionHead``): each heatmap query's mask
  logits get a soft disc around its peak (offset, radius and sharpness
  regressed from the query) and its class logit starts from the heatmap logit
  at the peak. The first prediction is then already a soma-sized blob on a
  likely soma, and the decoder learns departures from it. On the 8 held-out
  validation windows: F1 0.08 at step 500 of a default run without these
  priors (0.06 at step 2000), 0.31 after a 500-step run with them (score
  threshold 0.5; 0.39 at 0.35).
- Low-resolution mask head: masks at 1/4 only (somata have radius 3-10 px, i.e.
  1-2.5 px at 1/4), the losses are taken there, callers upsample.
- Small model (about 2 M parameters), a convolutional stem and no
  denoising queries: denoising training (DN-DETR) would need the truth inside
  forward; the heatmap queries already give the decoder the positional prior
  that denoising supplies.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from rtcal.detect.decoder import CentreHead, MaskDecoder, Prediction, QueryInit
from rtcal.detect.fpn import FPN
from rtcal.detect.swin import SwinBackbone
from rtcal.errors import RtcalError

N_STAGES = 4  # backbone maps at 1/4, 1/8, 1/16, 1/32
INPUT_MULTIPLE = 32  # H and W must be multiples of the coarsest stride
CHECKPOINT_FORMAT = "rtcal-detector/1"


class DetectorConfigError(RtcalError, ValueError):
    """A detector setting is out of range or inconsistent; the message names it."""


class DetectorInputError(RtcalError, ValueError):
    """The detector input has the wrong shape or dtype; the message says which."""


class DetectorCheckpointError(RtcalError):
    """A detector checkpoint cannot be written or read; the message says why."""


@dataclass(frozen=True)
class DetectorNetConfig:
    """Architecture of the detector.

    in_channels: input channels (rtcal.detect.inputs); patch_size: stride of the
    stem, must be 4 (the masks and heatmap are at 1/4); embed_dim: width of the
    first Swin stage (doubles per stage); depths, num_heads: blocks and heads of
    each of the 4 stages; window_size: Swin window side in tokens; mlp_ratio:
    Swin MLP width / stage width; fpn_dim: FPN and decoder width; mask_dim:
    per-pixel and mask embedding width; n_queries: queries in all;
    n_learned_queries: how many of them are learned rather than taken from
    heatmap peaks; n_decoder_layers, n_decoder_heads, decoder_ffn_dim: decoder
    shape; dropout: in every attention and MLP.
    """

    in_channels: int = 8
    patch_size: int = 4
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2, 2, 1)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 8
    mlp_ratio: float = 4.0
    fpn_dim: int = 64
    mask_dim: int = 64
    n_queries: int = 100
    n_learned_queries: int = 10
    n_decoder_layers: int = 6
    n_decoder_heads: int = 4
    decoder_ffn_dim: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "mask_dim", "n_decoder_layers", "n_decoder_heads",
                     "decoder_ffn_dim"):
            if getattr(self, name) < 1:
                raise DetectorConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.patch_size != 4:
            raise DetectorConfigError(f"patch_size={self.patch_size}: only 4 is supported "
                                      "(masks and heatmap are at 1/4 resolution)")
        if len(self.depths) != N_STAGES or len(self.num_heads) != N_STAGES:
            raise DetectorConfigError(f"depths={self.depths} and num_heads={self.num_heads} "
                                      f"need {N_STAGES} entries each")
        if min(self.depths) < 1 or self.embed_dim < 2 or self.embed_dim % 2:
            raise DetectorConfigError(f"depths={self.depths} must be >= 1 and "
                                      f"embed_dim={self.embed_dim} even")
        for i, heads in enumerate(self.num_heads):
            if heads < 1 or (self.embed_dim * 2**i) % heads:
                raise DetectorConfigError(f"num_heads[{i}]={heads} must divide the stage "
                                          f"width {self.embed_dim * 2**i}")
        if self.window_size < 2:
            raise DetectorConfigError(f"window_size={self.window_size} must be >= 2")
        if self.fpn_dim < 8 or self.fpn_dim % 8 or self.fpn_dim % self.n_decoder_heads:
            raise DetectorConfigError(f"fpn_dim={self.fpn_dim} must be a multiple of 8 and "
                                      f"of n_decoder_heads={self.n_decoder_heads}")
        if not 0 <= self.n_learned_queries < self.n_queries:
            raise DetectorConfigError(f"n_learned_queries={self.n_learned_queries} must lie in "
                                      f"[0, n_queries={self.n_queries})")
        if not (self.mlp_ratio > 0 and 0 <= self.dropout < 1):
            raise DetectorConfigError(f"mlp_ratio={self.mlp_ratio} must be > 0 and "
                                      f"dropout={self.dropout} in [0, 1)")

    @property
    def n_heatmap_queries(self) -> int:
        return self.n_queries - self.n_learned_queries


class DetectorNet(nn.Module):
    """The detector; see the module docstring for inputs, outputs and targets."""

    def __init__(self, config: DetectorNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.backbone = SwinBackbone(c.in_channels, c.embed_dim, c.depths, c.num_heads,
                                     c.window_size, c.mlp_ratio, c.dropout)
        self.fpn = FPN(self.backbone.dims, c.fpn_dim, c.mask_dim)
        self.centre_head = CentreHead(c.fpn_dim)
        self.query_init = QueryInit(c.fpn_dim, c.n_heatmap_queries, c.n_learned_queries)
        self.decoder = MaskDecoder(c.fpn_dim, c.n_decoder_heads, c.decoder_ffn_dim,
                                   c.n_decoder_layers, N_STAGES - 1, c.mask_dim, c.dropout)

    def check_input(self, x: torch.Tensor) -> None:
        """DetectorInputError unless x is float (B, in_channels, H, W), H and W
        multiples of 32 with at least as many 1/4 pixels as heatmap queries."""
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels or not x.is_floating_point():
            raise DetectorInputError(f"detector input must be float (B, {c.in_channels}, H, W),"
                                     f" got {x.dtype} {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or min(height, width) == 0:
            raise DetectorInputError(f"detector input H x W = {height} x {width}: both must be "
                                     f"positive multiples of {INPUT_MULTIPLE}")
        if (height // 4) * (width // 4) < c.n_heatmap_queries:
            raise DetectorInputError(f"detector input {height} x {width} is too small for "
                                     f"{c.n_heatmap_queries} heatmap queries")

    def predict(self, x: torch.Tensor) -> tuple[list[Prediction], torch.Tensor, torch.Tensor]:
        """(predictions: initial + one per layer, centre logits, query points)."""
        self.check_input(x)
        pix = self.fpn(self.backbone(x))
        centre = self.centre_head(pix.features4)  # (B, 1, H/4, W/4)
        queries = self.query_init(centre, pix.pixel)
        return self.decoder(queries, pix), centre, queries.points

    def forward(self, x: torch.Tensor) -> dict:
        predictions, centre, points = self.predict(x)
        aux = [{"logits": p.logits, "masks": p.masks} for p in predictions[:-1]]
        return {"logits": predictions[-1].logits, "masks": predictions[-1].masks,
                "aux": aux, "centre": centre, "query_points": points}

    def export_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, Q), mask logits (B, Q, H/4, W/4)) of the last layer."""
        predictions, _, _ = self.predict(x)
        return predictions[-1].logits, predictions[-1].masks


class DetectorExport(nn.Module):
    """A module whose forward is ``net.export_forward``, for torch.onnx.export."""

    def __init__(self, net: DetectorNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.export_forward(x)


def build_detector(config: DetectorNetConfig | None = None) -> DetectorNet:
    """The detector for ``config`` (default: ``DetectorNetConfig()``), freshly initialised."""
    return DetectorNet(config if config is not None else DetectorNetConfig())


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_plain(value: object, where: str) -> None:
    """DetectorCheckpointError unless value is plain data that weights_only loading reads."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DetectorCheckpointError(f"checkpoint {where}: key {key!r} is not a str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise DetectorCheckpointError(f"checkpoint {where} is a {type(value).__name__}; only None, "
                                  "bool, int, float, str, tensors, lists and dicts are stored")


def save_checkpoint(path: str | Path, model: DetectorNet, extra: dict) -> None:
    """Write the config (a plain dict), the weights and ``extra`` (plain data) to ``path``."""
    _check_plain(extra, "extra")
    state = {"format": CHECKPOINT_FORMAT, "config": asdict(model.config),
             "state_dict": model.state_dict(), "extra": dict(extra)}
    torch.save(state, Path(path))


def load_detector(path: str | Path, map_location: str | torch.device = "cpu"
                  ) -> tuple[DetectorNet, dict]:
    """(model in eval mode, extra) from a ``save_checkpoint`` file; nothing is unpickled
    beyond plain data (``weights_only=True``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as err:
        raise DetectorCheckpointError(f"no detector checkpoint at {path}") from err
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise DetectorCheckpointError(f"{path} is not a readable detector checkpoint: {err}"
                                      ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DetectorCheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    known = {f.name for f in fields(DetectorNetConfig)}
    unknown = sorted(set(state["config"]) - known)
    if unknown:
        raise DetectorCheckpointError(f"{path}: unknown detector config fields {unknown}")
    config = DetectorNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in state["config"].items()})
    model = build_detector(config)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise DetectorCheckpointError(f"{path}: weights do not fit its config: {err}") from err
    return model.to(map_location).eval(), state["extra"]
