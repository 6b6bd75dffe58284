"""How the app takes in its routers: their routes joined to its own list.

FastAPI's `include_router` keeps, from 0.137 on, each included router as a node of a tree
that every request walks, matching its routes twice (once to choose the router, once
inside it) with scope bookkeeping around each; with the app's twenty-odd routers that
was a fifth to a quarter of a small request (`/livez`, after the OGC router, in the
process: 195 – 209 µs included, 146 – 187 µs joined; nearest 561 and 514 µs; see
docs/BENCHMARKS.md). A route made by an `APIRouter` already holds everything the app
serves it with (its full path, tags, responses, route class), and none of ours sets what
inclusion would add (a prefix, dependencies, an overrides provider), so joining its
routes serves the same paths, by the same rules, in the same order, on every FastAPI
version.
"""

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Serve `router`'s routes from the app's own list, after those already there."""
    app.router.routes.extend(router.routes)
