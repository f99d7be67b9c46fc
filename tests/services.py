"""Real servers for the test suite, each started on a free loopback port and torn down after."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storelink.broker import free_port, wait_for_port


@dataclass
class Mosquitto:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: `make test` installs it (apt-get install mosquitto)"
        )
    return found


@contextmanager
def running_mosquitto(extra_config: str = "") -> Iterator[Mosquitto]:
    host, port = "127.0.0.1", free_port()
    with tempfile.TemporaryDirectory(prefix="storelink-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        log_path = Path(tmp) / "mosquitto.log"
        conf.write_text(
            f"listener {port} {host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {log_path}\n"
            "log_type error\nlog_type warning\n" + extra_config
        )
        process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)])
        try:
            wait_for_port(host, port)
            yield Mosquitto(host, port, process, log_path)
        finally:
            process.terminate()
            process.wait(timeout=10)
