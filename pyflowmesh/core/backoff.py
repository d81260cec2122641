"""The shared back-off: after a failure, no tab calls the key again until it ends.

A failed call starts a back-off (``error_backoff``, doubled per consecutive failure,
at most ``max_error_backoff``) that every tab honours (with ``share_errors``): an
execute of the key raises the shared error at once instead of calling. A back-off
heard from the wire is clamped and cut where it is adopted, so no tab honours one
longer than ``max_error_backoff``, and a hostile script cannot make a tab hold more
than a bounded number of records or bytes.
"""

from __future__ import annotations

from ..errors import SharedFlowError, shared_error
from .config import MeshConfig
from .structs import dataclass  # @dataclass without its cost at import
from .wire import SyncFailure

__all__ = ["Backoff", "SharedBackoff", "digest", "MAX_ATTEMPT", "MAX_ERROR_TEXT", "MAX_ERROR_TYPE",
           "MAX_BACKOFF_BYTES"]

MAX_BACKOFF_BYTES = 1 << 20  # the text back-off records hold (keys and messages, for Sync); oldest go first
MAX_ATTEMPT = 1_000_000  # consecutive failures counted per key (the back-off is long at its maximum)
MAX_ERROR_TEXT = 2000  # characters of an error's message that cross the channel
MAX_ERROR_TYPE = 200


def digest(key: str) -> bytes:
    """A short stand-in for a key in tables that never need the key back (claims, failure counts):
    a key may be as long as a message, and a hostile script can send a thousand of them."""
    import hashlib  # here, not at import: Pyodide compiles hashlib from source (zipimport), 5-10 ms

    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Until when a key is not called, and the error every execute of it meanwhile gets."""

    until: float
    error_type: str
    message: str
    attempt: int
    origin: str

    @classmethod
    def heard(cls, *, until: float, error_type: str, message: str, attempt: int, origin: str) -> Backoff:
        """A back-off from the wire, cut to the bounds this tab holds (the one place they apply)."""
        return cls(until, error_type[:MAX_ERROR_TYPE], message[:MAX_ERROR_TEXT], min(attempt, MAX_ATTEMPT), origin)

    def size(self, key: str) -> int:
        return len(key) + len(self.message) + len(self.error_type)


class SharedBackoff:
    """The back-offs this tab honours, and each key's consecutive failures; both bounded."""

    def __init__(self, config: MeshConfig, max_records: int) -> None:
        self._config = config
        self._max_records = max_records
        self._records: dict[str, Backoff] = {}  # at most max_records, and MAX_BACKOFF_BYTES of text
        self._bytes = 0
        self._attempts: dict[bytes, int] = {}  # consecutive failures by key digest; at most max_records

    def __len__(self) -> int:
        return len(self._records)

    @property
    def attempts_held(self) -> int:
        """How many keys' failure counts are held (at most ``max_records``)."""
        return len(self._attempts)

    def active(self, key: str, now: float) -> Backoff | None:
        """The back-off of ``key`` that has not ended at ``now``, if any."""
        backoff = self._records.get(key)
        return backoff if backoff is not None and backoff.until > now else None

    def holds(self, key: str) -> bool:
        """Whether a record of ``key`` is held, ended or not."""
        return key in self._records

    @staticmethod
    def error(key: str, backoff: Backoff, now: float) -> SharedFlowError:
        """What an execute of ``key`` raises while ``backoff`` lasts."""
        return shared_error(key, backoff.error_type, backoff.message, backoff.origin, backoff.until - now)

    def next_attempt(self, key: str) -> int:
        """The count of the failure about to be recorded for ``key``."""
        return min(self._attempts.get(digest(key), 0) + 1, MAX_ATTEMPT)

    def delay(self, attempt: int) -> float:
        """``error_backoff`` doubled per consecutive failure, at most ``max_error_backoff``."""
        doublings = min(attempt - 1, 64)  # 2**64 times any back-off is past the maximum: no overflow
        return min(self._config.error_backoff * 2.0**doublings, self._config.max_error_backoff)

    def set(self, key: str, backoff: Backoff) -> None:
        """Honour ``backoff`` for ``key`` (replacing any), within the bounds."""
        self.drop(key)
        # Forget what ended a while ago: back-offs expired for max_error_backoff, with their
        # keys' failure counts (a key failing after such a quiet spell starts afresh).
        quiet_since = backoff.until - 2 * self._config.max_error_backoff
        for old in [k for k, b in self._records.items() if b.until <= quiet_since]:
            self._attempts.pop(digest(old), None)
            self.drop(old)
        self._records[key] = backoff
        self._bytes += backoff.size(key)
        key_digest = digest(key)
        self._attempts.pop(key_digest, None)
        self._attempts[key_digest] = max(backoff.attempt, 0)
        while len(self._records) > self._max_records or self._bytes > MAX_BACKOFF_BYTES:
            self.drop(next(iter(self._records)))  # dicts keep insertion order: the oldest
        while len(self._attempts) > self._max_records:
            del self._attempts[next(iter(self._attempts))]

    def drop(self, key: str) -> None:
        """Stop honouring the back-off of ``key`` (its failure count stays)."""
        backoff = self._records.pop(key, None)
        if backoff is not None:
            self._bytes -= backoff.size(key)

    def succeeded(self, key: str) -> None:
        """``key`` has a result: no back-off, and its next failure counts from 1."""
        self.drop(key)
        self._attempts.pop(digest(key), None)

    def expire(self, now: float) -> None:
        """Forget ended back-offs once the table is half full."""
        if len(self._records) > self._max_records // 2:
            for key in [k for k, b in self._records.items() if b.until <= now]:
                self.drop(key)

    def snapshot(self, now: float, origin: str | None = None) -> list[SyncFailure]:
        """The back-offs not ended at ``now`` (of ``origin`` only, if given), as a joiner is told them."""
        return [
            SyncFailure(key=key, error_type=b.error_type, message=b.message, retry_in=b.until - now,
                        attempt=b.attempt, origin=b.origin)
            for key, b in self._records.items()
            if b.until > now and (origin is None or b.origin == origin)
        ]
