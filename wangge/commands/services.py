"""`wangge services`: start, stop and inspect PostGIS and the Kafka broker."""

import typer

from wangge import services
from wangge.commands.common import console, fail, print_reports
from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

app = typer.Typer(help="Start, stop and inspect PostGIS and the Kafka broker.")


def start_services(*, tune: bool = True) -> list[services.ServiceReport]:
    """Start or check PostGIS and the broker; exit with a clear message on failure.

    With `tune`, the local PostgreSQL gets the memory and WAL settings for this machine
    (restarted once if they change) and a configured one gets advice. The benchmarks
    pass False: they measure the server as it was set up, never restart it under others.
    """
    database = DatabaseSettings()
    try:
        reports = [services.ensure_postgis(database, log=console.print)]
        if tune:
            reports.append(services.tune_configured_postgres(database, log=console.print))
        reports.append(
            services.ensure_broker(KafkaSettings(), LocalServicesSettings(), log=console.print)
        )
        return reports
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
