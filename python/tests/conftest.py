"""A real `quiver serve` on a loopback port, over a fresh data directory, for the whole session.

The binary is `$QUIVER_BIN`, or the repository's debug build (`scripts/test` builds it).
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import quiver

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "tests" / "fixtures" / "e2e-registry.toml"
NOW = int(time.time())


def _binary() -> str:
    b = os.environ.get("QUIVER_BIN") or str(REPO / "target" / "debug" / "quiver")
    if not Path(b).exists():
        raise RuntimeError(f"no quiver binary at {b}: run `cargo build -p quiver-server` or set QUIVER_BIN")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, registry: Path = REGISTRY, extra: tuple = (), client=None):
        self.bin = _binary()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", self.address, "--metrics-listen", "",
             "--data-dir", str(tmp / "data"), "--registry", str(registry), "--fsync", "never", *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.tmp = tmp
        deadline = time.monotonic() + 60
        while True:
            try:
                (client or (lambda a: quiver.Client(a, timeout=5)))(self.address).stats()
                break
            except quiver.QuiverError as e:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"quiver serve did not come up: {e}; see {tmp / 'server.log'}")
                time.sleep(0.1)

    def write(self, view: str, rows: list) -> None:
        f = self.tmp / f"{view}-{time.monotonic_ns()}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        subprocess.run([self.bin, "write", "--view", view, str(f), "--server", f"http://{self.address}"],
                       check=True, capture_output=True)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("quiver"))
    s.write("user_stats", [
        {"user_id": u, "event_timestamp": NOW - 10, "clicks": 10 * u, "logins": u, "ctr": u / 4,
         "amount": u * 1.5, "verified": u % 2 == 0, "last_login": NOW - 100 * u,
         "country": f"c{u}", "recent": u}
        for u in range(1, 6)
    ])
    s.write("user_profile", [{"user_id": 3, "event_timestamp": NOW - 5, "country": "fr", "age": None}])
    s.write("user_merchant_stats", [
        {"user_id": 1, "merchant_id": "m1", "event_timestamp": NOW - 5, "txn_count": 7},
        {"user_id": 1, "merchant_id": "m2", "event_timestamp": NOW - 5, "txn_count": 8},
    ])
    yield s
    s.stop()


@pytest.fixture()
def client(server):
    return quiver.Client(server.address, timeout=10)
