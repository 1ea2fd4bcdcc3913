"""The resident backend: pnr's own Prefect server (server, server_app), the runner pool that executes `pnr up`
for thin clients (runner: the client and the pool's start; runner_process: the pool's processes; channel: how
they are reached), where a run executes and what crosses to the runner (run, protocol), which backend a command
uses (choose), and the detached processes, pid files and logs the server and the runner share (daemon).
Nothing here imports Prefect at module level: the CLI asks before it knows whether it needs Prefect at all."""
