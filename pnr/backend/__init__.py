"""The resident backend: pnr's own Prefect server (server, server_app), the runner pool that executes `pnr up`
for thin clients (runner), which of them a command uses (choose), and the detached processes, pid files, logs
and locks they share (daemon). Nothing here imports Prefect at module level: the CLI asks before it knows
whether it needs Prefect in-process at all."""
