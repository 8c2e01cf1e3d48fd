"""The attempt wing (private): one attempt of a run inside a worker, as its handler sees
it. `execution` (the attempt's lease, steps and fenced writes), `context` (RunContext),
`steps` (ctx.step), `waits` (durable sleep, events, invoke) and `parking` (when the
attempt's waits park the run)."""
