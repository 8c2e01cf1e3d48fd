"""The core wing (private): what every other wing stands on, with no I/O of its own but
the Lua door. `namespace` (one namespace on one client), `keys` (the only place key names
are built), `serializer`, `records` (RunInfo and friends, pure), `clock`, `cron`, `jobs`
(the registry), `flow` (flow-control rules), `luasrc` (Lua sources) and `scripts/` (the
only door to Lua)."""
