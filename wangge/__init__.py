"""wangge: event-driven GIS platform for urban grid governance."""
