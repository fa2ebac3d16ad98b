"""The project's exception type: every user-facing failure is a BrainVQError with a one-line fix."""


class BrainVQError(Exception):
    """A user-facing error whose message names the culprit (file or setting) and the fix."""


class DataError(BrainVQError):
    """Bad or missing input data."""


class ConfigError(BrainVQError):
    """An invalid configuration value, key or file."""


class RunError(BrainVQError):
    """A run folder that is missing, unwritable or incompatible."""


class Interrupted(BrainVQError):
    """Training stopped by Ctrl-C after saving a checkpoint; rerunning resumes."""


class BudgetTooSmall(ConfigError):
    """A stage's minutes cap cannot fit the steps it needs; the message names the setting."""
