"""OGC API - Features under /ogc; mount with `app.include_router(ogc.router)`."""

from grid_service.ogc.routes import router

__all__ = ["router"]
