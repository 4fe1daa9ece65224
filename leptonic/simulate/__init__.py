"""Offline replays of public cluster traces through the platform's own policies.

``traces`` reads trace files (``FORMAT:FILE`` specs, a small registry of formats);
``schedule`` replays pod arrivals and departures through ``core.scheduler`` on a clock of
its own and measures energy, waits and fragmentation; ``plot`` draws the results.
"""
