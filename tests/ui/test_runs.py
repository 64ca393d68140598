"""The wizard's checks (one-line errors next to the field, uploads size-limited and saved under our own name),
the project it writes, the jobs (subprocesses whose state is read back from files), and the review page's
conflict message — in process, without a browser."""

from __future__ import annotations

import json
import re
import time

import pytest

from kogata.core.errors import KogataError
from kogata.serve.ui import runs as lib


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def test_upload_is_checked_like_the_cli_and_saved_under_our_name(tmp_path):
    folder = tmp_path / "data"
    path = lib.check_upload("../../etc/passwd.jsonl", b'{"text": "\xe8\xbf\x94\xe5\x93\x81\xe3\x81\xaf30\xe6\x97\xa5\xe4\xbb\xa5\xe5\x86\x85"}\n', folder)
    assert path == folder / "upload.jsonl" and path.is_file()
    with pytest.raises(KogataError, match=r"data file type \.exe is not accepted"):
        lib.check_upload("tool.exe", b"MZ", folder)
    with pytest.raises(KogataError, match="upload at most"):
        lib.check_upload("big.txt", b"a" * (lib.UPLOAD_MAX_BYTES + 1), folder)
    with pytest.raises(KogataError) as err:
        lib.check_upload("bad.jsonl", b'{"text": "ok"}\n{not json\n', folder)
    assert "data file" in str(err.value) and str(folder) not in str(err.value) and "\n" not in str(err.value)


def test_wizard_errors_are_shown_next_to_their_fields(client):
    token = csrf_of(client.get("/ui/runs/new").text)
    r = client.post("/ui/runs/new", data={"csrf_token": token, "base": "no-such-model", "suite": "tiny-desk", "budget": "x",
                                          "limit": "1", "kpi__max__peak_rss_mb": "lots"},
                    files={"data": ("notes.exe", b"MZ", "application/octet-stream")})
    assert r.status_code == 400
    for field in ("base", "budget", "limit", "data", "kpi__max__peak_rss_mb"):
        assert f'id="err-{field}"' in r.text, field
        assert f'aria-describedby="err-{field}' in r.text or f'err-{field}"' in r.text
    assert "data file type .exe is not accepted" in r.text


def test_wizard_writes_a_project_that_kogata_optimize_loads(ui_home, tmp_path):
    from kogata.optimize.project import load_project

    suite = lib.find_suite(ui_home, "tiny-desk")
    path = lib.write_project(tmp_path, name="ui test", base="tiny-hf", suite=suite, kpis={"max": {"peak_rss_mb": 5000.0}},
                             language="ja", budget_minutes=3, limit=3, data=[])
    project = load_project(path)
    assert project.base == "tiny-hf" and project.language == "ja" and project.budget_minutes == 3
    import yaml

    assert yaml.safe_load((tmp_path / "suite" / "suite.yaml").read_text(encoding="utf-8"))["kpis"] == {"max": {"peak_rss_mb": 5000.0}}


def test_a_job_runs_kogata_and_its_end_is_read_back(tmp_path, ui_home):
    from kogata.serve.ui.jobs import Jobs

    jobs = Jobs(tmp_path / "jobs", ui_home)
    job = jobs.start("pull", "list", ["models", "list"], meta={"model": "x"})
    deadline = time.monotonic() + 60
    while jobs.get(job["id"])["status"] == "running":
        assert time.monotonic() < deadline, "the job did not end in 60 s"
        time.sleep(0.1)
    done = jobs.get(job["id"])
    assert done["status"] == "done" and done["returncode"] == 0
    assert any("tiny" in line for line in jobs.log_tail(job["id"]))
    again = Jobs(tmp_path / "jobs", ui_home)  # another process (a restarted server) sees the same
    assert again.get(job["id"])["status"] == "done"
    bad = jobs.start("pull", "bad", ["models", "show", "no-such-model"])
    while jobs.get(bad["id"])["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert jobs.get(bad["id"])["status"] == "failed"
    with pytest.raises(KogataError, match="not valid"):
        jobs.get("../../etc")


def test_a_job_whose_process_vanished_is_interrupted_and_can_resume(tmp_path, ui_home):
    from kogata.core.io import atomic_write_json
    from kogata.serve.ui.jobs import Jobs

    jobs = Jobs(tmp_path / "jobs", ui_home)
    job_id, folder = jobs.new_folder()
    atomic_write_json({"id": job_id, "kind": "optimize", "title": "t", "args": ["models", "list"], "pid": 2**22 + 7,
                       "created": time.time(), "meta": {}}, folder / "job.json")
    assert jobs.get(job_id)["status"] == "interrupted"
    resumed = jobs.resume(job_id)
    assert resumed["starts"] == 1 and resumed["status"] in ("running", "done")


def test_review_conflict_is_reported_with_the_queue_message(client, ui_home):
    from tests.ui.conftest import seed_review

    flagged, _ = seed_review(ui_home)
    token = csrf_of(client.get("/ui/review").text)
    ok = client.post(f"/ui/review/{flagged}/approve", data={"csrf_token": token, "version": "1"}, headers={"hx-request": "true"})
    assert ok.status_code == 200 and f"#{flagged}" in ok.text
    stale = client.post(f"/ui/review/{flagged}/reject", data={"csrf_token": token, "version": "1"}, headers={"hx-request": "true"})
    assert stale.status_code == 409 and "was changed by someone else" in stale.text
    empty = client.post(f"/ui/review/{flagged + 1}/correct", data={"csrf_token": token, "version": "1", "text": "  "},
                        headers={"hx-request": "true"})
    assert empty.status_code == 400


def test_reason_notes_are_worded_in_the_page_language():
    note = json.dumps({"key": "reason_smaller_passes", "params": {"label": "Q4_0"}, "text": "cannot be smaller than Q4_0"})
    assert "Q4_0" in lib.reason_text(note, "ja") and "KPI" in lib.reason_text(note, "ja")
    assert lib.reason_text("plain words", "ja") == "plain words"
