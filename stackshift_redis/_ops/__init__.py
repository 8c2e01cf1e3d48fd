"""The operators wing (private): the `stackshift` command. `cli` (click commands),
`admin` (commands that act: dashboard, schedules), `target` (which Redis and namespace)
and `render` (rich tables and JSON)."""
