"""One exception type for user-facing configuration and input errors.

Entry points catch ``ConfigError`` and print its message as a single ``error: ...`` line (exit code 2) instead of a
traceback: the message always names the config key to set and what it expects.
"""


class ConfigError(ValueError):
    """A configuration or input problem the user can fix; the message names the key and the expected value."""
