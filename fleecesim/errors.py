"""Errors that the CLI turns into one line and exit status 2 (bad user input)."""


class UserError(Exception):
    """Bad input from the user: config, trace, CLI argument. One line, no traceback."""


class ConfigError(UserError):
    pass


class TraceError(UserError):
    pass
