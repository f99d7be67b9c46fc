"""The `storelink` command: one entry point for the gateway, the simulator, the cloud and the demo.

Heavy imports live inside the commands so that a Raspberry Pi with only `storelink[gateway]`
installed can run `storelink gateway` without the cloud's dependencies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(help="storelink: BLE presence to in-store engagement.", no_args_is_help=True)
gateway_app = typer.Typer(
    help="The in-store gateway (runs on a Raspberry Pi).", no_args_is_help=True
)
sim_app = typer.Typer(help="The simulated radio world (firmware_sim).", no_args_is_help=True)
cloud_app = typer.Typer(help="The cloud API.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")
app.add_typer(sim_app, name="sim")
app.add_typer(cloud_app, name="cloud")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (same as STORELINK_CONFIG)."),
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _use_config(config: Path | None) -> None:
    if config is not None:
        import os

        from storelink.settings import CONFIG_ENV

        os.environ[CONFIG_ENV] = str(config)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


@gateway_app.command("run")
def gateway_run(
    config: ConfigOption = None,
    scanner: Annotated[
        Literal["bleak", "sim"] | None,
        typer.Option(help="Advertisement source: the Bluetooth radio, or the simulator."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Scan, decode, track presence and publish to MQTT until stopped (Ctrl-C or SIGTERM)."""
    _setup_logging(verbose)
    _use_config(config)
    from gateway.config import GatewaySettings
    from gateway.run import run_gateway
    from gateway.sources import scanner_source
    from storelink.clock import SystemClock

    settings = GatewaySettings()
    if scanner is not None:
        settings = settings.model_copy(update={"scanner": scanner})
    clock = SystemClock()

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        backend, backend_kwargs = scanner_source(settings, clock)
        await run_gateway(
            settings, clock=clock, backend=backend, backend_kwargs=backend_kwargs, stop=stop
        )

    asyncio.run(main())


@sim_app.command("ibeacon")
def sim_ibeacon(
    proximity_uuid: Annotated[str, typer.Argument(metavar="UUID")],
    major: int,
    minor: int,
    measured_power: Annotated[int, typer.Option(help="RSSI at 1 m, dBm")] = -59,
) -> None:
    """Print the byte-exact advertising data of an iBeacon, as btmon shows it."""
    from firmware_sim.frames import ibeacon_frame

    typer.echo(ibeacon_frame(uuid.UUID(proximity_uuid), major, minor, measured_power).hex())


@sim_app.command("app-token")
def sim_app_token(
    app_key: Annotated[str, typer.Argument(help="the shopper's app key, hex")],
    at: Annotated[float | None, typer.Option(help="unix time; default now")] = None,
) -> None:
    """Print the rotating token the shopper app advertises now: window, major, minor, ref."""
    from storelink.tokens import app_token, token_major_minor, token_ref, token_window

    try:
        key = bytes.fromhex(app_key)
    except ValueError:
        raise typer.BadParameter("app key must be hex", param_hint="APP_KEY") from None
    window = token_window(time.time() if at is None else at)
    major, minor = token_major_minor(app_token(key, window))
    typer.echo(
        json.dumps(
            {"window": window, "major": major, "minor": minor, "ref": token_ref(major, minor)}
        )
    )


@cloud_app.command("serve")
def cloud_serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the cloud API (HTTP and the MQTT ingest consumer) with uvicorn."""
    _use_config(config)
    import uvicorn

    uvicorn.run("cloud_api.app:create_app", factory=True, host=host, port=port)


@app.command("demo")
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and print a JSON summary.")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Use this MQTT broker (mqtt://host:port, MQTT 5) instead of the embedded one."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the cloud API and dashboard.")] = 8000,
    speed: Annotated[float, typer.Option(help="Simulated time runs this many times faster.")] = 1.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the demo's SQLite database goes (default: a new temp dir)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The whole chain on this machine: broker, simulated store, gateway, cloud API."""
    _setup_logging(verbose)
    from storelink.demo import DemoOptions, run_demo

    options = DemoOptions(
        duration_s=duration, broker_url=broker, port=port, speed=speed, data_dir=data_dir
    )
    summary = asyncio.run(run_demo(options, install_signal_handlers=True))
    typer.echo(json.dumps(summary, sort_keys=True))
