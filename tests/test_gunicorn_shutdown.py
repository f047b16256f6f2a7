"""Under gunicorn (2 sync workers), SIGTERM flushes every queued touchpoint.

The sink's flush interval is a minute, so nothing reaches the file during the
run: every record on disk was written by the shutdown path (atexit in each
worker), which is what an operator relies on at every deploy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.servers import free_port, http_up, wait_for

REQUESTS = 200

APP = textwrap.dedent('''
    from flask import Flask
    from personalize_mw import PersonalizeWSGIMiddleware

    app = Flask(__name__)

    @app.route("/<path:page>")
    def page(page):
        return "<html><body><!-- personalize:hero -->x<!-- /personalize:hero --></body></html>"

    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config={
        "secret_keys": ["gunicorn-test-secret-0123456789"],
        "sink": "jsonl:touchpoints.jsonl",
        "base_dir": BASE_DIR,
        "slots": {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "v", "template": "<b>v</b>"}]}},
        "delivery": {"flush_interval_s": 60, "batch_size": 10000, "queue_size": 100000},
    })
''')


def test_sigterm_under_gunicorn_writes_every_record(tmp_path: Path) -> None:
    (tmp_path / "gunicorn_app.py").write_text(APP.replace("BASE_DIR", repr(str(tmp_path))))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(tmp_path), "--graceful-timeout", "20", "gunicorn_app:app"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: http_up(f"http://127.0.0.1:{port}/ping"), "gunicorn")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(REQUESTS):
                assert client.get(f"/page/{i}").status_code == 200
        sink = tmp_path / "touchpoints.jsonl"
        assert not sink.exists() or sink.read_text() == ""  # nothing flushed before shutdown
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    pages = sorted(r["path"] for r in records if r["type"] == "pageview" and r["path"].startswith("/page/"))
    assert pages == sorted(f"/page/{i}" for i in range(REQUESTS))
    assert sum(1 for r in records if r["type"] == "exposure" and r["path"].startswith("/page/")) == REQUESTS
