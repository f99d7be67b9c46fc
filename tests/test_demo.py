"""`storelink demo`: the same chain through the embedded broker, as a new user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from storelink.broker import free_port


def test_demo_command_prints_a_summary_with_offers(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storelink",
            "demo",
            "--duration",
            "12",
            "--speed",
            "5",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["offers"] >= 1
    assert summary["notifications"] == summary["offers"]
    assert summary["notifications_received"] == summary["notifications"]
    assert summary["visits"] >= summary["offers"]
    assert summary["invalid_payloads"] == 0
    assert summary["api"] == f"http://127.0.0.1:{port}"
    assert (tmp_path / "storelink-demo.db").is_file()
    # The dashboard's login: the demo makes an admin token and says what it is.
    assert "log in with the admin token" in result.stderr


def test_cli_prints_byte_exact_ibeacon_and_app_token() -> None:
    from typer.testing import CliRunner

    from storelink.cli import app

    runner = CliRunner()
    frame = runner.invoke(app, ["sim", "ibeacon", "e2c56db5-dffb-48d2-b060-d0f5a71096e0", "1", "2"])
    assert frame.exit_code == 0, frame.output
    assert frame.output.strip() == "0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5"

    token = runner.invoke(app, ["sim", "app-token", bytes(range(32)).hex(), "--at", "1764000000"])
    assert token.exit_code == 0, token.output
    assert json.loads(token.output) == {
        "window": 1960000,
        "major": 4173,
        "minor": 58922,
        "ref": "104de62a",
    }
    bad = runner.invoke(app, ["sim", "app-token", "not-hex"])
    assert bad.exit_code == 2
