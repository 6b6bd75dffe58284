"""The `wangge` command's subcommands, one module per group, put together in `wangge.cli`.

Each module imports its work inside the command, so `wangge --help` and the children
`wangge up` starts do not pay for what they do not run.
"""
