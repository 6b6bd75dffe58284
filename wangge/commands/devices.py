"""`wangge devices`: the tracking apps on workers' phones (the work is in `wangge.devices_cli`)."""

from typing import Annotated

import typer
from rich.table import Table

from geodata.trackers import TrackerKind
from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings, PublicUrlSettings

app = typer.Typer(help="Tracking apps (Traccar Client, OsmAnd, OwnTracks) on workers' phones.")

_APPS = {
    TrackerKind.OSMAND: "Traccar Client: paste the URL as Server URL, type the identifier as"
    " Device identifier",
    TrackerKind.OWNTRACKS: "OwnTracks (mode HTTP, authentication off): paste the URL as URL,"
    " type the identifier as Device ID",
}


@app.command("add")
def devices_add(
    worker: Annotated[str, typer.Argument(help="the worker's id, e.g. W00042")],
    kind: Annotated[TrackerKind, typer.Option(help="the app's protocol")],
    by: Annotated[
        str | None,
        typer.Option(
            help="the admin's or the worker's supervisor's account registering it (recorded)"
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="the API's address as phones reach it (default: WANGGE_PUBLIC_URL)"),
    ] = None,
) -> None:
    """Register an app to a worker; print the URL to paste into it and the device
    identifier to type, as the last two lines. The URL carries a secret: shown once."""
    from geodata.errors import WanggeError
    from geodata.trackers import device_url, osmand_app_template
    from wangge.devices_cli import add_device

    try:
        device, secret = add_device(DatabaseSettings().url, worker, kind, by)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    address = device_url(url or PublicUrlSettings().base_url(), device.kind, secret)
    console.print(f"registered {device.identifier} ({kind.value}) to worker {worker}.")
    if kind is TrackerKind.OSMAND:
        console.print(
            "OsmAnd app: set its online tracking address to"
            f" {osmand_app_template(address, device.identifier)}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"{_APPS[kind]}; the URL is shown only once:")
    # Plain print: rich might wrap or style them, and people and scripts copy these lines.
    print(address)
    print(device.identifier)


@app.command("list")
def devices_list(
    worker: Annotated[str | None, typer.Option(help="only this worker's devices")] = None,
) -> None:
    """List the registered devices, revoked ones included."""
    from geodata.errors import WanggeError
    from wangge.devices_cli import list_devices

    try:
        devices = list_devices(DatabaseSettings().url, worker)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    table = Table("identifier", "kind", "worker", "registered by", "registered", "revoked")
    for device in devices:
        table.add_row(
            device.identifier,
            device.kind.value,
            device.worker_id,
            device.registered_by or "(console)",
            f"{device.created_at:%Y-%m-%d %H:%M}" if device.created_at else "",
            f"{device.revoked_at:%Y-%m-%d %H:%M}" if device.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def devices_revoke(
    identifier: Annotated[str, typer.Argument(help="the device's identifier, e.g. W00042-1")],
) -> None:
    """Revoke a device: a running API refuses its requests within 5 seconds."""
    from geodata.errors import WanggeError
    from wangge.devices_cli import revoke_device

    try:
        device = revoke_device(DatabaseSettings().url, identifier)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"revoked {device.identifier} of worker {device.worker_id}")
