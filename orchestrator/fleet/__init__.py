"""Sessions in Ray worker processes: registry, workers, the API-side router."""
