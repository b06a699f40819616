"""Who is calling the API: the name of the token it presented (its owner) and whether that
token is an admin's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token's name (None: no token, where reads are open) and whether it is
    an admin's."""

    name: str | None
    admin: bool = False

    def may_see(self, owner: str | None, *, reading: bool, open_reads: bool) -> bool:
        if self.admin or (reading and open_reads):
            return True
        return self.name is not None and owner == self.name

    @property
    def owner_filter(self) -> str | None:
        """The owner whose videos a list shows (None: everyone's)."""
        return None if self.admin else self.name


ANONYMOUS = Caller(None)
