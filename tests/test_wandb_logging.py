"""W&B logging with the real `wandb` in offline mode, in a temporary folder (no network).

Reference: the offline run file itself, read record by record (its LevelDB-style log framing,
then wandb's own protobuf `Record`), not anything `interp.wandb_logging` returns.
"""

from __future__ import annotations

import json
import struct
import time

import plotly.graph_objects as go
import pytest

from interp.runs import ModelRef, RunRecord, RunStore, SavedRun
from interp.wandb_logging import log_run, wandb_enabled

pytest.importorskip("wandb")

HEADER = 7  # ":W&B", a 2-byte magic, a version byte
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path):
    """wandb's protobuf records from an offline .wandb file."""
    from wandb.proto import wandb_internal_pb2

    data, offset, pending, records = path.read_bytes(), HEADER, b"", []
    while offset + 7 <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < 7:  # block trailer padding
            offset += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def config_of(records) -> dict:
    """The run's config as written: the run record's, then any later config records'."""
    config = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        items = (record.run.config.update if kind == "run" else
                 record.config.update if kind == "config" else ())
        config.update({item.key: json.loads(item.value_json) for item in items})
    return config


def test_a_saved_run_goes_to_wandb_offline_with_its_config_metrics_table_and_figure(
        tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_enabled()
    figure = go.Figure(go.Bar(y=[1.0, 2.0]))
    saved = RunStore(tmp_path / "runs.sqlite").save(RunRecord(
        "patching", "PatchingResult", ModelRef("demo", "sha256:abc"), options={"k": 3},
        summary={"logit_diff": 1.25, "label": "text"}, tables={"ranked": b"name,value\nL0,2\n"},
        figures=(figure.to_json(),), timings={"compute_s": 0.5}, title="offline"))
    assert log_run(saved, folder=str(tmp_path)) is None
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    # wandb-core writes the file from its own process: on a busy machine the config may land
    # after finish() returns (seen once in a full CI run), so read until it is there.
    deadline = time.monotonic() + 60
    while True:
        records = read_records(run_file)
        config = config_of(records)
        if "workbench_run_id" in config or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert config["workbench_run_id"] == saved.id
    assert config["options"] == {"k": 3}
    assert config["model"] == "demo" and config["page"] == "patching"
    history = {tuple(item.nested_key) or (item.key,): json.loads(item.value_json)
               for r in records if r.WhichOneof("record_type") == "history"
               for item in r.history.item}
    assert history[("logit_diff",)] == 1.25
    assert history[("timing/compute_s",)] == 0.5
    assert history[("table/ranked", "nrows")] == 1
    assert history[("figure/0", "_type")] == "plotly-file"
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/table/**/*.table.json"))


def test_wandb_is_off_without_a_key_and_a_failure_is_one_warning(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not wandb_enabled(secrets={}, environ={})
    assert wandb_enabled(secrets={"WANDB_API_KEY": "k"}, environ={})
    monkeypatch.setattr("wandb.init", lambda **_: (_ for _ in ()).throw(
        RuntimeError("unreachable host, key secret-key-123")))
    saved = SavedRun("0" * 32, "h", 0.0, RunRecord("p", "m", ModelRef("demo")), 0, False)
    message = log_run(saved, secrets={"WANDB_API_KEY": "secret-key-123"})
    assert message is not None and "failed" in message
    assert "secret-key-123" not in message
