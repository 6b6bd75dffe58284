"""`wangge services`: start, stop and inspect PostGIS and the Kafka broker."""

import typer

from wangge import services
from wangge.commands.common import console, fail, print_reports
from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

app = typer.Typer(help="Start, stop and inspect PostGIS and the Kafka broker.")


def start_services() -> list[services.ServiceReport]:
    """Start or check PostGIS and the broker; exit with a clear message on failure."""
    try:
        return [
            services.ensure_postgis(DatabaseSettings(), log=console.print),
            services.ensure_broker(KafkaSettings(), LocalServicesSettings(), log=console.print),
        ]
    except services.ServiceError as exc:
        raise fail(str(exc)) from exc


@app.command("start")
def services_start() -> None:
    """Make sure PostGIS and a Kafka broker run, starting local ones where none is configured."""
    print_reports(start_services())


@app.command("status")
def services_status() -> None:
    """Show whether PostGIS and the broker answer."""
    reports = [
        services.postgis_status(DatabaseSettings()),
        services.broker_status(KafkaSettings(), LocalServicesSettings()),
    ]
    print_reports(reports)
    if any(r.state != "running" for r in reports):
        raise typer.Exit(code=1)


@app.command("stop")
def services_stop() -> None:
    """Stop the local broker wangge started (the system PostgreSQL is left running)."""
    report = services.stop_broker(LocalServicesSettings(), log=console.print)
    postgres = services.ServiceReport(
        "postgis",
        "left running",
        ["the PostgreSQL cluster is the system's; wangge does not stop it"],
    )
    print_reports([report, postgres])
