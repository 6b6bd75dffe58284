"""The `wangge` command line: services, schema, dataset and the main job.

The commands live in `wangge.commands`, one module per group; this module puts them
together under one `app`, the entry point.
"""

import typer

from wangge.commands import (
    archive,
    bench,
    coverage,
    dataset,
    db,
    deadlines,
    devices,
    evaluate,
    lockers,
    open311,
    reports,
    run,
    services,
    simulation,
    users,
)

app = typer.Typer(
    help="wangge: event-driven GIS platform for urban grid governance.",
    pretty_exceptions_show_locals=False,
)
# `wangge --help` lists the commands in this order, then the groups.
for command in (
    run.consume,
    run.up,
    reports.compliance,
    reports.incidents,
    evaluate.evaluate,
    coverage.coverage,
    bench.bench,
    run.serve,
    simulation.simulate,
    simulation.verify,
):
    app.command()(command)
app.add_typer(services.app, name="services")
app.add_typer(db.app, name="db")
app.add_typer(dataset.app, name="dataset")
app.add_typer(users.app, name="users")
app.add_typer(devices.app, name="devices")
app.add_typer(open311.app, name="open311")
app.add_typer(deadlines.app, name="deadlines")
app.add_typer(lockers.app, name="lockers")
app.add_typer(archive.app, name="archive")
