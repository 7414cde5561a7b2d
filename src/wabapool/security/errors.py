"""The one error of the credential checks: its message is safe to return to the caller."""

from __future__ import annotations


class AuthenticationError(Exception):
    """The credential was refused; the message never contains a key, a secret or a token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
