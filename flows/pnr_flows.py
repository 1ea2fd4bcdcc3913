"""Prefect entrypoints for prefect.yaml: `flows/pnr_flows.py:pnr_up` and `flows/pnr_flows.py:pnr_down`.

The flows live in `pnr.prefect.flows` so the CLI and deployments run the very same objects. They are exported
under their flows' names (`pnr-up` → `pnr_up`) because `prefect deploy --name pnr-up/example-chain` matches a
deployment by its entrypoint's function name.
"""

from pnr.prefect.flows import bring_up, tear_down

pnr_up = bring_up
pnr_down = tear_down

__all__ = ["bring_up", "pnr_down", "pnr_up", "tear_down"]
