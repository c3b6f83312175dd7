"""The one base class of every error meant for a user.

A `UserError`'s message says what was wrong and how to fix it (an unknown layer with the
closest names, a unit with the valid range, missing weights with the command that installs
them). Front ends show that message alone: the CLI as one line with exit code 2, the dashboard
as an error box. Any other exception is a bug, and front ends log it with its traceback.
It derives from ValueError so that code written against the earlier ValueErrors keeps working.
"""


class UserError(ValueError):
    pass
