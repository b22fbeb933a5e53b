"""Backup of a workspace: ``corral export WORKSPACE`` and ``corral import`` (see :mod:`.format`)."""

from corral.platform.backup.export import export_workspace
from corral.platform.backup.restore import ImportSummary, import_workspace

__all__ = ["ImportSummary", "export_workspace", "import_workspace"]
