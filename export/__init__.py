"""LeRobot ACT checkpoint -> ONNX -> Triton model repository (``python -m export``).

Importing this package is cheap: torch and LeRobot load only when an export runs.
"""

from .api import ExportResult, export_checkpoint
from .checkpoint import DEMO_MARKER_FILE, CheckpointInfo, inspect_checkpoint
from .errors import ExportError

__all__ = [
    "DEMO_MARKER_FILE",
    "CheckpointInfo",
    "ExportError",
    "ExportResult",
    "export_checkpoint",
    "inspect_checkpoint",
]
