"""The engine-neutral round layer, below both engines (`spikefed.sim`, `spikefed.flower`).

One module a job: `sampling` (who takes part, who straggles), `validation` + `update_norm`
(is an upload acceptable; quorum), `divergence` (exploding training losses), `pipeline` (the
upload pipeline between `client_update` and `aggregate`, where decoders, filtering stages and
the configured aggregator plug in), `evaluate` + `evaluation` + `on_chip` (the evaluation part
of a round record), `record` (the round's metrics record), `summary` (summary.json) and
`files` (atomic writes), `asynchronous` (staleness weights, FedAsync/FedBuff
server steps and records of asynchronous runs). Neither engine imports the other; both import this.
"""
