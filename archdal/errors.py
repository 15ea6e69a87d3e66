"""The errors a user can cause; each message names the value and what is allowed."""


class ArchdalError(Exception):
    """Base of every error the command line reports as one line; its exit code is
    `exit_code`: 2 for bad input found before any work starts."""

    exit_code = 2


class ConfigError(ArchdalError, ValueError):
    """A user-supplied value that cannot work."""


class DataError(ArchdalError, RuntimeError):
    """Missing or corrupt files (datasets, checkpoints); names the path and the remedy."""


class WriteError(ArchdalError, OSError):
    """A result file could not be written (a full disk, say) after work started; what was
    saved before stays, and rerunning resumes there. Exit code 1."""

    exit_code = 1
