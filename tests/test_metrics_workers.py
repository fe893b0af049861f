"""GET /v1/chat/metrics under `hypercorn -w 2`: any worker's scrape counts every worker's requests."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import httpx

from tests.harness import ServerProcess, free_port
from tests.test_observability import delta, scrape

HI = [{"role": "user", "content": "Hi"}]


def worker_pids(directory: Path) -> set[str]:
    """Workers that have written counters to the shared directory (prometheus_client names files by pid)."""
    return {m.group(1) for f in directory.iterdir() if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))}


def test_two_workers_share_their_counts(tmp_path, ollama):
    config = tmp_path / "lakehouse.toml"
    config.write_text(f'[chatd]\nollama_url = "{ollama.url}"\n')
    shared = tmp_path / "metrics"
    port = free_port()
    hypercorn = str(Path(sys.executable).parent / "hypercorn")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    env.update(LAKEHOUSE_CONFIG=str(config), PROMETHEUS_MULTIPROC_DIR=str(shared))
    argv = [hypercorn, "app:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    with ServerProcess(argv, port, tmp_path / "hypercorn.log", env=env) as server:
        server.wait_healthy()
        before = scrape(server.url)
        made = 0
        # Each request on a new connection; the kernel hands connections to either worker.
        while made < 200 and (made < 10 or len(worker_pids(shared)) < 2):
            response = httpx.post(server.url + "/v1/chat/completions", timeout=10,
                                  json={"model": "qwen3:8b", "messages": HI})
            assert response.status_code == 200
            made += 1
        assert len(worker_pids(shared)) == 2, "one worker served every request"
        for _ in range(4):  # whichever worker answers the scrape, it counts both workers' requests
            counted = delta(before, scrape(server.url), "chatd_requests_total", provider="ollama", status="200")
            assert counted == made
        assert server.stop() == 0, server.output()
