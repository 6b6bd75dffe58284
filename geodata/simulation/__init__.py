"""A simulated city week of grid workers' phones, and what the platform should make of it.

Pure and seeded (numpy Generators): `plan` decides who walks when, `walks` and `phones`
turn walks into GPS fixes and delivery times, `incidents` adds reports and malformed
messages, `truth` applies the patrol rules to the plan, `week` puts it together and
`compare` checks the platform's results against the truth. Producing to Kafka is the
adapter's job (`event_consumers.simulator`).
"""

from geodata.simulation.compare import Comparison, Disagreement, PlatformWeek, compare
from geodata.simulation.plan import Profile, SimulationConfig, SimWorker, WalkKind, World
from geodata.simulation.truth import Truth, TruthEntry
from geodata.simulation.week import SimulatedWeek, simulate_week

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
