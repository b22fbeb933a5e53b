"""Settings: one pydantic-settings class read from ``CORRAL_*`` variables through ``get_settings()``."""

from corral.core.config.settings import Mode, Settings, get_settings

__all__ = ["Mode", "Settings", "get_settings"]
