"""The one place a detector is chosen by name: "seed" (classical) or "learned" (network).

Heavy imports (torch, the network) happen only when "learned" is asked for.
"""

from __future__ import annotations

from pathlib import Path

from rtcal.detect.proposal import FootprintProposer
from rtcal.detect.seed import SeedDetector
from rtcal.errors import RtcalError

DETECTORS = ("seed", "learned")


class DetectorChoiceError(RtcalError, ValueError):
    """Unknown detector name; the message lists the known ones."""


def make_detector(name: str, pipeline_config, *, weights: str | Path | None = None,
                  runtime: str | None = None, device: str = "cpu",
                  threads: int | None = None, score_threshold: float | None = None
                  ) -> FootprintProposer:
    """The detector ``name`` set up for ``pipeline_config`` (a PipelineConfig: its
    seed settings, or its soma radius and mode for the learned detector).

    weights: learned checkpoint (default: the shipped one); runtime: "auto" (None),
    "eager", "onnx", "compile" or "tensorrt"; device: "cpu" or "cuda"; threads:
    ONNX Runtime CPU threads; score_threshold: "neuron" score a proposal needs
    (default: the checkpoint's, calibrated for the pipeline's mode). Only
    "learned" reads them.
    """
    if name == "seed":
        return SeedDetector(pipeline_config.seed)
    if name == "learned":
        from rtcal.detect.learned import LearnedDetector, LearnedDetectorConfig

        config = LearnedDetectorConfig(radius_px=pipeline_config.radius_px,
                                       mode=pipeline_config.mode,
                                       score_threshold=score_threshold)
        return LearnedDetector.from_weights(weights, config, device=device, prefer=runtime,
                                            threads=threads)
    raise DetectorChoiceError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


DETECTOR_KEYS = ("name", "weights", "runtime", "device", "threads", "score_threshold")


def detector_from_section(section: dict | None, pipeline_config, **flags) -> FootprintProposer:
    """The detector of a config file's ``[detector]`` table (keys: name "seed" or
    "learned", weights, runtime, device, threads, score_threshold), with ``flags`` (the same keys,
    None = not given) taking precedence; default: the seed detector."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(DETECTOR_KEYS))
    if unknown:
        raise DetectorChoiceError(f"[detector]: unknown keys {unknown}; known: "
                                  f"{', '.join(DETECTOR_KEYS)}")
    section.update({k: v for k, v in flags.items() if v is not None})
    name = section.pop("name", "seed")
    return make_detector(name, pipeline_config, **section)
