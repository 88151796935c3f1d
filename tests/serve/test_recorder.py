"""The server's step recorder: rotation, dropping instead of blocking, recording under load,
one model per file (the log format itself: tests/logformat)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from sim2real.logformat.mcap_log import LogWriter, read_log
from sim2real.serve.client import PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.recorder import RecorderConfig, StepRecorder
from sim2real.serve.synthetic import OBS_DIM, write_policy
from sim2real.serve.testing import BackgroundServer
from sim2real.v1 import log_pb2, policy_pb2


def test_recorder_rotates_and_loses_nothing_it_reports_written(tmp_path: Path) -> None:
    config = RecorderConfig(tmp_path / "rec", max_file_bytes=32 * 1024, max_files=1000, queue_size=100_000)
    recorder = StepRecorder(config, lambda name: log_pb2.LogInfo(source="server"))
    request = policy_pb2.ActRequest(observation=[0.5] * 45, sequence=0)
    for i in range(5000):
        request.sequence = i
        recorder.submit(policy_pb2.ActRequest(observation=request.observation, sequence=i, client_time_ns=i + 1),
                        policy_pb2.ActResponse(action=[0.1] * 12, sequence=i, model_version=2))
    stats = recorder.close()
    assert stats.submitted == 5000 and stats.dropped == 0 and stats.failed == 0 and stats.written == 5000
    files = recorder.paths()
    assert len(files) == stats.files > 1  # rotated
    sequences = [s.sequence for f in files for s in read_log(f).steps]
    assert sequences == list(range(5000))


def test_recorder_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    recorder = StepRecorder(RecorderConfig(tmp_path / "rec", queue_size=10), lambda name: log_pb2.LogInfo())

    def submit_all() -> None:
        for i in range(3000):
            recorder.submit(policy_pb2.ActRequest(sequence=i, observation=[0.5] * 45),
                            policy_pb2.ActResponse(sequence=i, action=[0.1] * 12))

    os.kill(recorder._process.pid, signal.SIGSTOP)  # the writer stalls: a slow disk
    submitter = threading.Thread(target=submit_all)
    try:
        submitter.start()
        # Every submit returns while the writer is still stopped: none waited for it (one
        # that did would wait until SIGCONT below, never within the join).
        submitter.join(timeout=120)
        finished_while_stalled = not submitter.is_alive()
    finally:
        os.kill(recorder._process.pid, signal.SIGCONT)
        submitter.join()
    assert finished_while_stalled
    assert recorder.stats.dropped > 0
    stats = recorder.close()
    assert stats.written + stats.dropped == stats.submitted == 3000 and stats.failed == 0
    sequences = [s.sequence for s in read_log(recorder.paths()[0]).steps]
    assert len(sequences) == stats.written and sequences == sorted(sequences)


def test_server_records_every_step_it_serves_under_load(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx")
    obs = np.zeros(OBS_DIM, np.float32)
    config = ServeConfig(model=tmp_path / "p.onnx", port=0, device="cpu", record=tmp_path / "logs", record_max_file_mb=0.05)
    served: list[int] = []
    with BackgroundServer(config) as srv:
        def loop(k: int) -> None:
            with PolicyClient(srv.target) as client, client.session(deadline_s=1.0) as session:
                for _ in range(300):
                    r = session.step(obs)
                    assert not r.fallback, r.reason
                    served.append(r.sequence)
        threads = [threading.Thread(target=loop, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recorder = srv.server.recorder
        assert recorder is not None
        srv.stop()
    stats = recorder.stats
    assert stats.submitted == len(served) == 1200
    steps = [s for f in recorder.paths() for s in read_log(f).steps]
    assert len(steps) == stats.written == stats.submitted - stats.dropped
    assert stats.dropped == 0  # 4 x 300 steps never fill a 65536-step queue
    assert all(s.model_name == "p" and len(s.action) == 3 and len(s.observation) == OBS_DIM for s in steps)
    info = read_log(recorder.paths()[0]).info
    assert info.source == "server" and list(info.joint_names) == ["joint0", "joint1", "joint2"]


def test_bad_timestamps_are_refused_before_they_cost_the_file(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "a.mcap", log_pb2.LogInfo(source="sim")) as log:
        log.write(log_pb2.RobotStep(timestamp_ns=5, sequence=0))
        with pytest.raises(ValueError, match="timestamp_ns"):
            log.write(log_pb2.RobotStep(timestamp_ns=-1, sequence=1))
        log.write(log_pb2.RobotStep(timestamp_ns=7, sequence=2))
    assert [s.sequence for s in read_log(tmp_path / "a.mcap").steps] == [0, 2]
    # The recorder falls back to its own clock for a negative client time.
    recorder = StepRecorder(RecorderConfig(tmp_path / "rec"), lambda name: log_pb2.LogInfo(source="server"))
    recorder.submit(policy_pb2.ActRequest(sequence=1, client_time_ns=-5), policy_pb2.ActResponse(sequence=1))
    stats = recorder.close()
    assert stats.written == 1 and stats.failed == 0
    assert read_log(recorder.paths()[0]).steps[0].timestamp_ns > 0


def test_recorder_keeps_each_model_in_its_own_files(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_policy(root / "walk" / "1" / "policy.onnx", obs_dim=OBS_DIM, act_dim=3)
    write_policy(root / "wave" / "1" / "policy.onnx", obs_dim=4, act_dim=2)
    config = ServeConfig(model_repo=root, port=0, device="cpu", record=tmp_path / "logs")
    with BackgroundServer(config) as srv, PolicyClient(srv.target) as client:
        for _ in range(3):
            client.act(np.zeros(OBS_DIM), model_name="walk")
            client.act(np.zeros(4), model_name="wave")
        recorder = srv.server.recorder
        srv.stop()
    logs = {read_log(p).info.model_name: read_log(p) for p in recorder.paths()}
    assert set(logs) == {"walk", "wave"}
    assert len(logs["wave"].info.action_names) == 2 and len(logs["wave"].steps) == 3
    assert all(len(s.observation) == OBS_DIM for s in logs["walk"].steps)
