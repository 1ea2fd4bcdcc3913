"""Prefect entrypoints for prefect.yaml: `flows/pnr_flows.py:bring_up` and `flows/pnr_flows.py:tear_down`.

The flows live in `pnr.flows` so the CLI and deployments run the very same objects.
"""

from pnr.prefect.flows import bring_up, tear_down

__all__ = ["bring_up", "tear_down"]
