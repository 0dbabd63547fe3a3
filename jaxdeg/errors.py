"""User-facing errors: raised for bad input, printed as one line by the entry points."""


class UserError(Exception):
  """Bad input from the user (config value, file, shape). The message names the thing and why."""


class ConfigError(UserError):
  """A config field has a value jaxdeg cannot use."""


class DataError(UserError):
  """A data source or record cannot be used."""
