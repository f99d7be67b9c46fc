"""Real servers for the test suite, each started on a free loopback port and torn down after."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    extra_config: str = "",
    *,
    port: int | None = None,
    persistence_dir: Path | None = None,
    anonymous: bool = True,
) -> Iterator[Mosquitto]:
    """Mosquitto on ``port`` (default: a free one); ``anonymous=False`` refuses clients without
    a login (give a password_file in ``extra_config``).

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
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            + persistence
            + f"log_dest file {log_path}\n"
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
    # pg_ctl's data folder, server options and log: set when a test may stop and start it.
    data_dir: Path | None = None
    options: str = ""
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut); ``start`` brings it back."""
        assert self.data_dir is not None
        subprocess.run(
            _as_postgres_user(
                [_postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        """Start on the same port and data: what was committed before is still there."""
        assert self.data_dir is not None and self.log_path is not None
        subprocess.run(
            _as_postgres_user(
                [
                    _postgres_bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-o",
                    self.options,
                    "-l",
                    str(self.log_path),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port(self.host, self.port)


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
        server = Postgres(host, port, data, options, Path(tmp) / "pg.log")
        server.start()
        try:
            yield server
        finally:
            subprocess.run(
                _as_postgres_user([_postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _influxd_binary() -> str:
    found = shutil.which("influxd") or (
        "/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "influxd is not installed: `make test` installs it (apt-get install influxdb)"
        )
    return found


@dataclass
class Influxd:
    """InfluxDB 1.x (HTTP API: /write, /query, /ping) that a test may stop and start again."""

    host: str
    port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start on the same port and folders: the data written before is still there."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_influxd_binary(), "-config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.host, self.port, timeout_s=30)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_influxd() -> Iterator[Influxd]:
    """A throwaway influxd: its own data, meta and WAL folders, HTTP on a free loopback port,
    no usage reporting, no self-monitoring database."""
    host = "127.0.0.1"
    port, rpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="storelink-influxd-") as tmp:
        root = Path(tmp)
        config = root / "influxdb.conf"
        config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{host}:{rpc_port}"\n'
            f'[meta]\n  dir = "{root / "meta"}"\n'
            f'[data]\n  dir = "{root / "data"}"\n  wal-dir = "{root / "wal"}"\n'
            "  query-log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            f'[http]\n  bind-address = "{host}:{port}"\n  log-enabled = false\n'
        )
        server = Influxd(host, port, config, root / "influxd.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()
