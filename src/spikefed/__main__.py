"""`python -m spikefed` runs the CLI."""

from spikefed.cli import main

main()
