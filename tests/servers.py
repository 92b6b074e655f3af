"""`recoup serve` in a subprocess for the HTTP tests: a free port, ready when `/readyz` answers,
stopped on exit; its output goes to a log file that failures quote."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def recoup_serve(args: list[str], env: dict[str, str], log_path: Path,
                 ready_s: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `recoup serve --host 127.0.0.1 --port P *args` and yield (base URL, process)."""
    import httpx

    port = free_port()
    metrics = log_path.parent / f"prometheus-{port}"  # its own, in the test's folder (not left in /tmp)
    metrics.mkdir()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "recoup_cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + ready_s
            while time.time() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.5)
            else:
                pytest.fail("recoup serve did not become ready: " + log_path.read_text()[-3000:])
            yield base, proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def service_env(**variables: str) -> dict[str, str]:
    """This process's environment without the service variables a test did not ask for."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RECOUP_NO_AUTH", "RECOUP_MODEL_VERSION", "RECOUP_MAX_ACCOUNTS", "RECOUP_MAX_BODY_BYTES")}
    return {**env, **variables}
