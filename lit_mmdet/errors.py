"""User-facing errors: one line that names the file or key and says the fix."""

__all__ = ['ConfigError']


class ConfigError(ValueError):
    """A config (or a file it points at) is wrong in a way the user can fix."""
