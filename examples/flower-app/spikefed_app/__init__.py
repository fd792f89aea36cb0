"""A spikefed experiment packaged as a Flower app."""
