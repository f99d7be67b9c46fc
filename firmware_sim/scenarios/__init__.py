"""The shipped store scenarios, one YAML file each (see docs/simulator.md)."""
