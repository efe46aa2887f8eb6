"""The prediction ledger: one durable record per job step, replaced whole."""

from __future__ import annotations

import json

import pytest

from resources.prediction_ledger import PredictionLedger, PredictionRecord, input_fingerprint


def _record(**changes) -> PredictionRecord:
    base = {
        "job_id": "j1",
        "step": "video",
        "prediction_id": "p1",
        "model": "kling/v1.6",
        "provider_model": "kwaivgi/kling-v1.6-standard",
        "fingerprint": input_fingerprint("kling/v1.6", "kwaivgi/kling-v1.6-standard", {"a": 1}),
        "status": "starting",
        "urls": {"get": "https://api/v1/predictions/p1"},
    }
    return PredictionRecord(**{**base, **changes})


def test_round_trip_and_replace(tmp_path) -> None:
    ledger = PredictionLedger(str(tmp_path))
    assert ledger.read("j1", "video") is None
    ledger.save(_record())
    ledger.save(ledger.read("j1", "video").with_status("succeeded", ["https://out/1.mp4"]))
    saved = ledger.read("j1", "video")
    assert saved.status == "succeeded" and saved.output == ["https://out/1.mp4"]
    assert saved.prediction_id == "p1" and 0 <= saved.age_seconds() < 60
    assert [p.name for p in (tmp_path / "j1").iterdir()] == ["video.json"]


def test_unknown_keys_are_ignored(tmp_path) -> None:
    ledger = PredictionLedger(str(tmp_path))
    ledger.save(_record())
    path = tmp_path / "j1" / "video.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "later_field": 1}))
    assert ledger.read("j1", "video").status == "starting"


@pytest.mark.parametrize("job_id,step", [("", "s"), ("a/b", "s"), ("j", "../s"), (".j", "s")])
def test_keys_cannot_leave_the_ledger(tmp_path, job_id, step) -> None:
    with pytest.raises(ValueError):
        PredictionLedger(str(tmp_path)).path(job_id, step)


def test_fingerprint_tells_inputs_apart() -> None:
    one = input_fingerprint("m", "o/m", {"prompt": "a", "image": "media:x.jpg"})
    assert one == input_fingerprint("m", "o/m", {"image": "media:x.jpg", "prompt": "a"})
    assert one != input_fingerprint("m", "o/m", {"prompt": "b", "image": "media:x.jpg"})
    assert one != input_fingerprint("n", "o/n", {"prompt": "a", "image": "media:x.jpg"})
