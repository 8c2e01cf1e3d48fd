"""The client wing (private): what a caller does with a namespace. `client` (the surface
StackShift inherits), `starting`, `handles` (RunHandle, result waiting), `reads` (get and
page runs), `control` (cancel, retry, replay, pause), `events`, `state`, `schedules`,
`sync` (the synchronous facade), `inspector` (read-only views for operators) and
`liveness` (the "no live worker" warning)."""
