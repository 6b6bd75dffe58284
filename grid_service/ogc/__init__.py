"""OGC API - Features under /ogc; served with `grid_service.routing.add_routes(app, ogc.router)`."""

from grid_service.ogc.routes import router

__all__ = ["router"]
