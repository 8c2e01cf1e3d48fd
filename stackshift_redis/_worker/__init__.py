"""The worker wing (private): a process that takes and executes runs. `worker` (the fetch
loop and finishing), `dispatch` (the take path), `attempts` (runs one attempt and builds
its outcome), `upkeep` (background duties), `registration` (what a worker publishes),
`startup_hooks` (on_startup / on_shutdown and resources), `outage` (Redis unreachable)
and `watchdog` (event-loop lag)."""
