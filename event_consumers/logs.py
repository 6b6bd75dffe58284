"""How a consumer process writes its log lines.

Its own module, importing nothing: `wangge consume` sets up logging before it may import
`event_consumers.metrics`, whose counters must be made after the metrics' multiprocess
directory is chosen (`event_consumers.metrics_endpoint`).
"""

from typing import Final

#: The intake stage and its compliance stage's child write to one output; the process's
#: name (the stage's, `INTAKE_PROCESS` or `COMPLIANCE_PROCESS`) tells whose line it is.
LOG_FORMAT: Final = "%(asctime)s %(processName)s %(name)s %(message)s"
INTAKE_PROCESS: Final = "wangge-intake-stage"
COMPLIANCE_PROCESS: Final = "wangge-compliance-stage"
