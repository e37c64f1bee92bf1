"""Results file: round trip, validation of writer inputs, rejection of bad files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import h5py
import numpy as np
import pytest

from rtcal.store import (
    Events,
    Results,
    ResultsFormatError,
    ResultsWriteError,
    ResultsWriter,
    read_results,
    write_results,
)
from rtcal.store import format as fmt

H, W = 12, 10


def make_results(t_n: int = 40, born=(0, 0, 7, 25)) -> Results:
    """A small Results with components born mid-stream (NaN before birth)."""
    rng = np.random.default_rng(1)
    born = np.array(born, np.int64)
    k_n = len(born)
    traces = rng.random((k_n, t_n), dtype=np.float32)
    spikes = rng.random((k_n, t_n), dtype=np.float32)
    unborn = born[:, None] > np.arange(t_n)[None, :]
    traces[unborn] = np.nan
    spikes[unborn] = np.nan
    events = Events(
        frame=np.array([3, 9, 30], np.int64),
        t_ns=np.array([10, 20, 30], np.int64),
        rule=("burst", "ensemble-α", "burst"),
        neurons=(np.array([1], np.int64), np.zeros(0, np.int64), np.array([0, 2, 3], np.int64)),
    )
    return Results(
        height=H,
        width=W,
        fps_hz=30.0,
        footprints=rng.random((k_n, H, W), dtype=np.float32),
        traces=traces,
        spikes=spikes,
        born_frame=born,
        frame_index=np.arange(t_n, dtype=np.int64) * 2 + 5,
        shifts=rng.normal(size=(t_n, 2)).astype(np.float32),
        t_received_ns=np.arange(t_n, dtype=np.int64) * 1000,
        t_done_ns=np.arange(t_n, dtype=np.int64) * 1000 + 7,
        events=events,
        attrs={"seed": 3, "note": "unit test"},
    )


def assert_same(a: Results, b: Results) -> None:
    for name in ("height", "width", "fps_hz", "attrs"):
        assert getattr(a, name) == getattr(b, name), name
    for name in (
        "footprints",
        "traces",
        "spikes",
        "born_frame",
        "frame_index",
        "shifts",
        "t_received_ns",
        "t_done_ns",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here
    np.testing.assert_array_equal(a.events.frame, b.events.frame)
    np.testing.assert_array_equal(a.events.t_ns, b.events.t_ns)
    assert a.events.rule == b.events.rule
    assert len(a.events.neurons) == len(b.events.neurons)
    for x, y in zip(a.events.neurons, b.events.neurons, strict=True):
        np.testing.assert_array_equal(x, y)


def test_round_trip(tmp_path):
    path = tmp_path / "r.h5"
    original = make_results()
    write_results(path, original)
    back = read_results(path)
    assert back.complete and back.software.startswith("rtcal ")
    assert_same(original, back)
    assert np.isnan(back.traces[3, :25]).all() and not np.isnan(back.traces[3, 25:]).any()


def test_round_trip_empty(tmp_path):
    path = tmp_path / "empty.h5"
    empty = dataclasses.replace(make_results(t_n=0, born=()), events=Events.empty())
    write_results(path, empty)
    back = read_results(path)
    assert back.n_frames == 0 and back.n_components == 0 and len(back.events) == 0
    assert back.traces.shape == (0, 0) and back.footprints.shape == (0, H, W)


def test_streaming_growth_and_refinement(tmp_path):
    """K grows mid-stream, rows are refined in place, unflushed frames get new rows as NaN."""
    path = tmp_path / "s.h5"
    with ResultsWriter(path, height=H, width=W, fps_hz=10.0, block_frames=4) as w:
        w.set_footprints(np.ones((1, H, W), np.float32), np.array([0]))
        for t in range(10):
            if t == 6:  # refine row 0, add row 1 born now
                w.set_footprints(np.full((2, H, W), 2, np.float32), np.array([0, 6]))
            k = w.n_components
            w.append_frame(
                index=t,
                traces=np.full(k, t, np.float32),
                spikes=np.zeros(k, np.float32),
                shift=(0, 0),
                t_received_ns=0,
                t_done_ns=0,
            )
    r = read_results(path)
    assert r.complete and r.n_frames == 10
    np.testing.assert_array_equal(r.born_frame, [0, 6])
    assert (r.footprints == 2).all()
    np.testing.assert_array_equal(r.traces[0], np.arange(10))
    assert np.isnan(r.traces[1, :6]).all()
    np.testing.assert_array_equal(r.traces[1, 6:], np.arange(6, 10))


def test_changed_hint_limits_rewritten_rows(tmp_path):
    path = tmp_path / "c.h5"
    with ResultsWriter(path, height=H, width=W, fps_hz=1.0) as w:
        w.set_footprints(np.zeros((3, H, W), np.float32), np.zeros(3, np.int64))
        w.flush()
        refined = np.stack([np.full((H, W), v, np.float32) for v in (1, 2, 3)])
        w.set_footprints(refined, np.zeros(3, np.int64), changed=[0, 2])
    r = read_results(path)
    np.testing.assert_array_equal(r.footprints[:, 0, 0], [1, 0, 3])  # row 1 taken as unchanged


def test_h5py_alone_reads_it(tmp_path):
    """What docs/results-format.md promises: plain h5py, no rtcal."""
    path = tmp_path / "r.h5"
    write_results(path, make_results())
    with h5py.File(path, "r", swmr=True) as f:  # as docs/results-format.md says
        assert f.attrs["format"] == "rtcal-results" and f.attrs["complete"]
        traces = f["traces"][:]
        t_n = f["frames/index"].shape[0]
        offset = f["events/neurons_offset"][:]
        neurons = f["events/neurons"][offset[2] : offset[3]]
        rules = f["events/rule"].asstr()[:]
    assert traces.shape == (4, t_n) and list(neurons) == [0, 2, 3]
    assert list(rules) == ["burst", "ensemble-α", "burst"]


def test_reading_while_writing_from_another_process(tmp_path):
    """A file still open for writing reads as incomplete, up to the last flush.

    (HDF5 will not open a file twice in one process with different modes, so the
    live reader is another process, as a live viewer would be.)
    """
    path = tmp_path / "live.h5"
    w = ResultsWriter(path, height=H, width=W, fps_hz=10.0, flush_interval_s=3600.0)
    w.set_footprints(np.ones((2, H, W), np.float32), np.array([0, 0]))
    for t in range(5):
        w.append_frame(**frame(2, index=t))
    w.flush()
    w.append_frame(**frame(2, index=5))  # buffered, not flushed
    code = "import sys; from rtcal.store import read_results as r; x = r(sys.argv[1]); "
    code += "print(x.complete, x.n_frames, x.n_components)"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.split() == ["False", "5", "2"], out.stderr
    finally:
        w.close()
    assert read_results(path).n_frames == 6


# ------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(ResultsFormatError, match="no such file"):
        read_results(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello, not HDF5\n" * 100)
    with pytest.raises(ResultsFormatError, match="not an HDF5 file"):
        read_results(path)


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["traces"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ResultsFormatError, match="not an rtcal results file"):
        read_results(path)


@pytest.mark.parametrize("complete", [True, False])
def test_truncated(tmp_path, complete):
    """Half the bytes of a closed file, and of a file whose writer never closed it."""
    path = tmp_path / "full.h5"
    if complete:
        write_results(path, make_results(t_n=3000))
    else:
        w = ResultsWriter(path, height=H, width=W, fps_hz=1.0)
        w.set_footprints(np.ones((2, H, W), np.float32), np.array([0, 0]))
        for t in range(3000):
            w.append_frame(
                index=t, traces=np.ones(2, np.float32), spikes=np.ones(2, np.float32),
                shift=(0, 0), t_received_ns=0, t_done_ns=0,
            )  # fmt: skip
        w.flush()
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    if not complete:
        w.close()
    with pytest.raises(ResultsFormatError, match="truncated"):
        read_results(cut)


def test_newer_version(tmp_path):
    path = tmp_path / "v2.h5"
    write_results(path, make_results())
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = fmt.FORMAT_VERSION + 1
    with pytest.raises(ResultsFormatError, match="newer rtcal"):
        read_results(path)


def test_missing_dataset_and_wrong_dtype(tmp_path):
    path = tmp_path / "r.h5"
    write_results(path, make_results())
    with h5py.File(path, "r+") as f:
        del f["spikes"]
    with pytest.raises(ResultsFormatError, match="missing dataset 'spikes'"):
        read_results(path)
    write_results(path, make_results())
    with h5py.File(path, "r+") as f:
        data = f["born_frame"][:]
        del f["born_frame"]
        f["born_frame"] = data.astype(np.float64)
    with pytest.raises(ResultsFormatError, match="born_frame"):
        read_results(path)


def test_complete_file_with_inconsistent_columns(tmp_path):
    path = tmp_path / "r.h5"
    write_results(path, make_results())
    with h5py.File(path, "r+") as f:
        f["frames/t_done_ns"].resize(10, axis=0)
    with pytest.raises(ResultsFormatError, match="T disagrees"):
        read_results(path)


def test_incomplete_file_is_trimmed_to_consistent_prefix(tmp_path):
    path = tmp_path / "r.h5"
    write_results(path, make_results())
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
        f["frames/t_done_ns"].resize(10, axis=0)
        f["events/frame"].resize(2, axis=0)
    r = read_results(path)
    assert not r.complete and r.n_frames == 10 and r.traces.shape == (4, 10)
    assert len(r.events) == 2 and len(r.events.neurons) == 2


# ------------------------------------------------------- writer validation


def frame(k: int, index: int = 0, **kw) -> dict:
    args = dict(
        index=index,
        traces=np.ones(k, np.float32),
        spikes=np.ones(k, np.float32),
        shift=(0.0, 0.0),
        t_received_ns=0,
        t_done_ns=1,
    )
    args.update(kw)
    return args


@pytest.fixture
def writer(tmp_path):
    w = ResultsWriter(tmp_path / "w.h5", height=H, width=W, fps_hz=30.0)
    w.set_footprints(np.ones((2, H, W), np.float32), np.array([0, 0]))
    yield w
    w.close()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(traces=np.ones(2, np.int32)), "1-D float"),
        (dict(traces=np.ones((2, 1), np.float32)), "1-D float"),
        (dict(spikes=np.ones(1, np.float32)), "spikes 1"),
        (dict(shift=(np.nan, 0.0)), "shift"),
        (dict(shift=(0.0, 0.0, 0.0)), "shift"),
        (dict(t_received_ns=5, t_done_ns=4), "before t_received_ns"),
    ],
)
def test_append_frame_rejects(writer, bad, match):
    with pytest.raises(ResultsWriteError, match=match):
        writer.append_frame(**frame(2, **bad))


def test_append_frame_rejects_order_and_unknown_components(writer):
    writer.append_frame(**frame(2, index=4))
    with pytest.raises(ResultsWriteError, match="index must increase"):
        writer.append_frame(**frame(2, index=4))
    with pytest.raises(ResultsWriteError, match="set_footprints first"):
        writer.append_frame(**frame(3, index=5))


def test_set_footprints_rejects(writer):
    ones = np.ones((3, H, W), np.float32)
    with pytest.raises(ResultsWriteError, match="K shrank"):
        writer.set_footprints(ones[:1], np.array([0]))
    with pytest.raises(ResultsWriteError, match=r"must be \(K, 12, 10\)"):
        writer.set_footprints(np.ones((3, H, W + 1), np.float32), np.zeros(3, np.int64))
    with pytest.raises(ResultsWriteError, match="NaN"):
        writer.set_footprints(ones * np.nan, np.zeros(3, np.int64))
    with pytest.raises(ResultsWriteError, match="changed"):
        writer.set_footprints(ones, np.array([0, 1, 2]))
    writer.append_frame(**frame(2, index=0))
    with pytest.raises(ResultsWriteError, match="already appended"):
        writer.set_footprints(ones, np.array([0, 0, 0]))


def test_values_before_birth_rejected(writer):
    writer.set_footprints(np.ones((3, H, W), np.float32), np.array([0, 0, 5]))
    with pytest.raises(ResultsWriteError, match="not yet born"):
        writer.append_frame(**frame(3))
    writer.append_frame(**frame(3, traces=np.array([1, 1, np.nan], np.float32),
                              spikes=np.array([1, 1, np.nan], np.float32)))  # fmt: skip


def test_add_event_rejects(writer):
    with pytest.raises(ResultsWriteError, match="rule"):
        writer.add_event(frame=0, t_ns=0, rule="x" * 65, neurons=[0])
    with pytest.raises(ResultsWriteError, match="outside"):
        writer.add_event(frame=0, t_ns=0, rule="r", neurons=[2])
    with pytest.raises(ResultsWriteError, match="integer"):
        writer.add_event(frame=0, t_ns=0, rule="r", neurons=[0.5])


def test_writer_settings_and_closed(tmp_path):
    with pytest.raises(ResultsWriteError, match="reserved"):
        ResultsWriter(tmp_path / "a.h5", height=H, width=W, fps_hz=1.0, attrs={"complete": 1})
    with pytest.raises(ResultsWriteError, match="fps_hz"):
        ResultsWriter(tmp_path / "a.h5", height=H, width=W, fps_hz=0.0)
    with pytest.raises(ResultsWriteError, match="cannot create"):
        ResultsWriter(tmp_path / "no" / "dir.h5", height=H, width=W, fps_hz=1.0)
    w = ResultsWriter(tmp_path / "a.h5", height=H, width=W, fps_hz=1.0)
    w.close()
    w.close()  # idempotent
    with pytest.raises(ResultsWriteError, match="closed"):
        w.append_frame(**frame(0))
    with pytest.raises(ResultsWriteError, match="overwrite=False"):
        ResultsWriter(tmp_path / "a.h5", height=H, width=W, fps_hz=1.0, overwrite=False)


def test_write_results_rejects_inconsistent_shapes(tmp_path):
    bad = dataclasses.replace(make_results(), spikes=np.zeros((4, 39), np.float32))
    with pytest.raises(ResultsWriteError, match=r"results.spikes is \(4, 39\)"):
        write_results(tmp_path / "bad.h5", bad)


def test_exception_in_with_block_leaves_incomplete(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        with ResultsWriter(path, height=H, width=W, fps_hz=1.0) as w:
            w.set_footprints(np.ones((1, H, W), np.float32), np.array([0]))
            w.append_frame(**frame(1))
            raise RuntimeError("engine failed")
    r = read_results(path)
    assert not r.complete and r.n_frames == 1
