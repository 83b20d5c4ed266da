"""The one exception type that means "the user must fix something".

The CLI prints a :class:`UserError` as a one-paragraph message and exits with status 2;
every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config key, a file, a value. The message says how to fix it.

    >>> str(UserError("data.path: file 'x.h5' does not exist; run `nopx datagen` first"))
    "data.path: file 'x.h5' does not exist; run `nopx datagen` first"
    """
