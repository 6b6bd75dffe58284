"""The simulator: a city week of grid workers' phones, and what the platform should make of it.

A tool, not the domain core: it imports `geodata` and nothing imports it but the CLI.
Pure and seeded (numpy Generators): `plan` decides who walks when, `walks` and `phones`
turn walks into GPS fixes and delivery times, `incidents` adds reports and malformed
messages, `truth` applies the patrol rules to the plan, `week` puts it together and
`compare` checks the platform's results against the truth. At the edges: `db` reads the
city and the platform's results, `producer` paces the messages onto Kafka, `cli` and
`verify` are the `wangge simulate` and `wangge verify` commands.
"""

from wangge.simulation.compare import Comparison, Disagreement, PlatformWeek, compare
from wangge.simulation.plan import Profile, SimulationConfig, SimWorker, WalkKind, World
from wangge.simulation.truth import Truth, TruthEntry
from wangge.simulation.week import SimulatedWeek, simulate_week

__all__ = [
    "Comparison",
    "Disagreement",
    "PlatformWeek",
    "Profile",
    "SimWorker",
    "SimulatedWeek",
    "SimulationConfig",
    "Truth",
    "TruthEntry",
    "WalkKind",
    "World",
    "compare",
    "simulate_week",
]
