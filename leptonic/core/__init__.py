"""Pure policy: spec/status types, planner, transitions. No I/O, no clocks: ``now`` is a value."""
