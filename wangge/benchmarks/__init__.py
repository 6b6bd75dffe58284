"""Measurements of the hot paths against the real services, for `make bench` and reports."""
