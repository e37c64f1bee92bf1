"""The one place a detector is chosen by name: "seed" (classical), "learned" (network)
or "learned+seed" (the network's footprints plus the classical detector's new ones).

Heavy imports (torch, the network) happen only when "learned" is asked for.
"""

from __future__ import annotations

from pathlib import Path

from rtcal.detect.proposal import FootprintProposer
from rtcal.detect.seed import SeedDetector
from rtcal.errors import RtcalError

DETECTORS = ("seed", "learned", "learned+seed")

# The detector of `rtcal run`, `rtcal serve` and the demo per kind of recording
# when none is named. 2p: the learned one (detector_2p.pt since session 16) at its
# pipeline threshold; over five held-out movies (bench/accuracy.py) F1 mean 0.815
# (0.789 with the first, mixed weights) against 0.774 for the seed detector, with
# initialisation about twice as fast. 1p: the seed detector, with
# its ring-background initialisation (on four development movies the learned one
# reached a mean of 0.783 at its best threshold, 0.3, against 0.868).
# README "Learned detector" has the figures.
DEFAULT_DETECTOR = {"2p": "learned", "1p": "seed"}


class DetectorChoiceError(RtcalError, ValueError):
    """Unknown detector name; the message lists the known ones."""


def make_detector(name: str, pipeline_config, *, weights: str | Path | None = None,
                  runtime: str | None = None, device: str = "cpu",
                  threads: int | None = None, score_threshold: float | None = None,
                  sure_score: float | None = None, in_pipeline: bool = False
                  ) -> FootprintProposer:
    """The detector ``name`` set up for ``pipeline_config`` (a PipelineConfig: its
    seed settings, or its soma radius and mode for the learned detector).

    weights: learned checkpoint (default: the shipped one); runtime: "auto" (None),
    "eager", "onnx", "compile" or "tensorrt"; device: "cpu" or "cuda"; threads:
    ONNX Runtime CPU threads; score_threshold: "neuron" score a proposal needs
    (default: the checkpoint's, calibrated for the pipeline's mode); sure_score:
    score from which a proposal is ``sure`` (added by the first re-run that makes
    it; default ``LearnedDetectorConfig.sure_score``; 1 for none); in_pipeline:
    the detector seeds an online pipeline (use the checkpoint's pipeline threshold,
    ``LearnedDetectorConfig``). Only "learned" reads them.
    """
    if name == "seed":
        return SeedDetector(pipeline_config.seed)
    if name == "learned+seed":
        from rtcal.detect.combined import CombinedDetector

        learned = make_detector("learned", pipeline_config, weights=weights, runtime=runtime,
                                device=device, threads=threads,
                                score_threshold=score_threshold, sure_score=sure_score,
                                in_pipeline=in_pipeline)
        return CombinedDetector(learned, SeedDetector(pipeline_config.seed))
    if name == "learned":
        from rtcal.detect.learned import SURE_SCORE, LearnedDetector, LearnedDetectorConfig

        config = LearnedDetectorConfig(radius_px=pipeline_config.radius_px,
                                       mode=pipeline_config.mode,
                                       score_threshold=score_threshold,
                                       sure_score=SURE_SCORE if sure_score is None
                                       else float(sure_score),
                                       in_pipeline=in_pipeline)
        return LearnedDetector.from_weights(weights, config, device=device, prefer=runtime,
                                            threads=threads)
    raise DetectorChoiceError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


DETECTOR_KEYS = ("name", "weights", "runtime", "device", "threads", "score_threshold",
                 "sure_score")


def describe_detector(detector: FootprintProposer) -> str:
    """What a results file records of its detector: "seed", "learned (score
    threshold T)", the two of a combined one joined by " + ", or the class name of
    another proposer."""
    if isinstance(detector, SeedDetector):
        return "seed"
    if type(detector).__name__ == "CombinedDetector":
        return f"{describe_detector(detector.first)} + {describe_detector(detector.second)}"
    threshold = getattr(detector, "score_threshold", None)
    if type(detector).__name__ == "LearnedDetector":
        return f"learned (score threshold {threshold:g})"
    return type(detector).__name__


def detector_from_section(section: dict | None, pipeline_config, **flags) -> FootprintProposer:
    """The detector of an online pipeline (``rtcal run``, ``rtcal serve``) from a
    config file's ``[detector]`` table (keys: name, one of ``DETECTORS``; weights,
    runtime, device, threads, score_threshold, sure_score), with ``flags`` (the same keys,
    None = not given) taking precedence; default name: ``DEFAULT_DETECTOR`` of the
    pipeline's mode. The learned detector uses the checkpoint's pipeline threshold."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(DETECTOR_KEYS))
    if unknown:
        raise DetectorChoiceError(f"[detector]: unknown keys {unknown}; known: "
                                  f"{', '.join(DETECTOR_KEYS)}")
    section.update({k: v for k, v in flags.items() if v is not None})
    name = section.pop("name", None) or DEFAULT_DETECTOR[pipeline_config.mode]
    return make_detector(name, pipeline_config, in_pipeline=True, **section)
