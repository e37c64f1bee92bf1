"""``rtcal serve`` settings from a config file and flags; ``rtcal stream`` into an engine
while ``rtcal listen`` saves what it publishes."""

import argparse
import threading

import numpy as np
import pytest
import zmq
from engine_live_helpers import close_all, start_engine, wait_processed

from rtcal.cli import build_parser, main
from rtcal.cli.serve import build_configs


def _serve_args(argv):
    return build_parser().parse_args(["serve", *argv])


def test_serve_reads_engine_and_triggers_from_the_config_and_flags_win(tmp_path):
    cfg = tmp_path / "rig.toml"
    cfg.write_text(
        "fps_hz = 20.0\nradius_px = 5.0\ninit_frames = 100\n"
        '[engine]\ndrop_policy = "newest"\nring_slots = 64\nresults_path = "a.h5"\n'
        '[[triggers]]\nname = "c3"\nkind = "threshold"\nneurons = [3]\nthreshold = 0.5\n'
    )
    engine, pipeline, rules, _ = build_configs(_serve_args(["--config", str(cfg)]))
    assert (engine.drop_policy, engine.ring_slots, engine.results_path) == ("newest", 64, "a.h5")
    assert (pipeline.fps_hz, pipeline.radius_px, pipeline.init_frames) == (20.0, 5.0, 100)
    assert [r["name"] for r in rules] == ["c3"]
    engine, pipeline, _, _ = build_configs(
        _serve_args(
            [
                "--config",
                str(cfg),
                "--fps",
                "40",
                "--ring-slots",
                "8",
                "--out",
                "b.h5",
                "--init-frames",
                "50",
            ]
        )
    )
    assert (engine.ring_slots, engine.results_path, engine.drop_policy) == (8, "b.h5", "newest")
    assert (pipeline.fps_hz, pipeline.init_frames) == (40.0, 50)
    engine, pipeline, rules, _ = build_configs(_serve_args(["--mode", "1p", "--radius", "8"]))
    assert pipeline.nmf.background == "ring" and pipeline.radius_px == 8 and rules == []
    assert engine.realtime_priority == 0
    cfg.write_text("[engine]\nrealtime_priority = 40\n")
    assert build_configs(_serve_args(["--config", str(cfg)]))[0].realtime_priority == 40
    engine = build_configs(_serve_args(["--config", str(cfg), "--realtime-priority", "0"]))[0]
    assert engine.realtime_priority == 0  # the flag wins, 0 included


def test_stream_simulation_into_an_engine_and_listen_saves_it(tmp_path):
    ctx = zmq.Context.instance()
    try:
        engine = start_engine(ctx, "tcp")
        saved = tmp_path / "heard.npz"
        n = 90
        listen = threading.Thread(
            target=main,
            args=(
                [
                    "listen",
                    engine.endpoints["results"],
                    "--events",
                    engine.endpoints["events"],
                    "--count",
                    str(n),
                    "--duration",
                    "30",
                    "--save",
                    str(saved),
                    "--quiet",
                ],
            ),
        )
        listen.start()
        import time

        time.sleep(0.5)  # the listener subscribes before frames flow
        assert (
            main(
                [
                    "stream",
                    "--simulate",
                    "--size",
                    "64",
                    "64",
                    "--neurons",
                    "5",
                    "--frames",
                    "50",
                    "--loop",
                    "--count",
                    str(n),
                    "--fps",
                    "200",
                    "--to",
                    engine.endpoints["frames"],
                ]
            )
            == 0
        )
        listen.join(30)
        status = wait_processed(engine, n)
    finally:
        close_all()
    assert status["counters"]["processed"] == n
    with np.load(saved) as got:
        np.testing.assert_array_equal(got["sequence"], np.arange(n))
        assert got["traces"].shape[0] == n and got["traces"].shape[1] >= 1
        assert got["footprints"].shape[1:] == (64, 64)
        assert (got["t_arrived_ns"] >= got["t_sent_ns"]).all()


def test_bench_parser_has_latency():
    args = build_parser().parse_args(["bench", "latency", "--size", "64", "64", "--fps", "50"])
    assert isinstance(args, argparse.Namespace) and args.bench == "latency"
    assert (args.realtime_priority, args.stall_watch) == (0, False)
    args = build_parser().parse_args(
        ["bench", "latency", "--realtime-priority", "50", "--stall-watch"])
    assert (args.realtime_priority, args.stall_watch) == (50, True)


def test_detector_section_and_flags_choose_the_detector(tmp_path):
    from detect_tiny import tiny_model

    from rtcal.detect.factory import DetectorChoiceError, detector_from_section
    from rtcal.detect.learned import LearnedDetector
    from rtcal.detect.model import DetectorCheckpointError, save_checkpoint
    from rtcal.detect.seed import SeedDetector

    cfg = tmp_path / "rig.toml"
    cfg.write_text('[detector]\nname = "learned"\nweights = "/nonexistent/detector.pt"\n')
    _, pipeline, _, section = build_configs(_serve_args(["--config", str(cfg)]))
    assert section == {"name": "learned", "weights": "/nonexistent/detector.pt"}
    with pytest.raises(DetectorCheckpointError, match="nonexistent"):
        detector_from_section(section, pipeline)
    assert isinstance(detector_from_section(section, pipeline, name="seed"), SeedDetector)
    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, tiny_model(), {"score_threshold": 0.3})
    learned = detector_from_section(section, pipeline, weights=str(weights))
    assert isinstance(learned, LearnedDetector) and learned.score_threshold == 0.3
    with pytest.raises(DetectorChoiceError, match="unknown keys"):
        detector_from_section({"nme": "seed"}, pipeline)
