"""Start gunicorn servers on free loopback ports, find their workers, stop them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CONFIGS = {   # kind -> (gunicorn config, extra environment)
    "cnn-lens": ("gunicorn.conf.py", {}),
    "ceiling": ("bench/gunicorn_bench.conf.py", {"BENCH_WSGI_APP": "bench.ceiling_app:app"}),
    "naive": ("bench/gunicorn_bench.conf.py", {"BENCH_WSGI_APP": "bench.naive_app:app"}),
    "lean": ("bench/gunicorn_bench.conf.py", {"BENCH_WSGI_APP": "bench.lean_app:app"}),
}
LOG_DIR = Path(tempfile.mkdtemp(prefix="cnnlens-bench-"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    kind: str
    process: subprocess.Popen
    base: str
    ready_seconds: float   # process start to the first /readyz 200

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def settle(self, quiet_seconds: float = 0.3, timeout: float = 60) -> None:
        """Return once the workers have used no CPU for `quiet_seconds`: /readyz answers when the
        first worker is ready, while another may still be loading its model, and a load started
        then leaves that worker's connections with the first (and its warm-up in the measure)."""
        deadline = time.perf_counter() + timeout
        last, quiet_since = None, time.perf_counter()
        while time.perf_counter() - quiet_since < quiet_seconds:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.kind}'s workers still busy after {timeout} s")
            used = self.worker_usage()[0]
            if used != last:
                last, quiet_since = used, time.perf_counter()
            time.sleep(0.05)

    def worker_usage(self) -> tuple[float, int]:
        """CPU seconds (user + system) and context switches (voluntary and not, every thread)
        the workers have used so far: read before and after a load, per request."""
        tick = os.sysconf("SC_CLK_TCK")
        cpu, switches = 0.0, 0
        for pid in self.worker_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
            for status in Path(f"/proc/{pid}/task").glob("*/status"):
                for line in status.read_text().splitlines():
                    if "ctxt_switches:" in line:
                        switches += int(line.split()[1])
        return cpu, switches

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(kind: str, root: Path = ROOT, **settings) -> Server:
    """`settings`: CNNLENS_* overrides, e.g. start("cnn-lens", MAX_BATCH=256). `root`: the
    checkout to serve from (another commit's worktree, to compare before and after)."""
    config, extra = CONFIGS[kind]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLENS_")}
    env |= extra | {f"CNNLENS_{k.upper()}": str(v) for k, v in settings.items()}
    env |= {"CNNLENS_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(root)}
    log = open(LOG_DIR / f"{kind}-{port}.log", "wb")
    began = time.perf_counter()
    process = subprocess.Popen([GUNICORN, "-c", config], cwd=root, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = began + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    server = Server(kind, process, base, time.perf_counter() - began)
                    server.settle()
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() > deadline:
            process.kill()
            raise RuntimeError(f"{kind} did not become ready; log: {log.name}")
        time.sleep(0.01)
