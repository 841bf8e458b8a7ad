"""User-facing errors: printed as one line, without a traceback (``BNN_LAB_DEBUG=1`` shows it)."""


class UserError(Exception):
    """A mistake the user can fix (bad option, missing data...). The message says how."""


class ConfigError(UserError, ValueError):
    """A bad configuration value (unknown name, key or type); a ValueError as well."""
