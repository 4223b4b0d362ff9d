"""The one exception type for bad user input.

A ``UserError`` is caught by the command line, printed as a single line ``error: ...`` and turned
into exit code 2 with no traceback. Raise it for anything the user can fix (a missing file, an
unknown key, a mismatched vocabulary); let genuine bugs raise ordinary exceptions.
"""


class UserError(Exception):
    """Bad input that the user can fix; the message names the file, key or value at fault."""

    exit_code = 2


class UserErrors(UserError):
    """Several problems found together (the whole-run check); ``str`` is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
