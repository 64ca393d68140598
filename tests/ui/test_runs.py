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


class _CountingReader:
    """A file-like source of ``size`` bytes of JSONL that counts what was read from it."""

    def __init__(self, size: int):
        line = ('{"text": "' + "返品は30日以内" * 4 + '"}\n').encode("utf-8")
        self.data = line * (size // len(line) + 1)
        self.pos = 0

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def test_a_large_upload_is_copied_in_pieces_and_cut_off_at_the_limit(tmp_path):
    folder = tmp_path / "data"
    ok = lib.save_upload("corpus.jsonl", _CountingReader(3_000_000), folder, limit=5_000_000)
    assert ok == folder / "upload.jsonl" and ok.stat().st_size > 3_000_000
    ok.unlink()
    source = _CountingReader(30_000_000)
    with pytest.raises(KogataError) as err:
        lib.save_upload("corpus.jsonl", source, folder, limit=2_000_000)
    assert "over the limit of 2 MB" in str(err.value) and "upload at most 2 MB" in str(err.value)
    assert source.pos <= 2_000_000 + lib.UPLOAD_CHUNK_BYTES  # it stopped reading at the limit
    assert list(folder.iterdir()) == []  # nothing half-written is left


def test_the_upload_route_has_its_own_20_mb_body_limit():
    from kogata.serve.ui import upload_path_limits

    assert lib.UPLOAD_MAX_BYTES == 20_000_000
    assert upload_path_limits() == {"/ui/runs/new": 40_000_000}
    assert lib.megabytes(20_000_000) == "20" and lib.megabytes(983_040) == "0.983"


def test_the_wizard_names_its_limit(client, gaps_client):
    assert "20 MB" in client.get("/ui/runs/new", params={"lang": "en"}).text  # not capped by the API's 1 MiB body limit
    html = gaps_client.get("/ui/runs/new", params={"lang": "ja"}).text
    assert "20 MB まで" in html and 'data-max-bytes="20000000"' in html


def _wizard_post(client, token, data: bytes, **fields):
    suite = lib.suites(client.app.state.kogata_ui.home)[0]["name"]
    form = {"csrf_token": token, "base": "smollm2-135m", "suite": suite, "budget": "0", "limit": "", **fields}
    return client.post("/ui/runs/new", data=form, files={"data": ("corpus.jsonl", data, "application/json")})


def test_a_2_mb_upload_passes_the_default_1_mib_body_limit(client):
    token = csrf_of(client.get("/ui/runs/new", params={"lang": "en"}).text)
    r = _wizard_post(client, token, _CountingReader(2_000_000).data)
    assert r.status_code == 400 and 'id="err-budget"' in r.text and 'id="err-data"' not in r.text, r.text[:300]
    r = client.post("/v1/completions", json={"model": "x", "prompt": "a" * (2 << 20)})
    assert r.status_code == 413  # the API keeps its own limit


def test_a_2_mb_upload_is_accepted_and_a_21_mb_one_refused_with_the_limit(gaps_client, gaps_home):
    jobs = gaps_home / "ui" / "jobs"
    before = sorted(jobs.iterdir()) if jobs.exists() else []
    token = csrf_of(gaps_client.get("/ui/runs/new", params={"lang": "en"}).text)
    r = _wizard_post(gaps_client, token, _CountingReader(2_000_000).data)
    assert r.status_code == 400 and 'id="err-budget"' in r.text  # the budget of 0 is refused…
    assert 'id="err-data"' not in r.text  # …but the 2 MB file was read and accepted
    r = _wizard_post(gaps_client, token, _CountingReader(21_000_000).data)
    assert r.status_code == 413 and 'id="err-data"' in r.text and "larger than 20 MB" in r.text
    just_over = _CountingReader(20_010_000).data[:20_010_000]  # inside the form's room: read, then cut off at 20 MB
    r = _wizard_post(gaps_client, token, just_over)
    assert r.status_code == 400 and "larger than 20 MB" in r.text
    assert (sorted(jobs.iterdir()) if jobs.exists() else []) == before  # no job folder is left behind
