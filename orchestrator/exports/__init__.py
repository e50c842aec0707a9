"""Export on demand, the orchestrator's side: torch-free.

``source``: what a ``policy_path`` names and the provenance metadata an export records;
``resolve``: check a hub repo or folder before anything is created; ``jobs``: the client of
the export worker's jobs folder.
"""
