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
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from cloud_api.config import CloudSettings

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


def _cloud_settings(mqtt_client_id: str | None = None) -> CloudSettings:
    """The cloud's settings (a client id from the command line wins), or a clear error that
    names what is wrong instead of a traceback."""
    from pydantic import ValidationError

    from cloud_api.config import CloudSettings
    from cloud_api.store.db import normalised_url
    from storelink.settings import describe_validation_error

    try:
        settings = (
            CloudSettings()
            if mqtt_client_id is None
            else CloudSettings(mqtt_client_id=mqtt_client_id)
        )
        normalised_url(settings.database_url)
    except ValidationError as error:
        raise typer.BadParameter(describe_validation_error(error), param_hint="settings") from None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="database_url") from None
    return settings


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


@gateway_app.command("run")
def gateway_run(
    config: ConfigOption = None,
    scanner: Annotated[
        Literal["bleak", "sim", "replay"] | None,
        typer.Option(help="Advertisement source: the Bluetooth radio, the simulator, a recording."),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Play back this file of `gateway record` (implies --scanner replay)."),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Hear a simulated store: a shipped scenario or a YAML file (implies --scanner "
            "sim); presence settings are the scenario gateway's, the broker the config's."
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(help="With --scenario: which of its gateways (default: its first)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="With --scenario: its seed.")] = 0,
    speed: Annotated[
        float, typer.Option(min=0.001, help="With --scenario: simulated time per real second.")
    ] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Scan, decode, track presence and publish to MQTT until stopped (Ctrl-C or SIGTERM)."""
    _setup_logging(verbose)
    _use_config(config)
    from gateway.config import GatewaySettings
    from gateway.run import run_gateway
    from gateway.sources import scanner_source
    from storelink.clock import Clock, SystemClock

    settings = GatewaySettings()
    if scanner is not None:
        settings = settings.model_copy(update={"scanner": scanner})
    if replay is not None:
        settings = settings.model_copy(update={"scanner": "replay", "replay_file": replay})
    clock: Clock = SystemClock()
    world = None
    if scenario is not None:
        from firmware_sim.live import live_gateway

        if gateway is not None:
            settings = settings.model_copy(update={"gateway_id": gateway})
        try:
            live = live_gateway(settings, scenario, seed=seed, speed=speed)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scenario") from None
        settings, clock, world = live.settings, live.clock, live.world

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        backend, backend_kwargs = scanner_source(settings, clock, world)
        await run_gateway(
            settings, clock=clock, backend=backend, backend_kwargs=backend_kwargs, stop=stop
        )

    asyncio.run(main())


@gateway_app.command("decode")
def gateway_decode(
    raw: Annotated[
        list[str],
        typer.Argument(
            metavar="HEX",
            help="Advertising data (AD structures) as hex, as btmon or hcidump print it; "
            "spaces, colons and line breaks between bytes are fine.",
        ),
    ],
    app_uuid: Annotated[
        str | None,
        typer.Option(help="The shopper app's proximity UUID; default: the configured one."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Decode one advertisement: print its frames, device class and manufacturer as JSON."""
    from gateway.decode import InvalidHexError, decode_advertisement, parse_hex

    try:
        data = parse_hex(" ".join(raw))
    except InvalidHexError as exc:
        raise typer.BadParameter(str(exc), param_hint="HEX") from None
    if app_uuid is None:
        _use_config(config)
        from gateway.config import GatewaySettings

        app_uuid = GatewaySettings().app_uuid
    try:
        decoded = decode_advertisement(data, app_uuid=app_uuid)
    except ValueError:
        raise typer.BadParameter("not a UUID", param_hint="--app-uuid") from None
    typer.echo(json.dumps(decoded.to_json()))


@gateway_app.command("record")
def gateway_record(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="JSON lines to write.")],
    config: ConfigOption = None,
    scanner: Annotated[
        Literal["bleak", "sim"] | None,
        typer.Option(help="Record the Bluetooth radio (default) or the simulated demo store."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Record adverts (time, RSSI, raw bytes, pseudonymised address) for `run --replay`."""
    _setup_logging(verbose)
    _use_config(config)
    from gateway.config import GatewaySettings
    from gateway.record import record_adverts
    from gateway.sources import scanner_source
    from storelink.clock import SystemClock

    settings = GatewaySettings()
    settings = settings.model_copy(update={"scanner": scanner or "bleak"})
    clock = SystemClock()

    async def main() -> dict[str, object]:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        backend, backend_kwargs = scanner_source(settings, clock)
        return await record_adverts(
            settings,
            file,
            clock=clock,
            stop=stop,
            duration_s=duration,
            backend=backend,
            backend_kwargs=backend_kwargs,
        )

    typer.echo(json.dumps(asyncio.run(main()), sort_keys=True))


@gateway_app.command("doctor")
def gateway_doctor(
    config: ConfigOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds each check may take (broker, D-Bus, timedatectl).")
    ] = 5.0,
) -> None:
    """Check this machine for the gateway: config, outbox, broker, BlueZ and adapter, clock.

    One line per check (OK, WARN or FAIL, with what to do); exits 1 if anything failed.
    """
    _use_config(config)
    from gateway.doctor import report, run_checks

    raise typer.Exit(report(run_checks(timeout_s=timeout), echo=typer.echo))


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


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise typer.BadParameter("a positive number or 'max'", param_hint="--speed") from None
    if speed <= 0:
        raise typer.BadParameter("a positive number or 'max'", param_hint="--speed")
    return speed


@sim_app.command("run")
def sim_run(
    scenario: Annotated[
        str, typer.Option(help="A shipped scenario (see `storelink sim scenarios`) or a YAML file.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for truth.jsonl, presence.jsonl and more.")],
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    speed: Annotated[
        str, typer.Option(help="'max': as fast as possible; X: simulated time X times real time.")
    ] = "max",
    hours: Annotated[
        float | None, typer.Option(help="Only the shoppers of the first HOURS after opening.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Change a gateway or radio setting: enter_distance_m=4, radio.shadowing_db=6.",
        ),
    ] = None,
) -> None:
    """Simulate a store day through the real gateway pipeline; print a JSON summary."""
    from firmware_sim.runner import run_scenario
    from firmware_sim.scenario import load_scenario, with_overrides
    from firmware_sim.store import SimStore

    pace = _speed(speed)
    try:
        loaded = with_overrides(load_scenario(scenario), setting or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario/--set") from None
    summary = run_scenario(SimStore(loaded, seed, hours=hours), out, speed=pace)
    typer.echo(json.dumps(summary.as_dict(), sort_keys=True))


@sim_app.command("score")
def sim_score(
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="What `storelink sim run` wrote.")],
    min_visit_s: Annotated[
        float, typer.Option(help="True visits shorter than this are optional.")
    ] = 10.0,
) -> None:
    """Compare the presence events with the truth: one JSON object of scores."""
    from firmware_sim.score import score_dir

    typer.echo(json.dumps(score_dir(out_dir, min_visit_s=min_visit_s), sort_keys=True))


@sim_app.command("floorplan")
def sim_floorplan(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario or a YAML file.")],
    out: Annotated[Path, typer.Option(help="The PNG file to write.")],
) -> None:
    """Draw a scenario's floor plan as a PNG picture."""
    from firmware_sim.floorplan import render
    from firmware_sim.scenario import load_scenario

    render(load_scenario(scenario), out)
    typer.echo(str(out))


@sim_app.command("scenarios")
def sim_scenarios() -> None:
    """List the shipped scenarios: name, zones, gateways, shoppers a day."""
    from firmware_sim.scenario import load_scenario, scenario_names

    for name in scenario_names():
        loaded = load_scenario(name)
        shoppers = round(sum(loaded.shoppers.per_hour.values()))
        typer.echo(
            f"{name}: {len(loaded.floor.zones)} zones, {len(loaded.gateways)} gateway(s), "
            f"{shoppers} shoppers"
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


@cloud_app.command("stitch")
def cloud_stitch(
    config: ConfigOption = None,
    worker: Annotated[
        str | None,
        typer.Option(
            help="The ingest worker whose events to stitch: its MQTT client id "
            "(default: STORELINK_MQTT_CLIENT_ID, as the worker reads it)."
        ),
    ] = None,
) -> None:
    """Stitch one ingest worker's stored events into visits and offers, until stopped.

    For workers with STORELINK_INGEST_STITCHER=external, which store and acknowledge the
    events and start no stitcher of their own: run one of these per worker, with the same
    database, wherever there are CPU cores for it. SIGTERM or Ctrl-C: it stitches what is
    stored, then exits.
    """
    _use_config(config)
    from cloud_api.ingest.stitcher_process import serve
    from cloud_api.store.migrate import upgrade_database

    settings = _cloud_settings(worker)
    upgrade_database(settings.database_url)
    serve(settings, parent_pid=None)


@cloud_app.command("mqtt-auth")
def cloud_mqtt_auth(
    out: Annotated[Path, typer.Option(help="Folder for the `passwd` and `acl` files.")],
    config: ConfigOption = None,
) -> None:
    """Write Mosquitto's password file and ACL for the provisioned gateways and the cloud.

    The cloud's own user and password are those of its mqtt_url (mqtt://user:password@host).
    Point Mosquitto's password_file and acl_file at the two files and reload it (SIGHUP).
    """
    _use_config(config)
    from cloud_api.fleet.mqtt_auth import gateway_logins, write_mqtt_auth
    from cloud_api.store.db import make_engine, make_sessionmaker
    from cloud_api.store.migrate import upgrade_database
    from storelink.mqtt import BrokerAddress

    settings = _cloud_settings()
    address = BrokerAddress.from_url(settings.mqtt_url)
    if not address.username or not address.password:
        raise typer.BadParameter(
            "the cloud's mqtt_url has no user and password: set STORELINK_MQTT_URL to "
            "mqtt://<user>:<password>@<host>:1883, the login the cloud will use",
            param_hint="STORELINK_MQTT_URL",
        )
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            gateways = gateway_logins(session)
    finally:
        engine.dispose()
    try:
        passwd, acl = write_mqtt_auth(out, address.username, address.password, gateways)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--out") from None
    typer.echo(
        f"wrote {passwd} and {acl}: the cloud user {address.username!r} and "
        f"{len(gateways)} gateway(s)"
    )


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
