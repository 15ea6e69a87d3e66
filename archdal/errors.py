"""The errors a user can cause; each message names the value and what is allowed."""


class ArchdalError(Exception):
    """Base of every error the command line reports as one line with exit code 2."""


class ConfigError(ArchdalError, ValueError):
    """A user-supplied value that cannot work."""


class DataError(ArchdalError, RuntimeError):
    """Missing or corrupt files (datasets, checkpoints); names the path and the remedy."""
