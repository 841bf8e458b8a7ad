"""User-facing errors: printed as one line, without a traceback (``BNN_LAB_DEBUG=1`` shows it)."""


class UserError(Exception):
    """A mistake the user can fix (bad option, missing data...). The message says how."""


class ConfigError(UserError, ValueError):
    """A bad configuration value (unknown name, key or type); a ValueError as well."""


class Preempted(SystemExit):
    """Training stopped on SIGTERM after saving its checkpoint: one line on stderr and exit
    status 143 (128 + SIGTERM, what a shell reports for a job ended by SIGTERM), not status 0,
    which a scheduler would take for a finished job."""

    exit_code = 143

    def __init__(self, message: str) -> None:
        super().__init__(self.exit_code)
        self.message = message


class NoPackedForm(Exception):
    """A part of a binary layer (input binarizer, scale) has no exact bit-packed equivalent;
    the message says why, and ``pack_model`` keeps the layer in float with that reason."""
