"""Errors shared by every part of ripple."""


class UsageError(Exception):
    """Bad input from the user (a missing file, a malformed argument).

    The command line prints it as one line and exits with code 2; it never carries a
    traceback to the user.
    """
