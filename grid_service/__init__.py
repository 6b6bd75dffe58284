"""HTTP adapter: the FastAPI application."""
