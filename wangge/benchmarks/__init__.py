"""Measurements of the hot paths against the real services, for `wangge bench` and reports.

Not in the wheel (pyproject.toml excludes it): a development tool that needs the dev
dependencies and a checkout, so `wangge bench` runs from an editable install.
"""
