"""Real servers for the test suite, each started on a free loopback port and torn down after."""

from __future__ import annotations

import os
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
def running_mosquitto(
    extra_config: str = "", *, port: int | None = None, persistence_dir: Path | None = None
) -> Iterator[Mosquitto]:
    """Mosquitto on ``port`` (default: a free one).

    With ``persistence_dir``, sessions, subscriptions and queued messages are saved there when
    the broker stops and restored when another broker starts on the same folder: a restart.
    """
    host = "127.0.0.1"
    port = port if port is not None else free_port()
    persistence = (
        f"persistence true\npersistence_location {persistence_dir}/\n"
        if persistence_dir is not None
        else "persistence false\n"
    )
    # Run as root, mosquitto drops to its own user, which cannot write to root's folders.
    if os.geteuid() == 0:
        persistence += "user root\n"
    with tempfile.TemporaryDirectory(prefix="storelink-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        log_path = Path(tmp) / "mosquitto.log"
        conf.write_text(
            f"listener {port} {host}\n"
            "allow_anonymous true\n" + persistence + f"log_dest file {log_path}\n"
            "log_type error\nlog_type warning\n" + extra_config
        )
        process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)])
        try:
            wait_for_port(host, port)
            yield Mosquitto(host, port, process, log_path)
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class Postgres:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"


def _postgres_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    found = shutil.which(name) or (str(candidates[0]) if candidates else None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: `make test` installs it (apt-get install postgresql)"
        )
    return found


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so a root test run drops to the postgres user."""
    import os

    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster: initdb into a temporary folder, pg_ctl on a free port."""
    import os

    host, port = "127.0.0.1", free_port()
    tmp = tempfile.mkdtemp(prefix="storelink-pg-")
    data = Path(tmp) / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    try:
        subprocess.run(
            _as_postgres_user(
                [
                    _postgres_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-h {host} -p {port} -k {tmp} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            _as_postgres_user(
                [
                    _postgres_bin("pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    f"{tmp}/pg.log",
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        try:
            wait_for_port(host, port)
            yield Postgres(host, port)
        finally:
            subprocess.run(
                _as_postgres_user([_postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
