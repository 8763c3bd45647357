"""wrk on loopback: a bounded run of POSTs of one file, parsed into throughput and latency."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

SCRIPT = Path(__file__).with_name("post_file.lua")


def wrk(url: str, file: Path, connections: int, seconds: float,
        stop_after: int | None = None, body: str = "multipart") -> dict:
    """One wrk thread (the machine's cores are for the server), `connections` connections kept
    alive; `body`: "multipart" (a new boundary per request) or "raw" (the file is the body)."""
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
            "-s", str(SCRIPT), url, "--", str(file), body] + ([str(stop_after)] if stop_after else [])
    for attempt in (1, 2):   # wrk rarely exits 1 mid-run on a busy machine; retry once
        returncode, stdout, stderr = _run(argv, seconds + 60)
        if returncode == 0 and "WRK_JSON " in stdout:
            break
        print(f"  wrk failed (exit {returncode}): {stderr.strip()[-300:]}", flush=True)
    else:
        raise RuntimeError(f"wrk failed twice: {argv}")
    line = next(l for l in stdout.splitlines() if l.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6),
            "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "requests": raw["requests"], "errors": raw["errors"], "non_2xx": raw["non_2xx"]}


def _run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """wrk's exit status, stdout and stderr. Once the script has sent its last request (it says
    WRK_STOPPED), SIGINT ends wrk's sleep through the rest of its duration; wrk then reports as
    at the end of a full run."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as wrk:
        guard = threading.Timer(timeout, wrk.kill)
        guard.start()
        try:
            stdout = []
            for line in wrk.stdout:
                stdout.append(line)
                if line.startswith("WRK_STOPPED"):
                    wrk.send_signal(signal.SIGINT)
            stderr = wrk.stderr.read()
            wrk.wait()
        finally:
            guard.cancel()
    return wrk.returncode, "".join(stdout), stderr
