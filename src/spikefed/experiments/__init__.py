"""Reproductions of the papers spikefed is built from (logic only; the CLI wires them)."""
