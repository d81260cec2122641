"""Shared live streams: one tab runs a stream's source, every listening tab gets its events.

A stream is a key and, in each tab that registered it, a source (an async generator
the runtime runs; the core sees only ``OpenSource``/``CloseSource`` and what the
runtime reports back). Who runs the source (the *owner*):

- leader-follower: the leader, while any tab listens. A leader that has just taken
  over waits ``answer_timeout`` for the listeners to tell it the last event they
  heard, then reopens the source from the last event ID the mesh saw.
- peer-to-peer: the first tab to listen claims it (``StreamOwner`` claim, a
  ``claim_window`` for competing claims, the higher tab wins), then says every
  heartbeat that it runs it; listeners take over when it goes silent or leaves.

Listening tabs say so with ``StreamListen`` every heartbeat (a lease). The owner
closes the source once no lease is alive and this tab does not listen either for
the stream's grace period. Each event is broadcast once (``StreamEvent``) with a
per-stream sequence number ``seq`` the owner continues from the highest it knows;
every tab delivers an event to its listeners only if its ``seq`` is above the last
it delivered: once, in order. A tab that starts listening gets the latest event it
knows at once, and the owner sends it the latest to be sure (a tab that is already
delivering waits for the broadcasts instead, which that answer may overtake). A failing source
starts one back-off for the whole mesh (``StreamStatus``: ``error_backoff`` doubled
per consecutive failure, at most ``max_error_backoff``); every owner, including the
next one, waits it out before reopening.

Everything this tab keeps is bounded: at most ``MAX_STREAMS`` streams (registered
ones never go; the others are the latest events heard, least recently heard go
first), ``MAX_LEASES`` leases per stream.
"""

from __future__ import annotations

import math
from dataclasses import field

from ..errors import shared_error
from .backoff import MAX_ATTEMPT, MAX_ERROR_TEXT, MAX_ERROR_TYPE
from .config import MeshConfig
from .effects import CloseSource, Deliver, OpenSource, StreamChanged, StreamState
from .election import Role
from .port import Port
from .structs import dataclass  # @dataclass without its cost at import
from .values import check_flow_key, check_json, dump_json, load_json
from .wire import (
    MAX_COUNT,
    MAX_MILLIS,
    Bye,
    EventId,
    Message,
    StreamEvent,
    StreamListen,
    StreamOwner,
    StreamStatus,
    check_event_id,
)

__all__ = ["Streams", "StreamInfo", "MAX_STREAMS", "MAX_REGISTERED", "MAX_LEASES", "DEFAULT_GRACE", "MAX_GRACE"]

MAX_STREAMS = 256  # streams this tab keeps something of (registered ones count too)
MAX_REGISTERED = 128  # streams one tab may register: the rest of MAX_STREAMS are events heard
MAX_LEASES = 4096  # listening tabs remembered per stream
DEFAULT_GRACE = 5000.0
MAX_GRACE = MAX_MILLIS


@dataclass
class StreamInfo:
    """What this tab knows of one stream (read by tests and the simulator's invariants)."""

    key: str
    # The latest event heard (or produced here): seq 0 is "none yet".
    seq: int = 0
    event_id: EventId | None = None
    data: str | None = None
    # This tab as a listener.
    listening: bool = False
    delivered: int = 0  # the seq last delivered to this tab's listeners
    status: StreamState = "closed"
    error: BaseException | None = None
    refresh_at: float = math.inf  # when this tab repeats its StreamListen
    # Every tab that registered the stream remembers the listeners' leases (a successor needs them).
    leases: dict[str, float] = field(default_factory=dict)
    # The shared back-off: no tab opens the source before retry_at.
    retry_at: float = -math.inf
    attempt: int = 0
    # This tab as the owner.
    run: int | None = None  # the source run open now
    run_seq: int = 0  # the seq of the last event of this run
    opens_at: float = math.inf  # when an owner without a run opens one (the takeover window)
    idle_since: float | None = None  # when the last listener went (grace counts from here)
    # Peer-to-peer ownership.
    owner: str | None = None  # who runs it, as this tab knows
    owner_until: float = -math.inf
    claim_until: float | None = None  # this tab claims it; it runs it from then unless beaten
    owns: bool = False  # peer-to-peer: this tab won the claim
    announce_at: float = math.inf  # when this peer-to-peer owner repeats its StreamOwner run
    catch_up: bool = False  # back from a freeze: the next event may skip some (it is the latest)
    hidden_leases: set[str] = field(default_factory=set)  # listeners whose page said it is hidden


def _check_grace(grace: object) -> None:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= MAX_GRACE:
        raise ValueError(f"a stream's grace must be a number of ms from 0 to {MAX_GRACE:g}, got {grace!r}")


class Streams:
    """The streams of one tab: listening, running sources, sharing events."""

    def __init__(self, port: Port, config: MeshConfig) -> None:
        self._port = port
        self._config = config
        self.registered: dict[str, float] = {}  # key -> grace (ms)
        # Families: every stream whose key starts with a prefix here can run in this tab (polling:
        # one stream per flow and arguments). Such a stream is registered ("adopted") when this tab
        # listens to it or hears a listener, and let go again once nobody listens and it is closed.
        self.families: dict[str, float] = {}  # prefix -> grace (ms)
        self._adopted: set[str] = set()
        self.streams: dict[str, StreamInfo] = {}
        self._runs: dict[int, str] = {}  # open source runs -> their stream
        self._next_run = 0
        self._hidden = False
        self._peer = config.strategy == "peer-to-peer"

    # --- what the node asks ------------------------------------------------------------

    def register(self, key: str, grace: float = DEFAULT_GRACE) -> None:
        """This tab can run ``key``'s source; it keeps it open ``grace`` ms after the last listener.

        Raises:
            TypeError, ValueError: a bad key or grace; ``ValueError`` too when this tab
                already has ``MAX_STREAMS`` registered streams.
        """
        check_flow_key(key)
        _check_grace(grace)
        if key not in self.registered and len(self.registered) >= MAX_REGISTERED:
            raise ValueError(f"this tab has {MAX_REGISTERED} streams registered already")
        self.registered[key] = float(grace)
        self._info(key)

    def register_family(self, prefix: str, grace: float = DEFAULT_GRACE) -> None:
        """This tab can run every stream whose key starts with ``prefix`` (its source is the
        runtime's to build from the key); each is kept open ``grace`` ms after its last listener.

        Raises:
            TypeError, ValueError: a bad prefix or grace, or ``MAX_REGISTERED`` families already.
        """
        check_flow_key(prefix)
        _check_grace(grace)
        if prefix not in self.families and len(self.families) >= MAX_REGISTERED:
            raise ValueError(f"this tab has {MAX_REGISTERED} stream families registered already")
        self.families[prefix] = float(grace)

    def adopt(self, key: str) -> bool:
        """Whether this tab can run ``key``: registered, or of a family (then registered now, if room)."""
        if key in self.registered:
            return True
        if not self.families or not isinstance(key, str):
            return False
        grace = next((g for prefix, g in self.families.items() if key.startswith(prefix)), None)
        if grace is None:
            return False
        if len(self.registered) >= MAX_REGISTERED:
            return False  # full: the stream runs in another tab that has room, or waits for room here
        self.registered[key] = grace
        self._adopted.add(key)
        self._info(key)
        return True

    def audience_hidden(self, key: str, now: float) -> bool:
        """Whether every tab listening to ``key`` (this one included) has said its page is hidden."""
        info = self.streams.get(key)
        if info is None:
            return False
        if info.listening and not self._hidden:
            return False
        alive = [node for node, until in info.leases.items() if until > now]
        if not alive and not info.listening:
            return False
        return all(node in info.hidden_leases for node in alive)

    def listen(self, key: str, now: float) -> None:
        """This tab listens to ``key``: deliver its latest event at once, then every new one.

        Raises:
            LookupError: ``key`` is not registered in this tab (nor of a registered family).
        """
        if not self.adopt(key):
            raise LookupError(f"stream {key!r} is not registered in this tab")
        info = self._info(key)
        if info.listening:
            return
        info.listening = True
        info.delivered = 0
        info.error = None
        info.status = "connecting"
        if info.retry_at > now and info.attempt:
            info.status = "reconnecting"
        self._changed(info)
        if info.data is not None and info.event_id is not None:
            self._deliver(info, info.seq, info.event_id, info.data, latest=True)
        info.catch_up = True  # until the first broadcast: this tab may know an older latest than the mesh
        self._say_listen(info, now)
        if self._peer:
            self._consider_claim(info, now)
        self._drive(info, now)

    def unlisten(self, key: str, now: float) -> None:
        """This tab stops listening to ``key`` (the source may stay open for the grace period)."""
        info = self.streams.get(key)
        if info is None or not info.listening:
            return
        info.listening = False
        info.refresh_at = math.inf
        info.status = "closed"
        self._changed(info)
        self._port.send(StreamListen(src=self._port.me(), stream=key, listening=False, seq=info.seq,
                                     event_id=info.event_id, hidden=self._hidden))
        self._drive(info, now)

    def state(self, key: str) -> StreamInfo | None:
        return self.streams.get(key)

    def open_sources(self) -> list[str]:
        """The streams whose source this tab runs now."""
        return [key for key in self._runs.values()]

    # --- what the runtime reports --------------------------------------------------------

    def source_event(self, run: int, event_id: object, data: object, now: float) -> None:
        """The source run ``run`` yielded ``(event_id, data)``. Bad ones fail the run (never raise)."""
        key = self._runs.get(run)
        if key is None:
            return  # a run closed meanwhile
        info = self.streams[key]
        if not check_event_id(event_id):
            self._fail(info, TypeError(f"stream {key!r}: an event ID must be a str of at most 256 characters "
                                       f"or an int from 0 to 2**53, got {type(event_id).__name__}"), now, False)
            return
        try:
            check_json(data, f"the data of an event of stream {key!r}")
            text = dump_json(data)
        except (TypeError, ValueError) as error:
            self._fail(info, error, now, False)
            return
        assert isinstance(event_id, (str, int))
        seq = info.run_seq + 1
        if seq > MAX_COUNT:
            self._fail(info, ValueError(f"stream {key!r} reached the last sequence number"), now, False)
            return
        size = self._port.send(StreamEvent(src=self._port.me(), stream=key, seq=seq, event_id=event_id, data=data))
        if size == 0:
            self._fail(info, TypeError(f"an event of stream {key!r} does not fit in one message "
                                       f"(max_message_bytes={self._config.max_message_bytes})"), now, False)
            return
        info.run_seq = seq
        if info.attempt:
            info.attempt = 0
            info.retry_at = -math.inf
        self._heard(info, seq, event_id, text, now)

    def source_failed(self, run: int, error: BaseException, now: float, back_off: bool = True) -> None:
        """The source run ``run`` raised ``error`` (``back_off=False``: a retry cannot fix it)."""
        key = self._runs.get(run)
        if key is not None:
            self._fail(self.streams[key], error, now, back_off)

    def source_ended(self, run: int, now: float) -> None:
        """The source run ``run`` ended (the server closed the stream): reopen after the back-off."""
        self.source_failed(run, ConnectionError("the stream's source ended"), now)

    # --- inputs the node passes on ----------------------------------------------------------

    def on_message(self, message: Message, now: float) -> None:
        if isinstance(message, StreamEvent):
            self._on_event(message, now)
        elif isinstance(message, StreamListen):
            self._on_listen(message, now)
        elif isinstance(message, StreamStatus):
            self._on_status(message, now)
        elif isinstance(message, StreamOwner):
            self._on_owner(message, now)
        elif isinstance(message, Bye):
            self.on_peer_gone(message.src, now)

    def tick(self, now: float) -> None:
        for info in list(self.streams.values()):
            if info.listening and now >= info.refresh_at:
                self._say_listen(info, now)
            if self._peer:
                if info.owns and now >= info.announce_at:
                    self._announce(info, "run", now)
                self._consider_claim(info, now)
            self._drive(info, now)

    def deadline(self) -> float:
        soonest = math.inf
        for info in self.streams.values():
            soonest = min(soonest, info.refresh_at, info.announce_at)
            if info.key not in self.registered:
                continue
            if info.claim_until is not None:
                soonest = min(soonest, info.claim_until)
            if self._peer and info.listening and not info.owns and info.owner is not None:
                soonest = min(soonest, info.owner_until)
            if self._owning(info):
                if info.run is None and self._wanted(info):
                    soonest = min(soonest, max(info.opens_at, info.retry_at))
                elif info.run is not None:
                    soonest = min(soonest, self._idle_deadline(info))
        return soonest

    def on_leader_change(self, leader: str | None, now: float) -> None:
        for info in self.streams.values():
            if info.key not in self.registered:
                continue
            if leader is not None and self._port.is_me(leader):
                info.opens_at = now + self._config.answer_timeout  # hear the listeners' last events first
            elif info.listening and leader is not None:
                self._say_listen(info, now)  # the new leader learns this tab listens, and what it heard
            self._drive(info, now)

    def on_peer_gone(self, node_id: str, now: float) -> None:
        for info in self.streams.values():
            info.leases.pop(node_id, None)
            if info.owner == node_id:
                info.owner = None
                info.owner_until = -math.inf
                if self._peer:
                    self._consider_claim(info, now)
            self._drive(info, now)

    def set_hidden(self, hidden: bool, now: float) -> None:
        if hidden != self._hidden:
            self._hidden = hidden
            for info in self.streams.values():
                if info.listening:
                    self._say_listen(info, now)  # owners learn to wait longer for this tab's next word

    def suspend(self, now: float) -> None:
        """The page is frozen: it runs no source meanwhile (a peer-to-peer owner has said Bye)."""
        for info in self.streams.values():
            if self._peer:
                info.owns = False
                info.claim_until = None
                info.announce_at = math.inf
            self._close(info, now)

    def resume(self, now: float) -> None:
        """The page is back (from a freeze or the back/forward cache): events may have been lost
        meanwhile, so the next one a listener gets is its latest, and the owner learns it listens."""
        for info in self.streams.values():
            if info.listening:
                info.catch_up = True
                self._say_listen(info, now)

    def leave(self, now: float) -> None:
        """The member leaves: every source it runs stops; nothing more is delivered."""
        for info in self.streams.values():
            self._close(info, now)
            info.refresh_at = math.inf
            info.announce_at = math.inf
            info.owns = False
            info.claim_until = None

    # --- messages -------------------------------------------------------------------------

    def _on_event(self, message: StreamEvent, now: float) -> None:
        info = self.streams.get(message.stream)
        if info is None:
            info = self._info(message.stream)
        if info.key in self.registered and self._peer and not self._port.is_me(message.src) and message.to is None:
            self._owner_heard(info, message.src, False, now)
        try:
            text = dump_json(message.data)
        except (TypeError, ValueError):  # decode checked it; a dict handed to handle() might not be
            return
        self._heard(info, message.seq, message.event_id, text, now, latest=message.to is not None)

    def _on_listen(self, message: StreamListen, now: float) -> None:
        if message.listening:
            self.adopt(message.stream)
        info = self.streams.get(message.stream)
        if info is None or info.key not in self.registered:
            return  # only a tab that can run the stream needs its listeners
        if message.hidden:
            if len(info.hidden_leases) >= MAX_LEASES:
                info.hidden_leases &= set(info.leases)
            info.hidden_leases.add(message.src)
        else:
            info.hidden_leases.discard(message.src)
        if message.listening:
            if message.src not in info.leases and len(info.leases) >= MAX_LEASES:
                info.leases = {k: t for k, t in info.leases.items() if t > now}
                if len(info.leases) >= MAX_LEASES:
                    del info.leases[min(info.leases, key=info.leases.__getitem__)]
            info.leases.pop(message.src, None)
            info.leases[message.src] = now + self._config.silence_limit(self._config.heartbeat, message.hidden)
            if message.seq > info.seq and message.event_id is not None:
                # A listener heard more than this tab (it was frozen, or joined after): the resume point.
                info.seq, info.event_id, info.data = message.seq, message.event_id, None
            if self._owning(info):
                self._answer_listener(info, message.src, message.seq, now)
        else:
            info.leases.pop(message.src, None)
        self._drive(info, now)

    def _on_status(self, message: StreamStatus, now: float) -> None:
        info = self.streams.get(message.stream)
        if info is None:
            return
        retry_in = min(message.retry_in, self._config.max_error_backoff)
        info.retry_at = max(info.retry_at, now + retry_in) if message.to is None else info.retry_at
        if message.to is None:
            info.attempt = min(max(info.attempt, message.attempt), MAX_ATTEMPT)
        if info.listening:
            info.status = "error" if message.status == "error" else "reconnecting"
            info.error = shared_error(info.key, message.error_type[:MAX_ERROR_TYPE], message.message[:MAX_ERROR_TEXT],
                                      message.src, retry_in)
            self._changed(info)

    def _on_owner(self, message: StreamOwner, now: float) -> None:
        if message.phase != "release":
            self.adopt(message.stream)
        info = self.streams.get(message.stream)
        if info is None or info.key not in self.registered or not self._peer:
            return
        if message.phase == "release":
            if info.owner == message.src:
                info.owner, info.owner_until = None, -math.inf
                self._consider_claim(info, now)
            return
        me = self._port.me()
        if message.phase == "claim":
            if info.owns:
                self._announce(info, "run", now)  # it runs here: the claimant follows
            elif info.claim_until is not None and message.src > me:
                info.claim_until = None  # a higher tab claims it: it wins
            return
        self._owner_heard(info, message.src, message.hidden, now)

    def _owner_heard(self, info: StreamInfo, owner: str, hidden: bool, now: float) -> None:
        """Peer-to-peer: ``owner`` runs the stream. Two owners: the higher tab keeps it."""
        if info.owns and owner < self._port.me():
            self._announce(info, "run", now)  # the other one yields when it hears this
            return
        if info.owns:
            info.owns = False
            info.announce_at = math.inf
            self._close(info, now)
        info.claim_until = None
        until = now + self._config.silence_limit(self._config.heartbeat, hidden)
        info.owner_until = max(info.owner_until, until) if info.owner == owner else until
        info.owner = owner

    # --- this tab as the owner -------------------------------------------------------------

    def _owning(self, info: StreamInfo) -> bool:
        if info.key not in self.registered:
            return False
        if self._peer:
            return info.owns
        return self._port.role() is Role.LEADER

    def _wanted(self, info: StreamInfo) -> bool:
        return info.listening or bool(info.leases)

    def _idle_deadline(self, info: StreamInfo) -> float:
        """When the owner next looks at the listeners: the first lease to end, or the end of grace."""
        if info.idle_since is not None:
            return info.idle_since + self.registered.get(info.key, DEFAULT_GRACE)
        return min(info.leases.values(), default=math.inf)

    def _drive(self, info: StreamInfo, now: float) -> None:
        """Open or close this tab's source of ``info`` as ownership, listeners and back-off say."""
        if info.leases:
            for node_id in [k for k, t in info.leases.items() if t <= now]:
                del info.leases[node_id]
        if not self._owning(info):
            self._close(info, now)
            info.idle_since = None
            self._let_go(info)
            return
        if self._wanted(info):
            info.idle_since = None
            if info.run is None and now >= info.opens_at and now >= info.retry_at:
                self._open(info, now)
            elif info.run is None and info.opens_at == math.inf:
                info.opens_at = now
                if now >= info.retry_at:
                    self._open(info, now)
            return
        if info.idle_since is None:
            info.idle_since = now
        if now >= info.idle_since + self.registered.get(info.key, DEFAULT_GRACE):
            self._close(info, now)
            info.idle_since = None
            info.opens_at = math.inf
            if self._peer and info.owns:
                info.owns = False
                info.announce_at = math.inf
                self._announce(info, "release", now)
            self._let_go(info)

    def _let_go(self, info: StreamInfo) -> None:
        """An adopted stream nobody listens to and this tab does not run goes back to its family
        (what it heard stays, as for any stream heard): the registered streams stay bounded."""
        if (info.key in self._adopted and not info.listening and not info.leases and info.run is None
                and not info.owns and info.claim_until is None):
            self._adopted.discard(info.key)
            self.registered.pop(info.key, None)
            info.hidden_leases.clear()

    def _open(self, info: StreamInfo, now: float) -> None:
        self._next_run += 1
        run = self._next_run
        info.run = run
        info.run_seq = info.seq
        self._runs[run] = info.key
        self._port.emit(OpenSource(info.key, run, info.event_id))

    def _close(self, info: StreamInfo, now: float) -> None:
        if info.run is not None:
            self._runs.pop(info.run, None)
            self._port.emit(CloseSource(info.key, info.run))
            info.run = None
        info.opens_at = math.inf

    def _fail(self, info: StreamInfo, error: BaseException, now: float, back_off: bool) -> None:
        """This tab's source of ``info`` failed: close it, start the mesh's back-off, tell everyone."""
        self._close(info, now)
        info.attempt = min(info.attempt + 1, MAX_ATTEMPT)
        if back_off:
            delay = min(self._config.error_backoff * 2.0 ** min(info.attempt - 1, 64), self._config.max_error_backoff)
        else:
            delay = self._config.max_error_backoff  # bad data: it will not be better soon
        info.retry_at = now + delay
        status: StreamState = "reconnecting" if back_off else "error"
        error_type = type(error).__name__[:MAX_ERROR_TYPE]
        text = str(error)[:MAX_ERROR_TEXT]
        self._port.send(StreamStatus(src=self._port.me(), stream=info.key, status=status, error_type=error_type,
                                     message=text, retry_in=delay, attempt=info.attempt))
        if info.listening:
            info.status = status
            info.error = error
            self._changed(info)
        self._drive(info, now)

    def _answer_listener(self, info: StreamInfo, listener: str, their_seq: int, now: float) -> None:
        """A tab listens: send it the latest event it lacks, and the back-off if one lasts."""
        if info.retry_at > now and info.attempt:
            self._port.send(StreamStatus(src=self._port.me(), stream=info.key, status="reconnecting",
                                         error_type="SharedFlowError", message="the stream's source is failing",
                                         retry_in=info.retry_at - now, attempt=info.attempt, to=[listener]))
        if their_seq < info.seq and info.data is not None and info.event_id is not None:
            self._port.send(StreamEvent(src=self._port.me(), stream=info.key, seq=info.seq, event_id=info.event_id,
                                        data=load_json(info.data), to=[listener]))

    # --- peer-to-peer claims -----------------------------------------------------------------

    def _consider_claim(self, info: StreamInfo, now: float) -> None:
        """Peer-to-peer: a listening tab claims a stream nobody runs; its claim window ends in a run."""
        if not self._peer or info.key not in self.registered or info.owns:
            return
        if info.claim_until is not None:
            if now >= info.claim_until:
                info.claim_until = None
                info.owns = True
                info.owner, info.owner_until = self._port.me(), math.inf
                info.opens_at = now
                self._announce(info, "run", now)
            return
        if not info.listening:
            return
        if info.owner is not None and info.owner_until > now and not self._port.is_me(info.owner):
            return
        info.owner = None
        info.claim_until = now + self._config.claim_window
        self._announce(info, "claim", now)

    def _announce(self, info: StreamInfo, phase: str, now: float) -> None:
        self._port.send(StreamOwner(src=self._port.me(), stream=info.key, phase=phase, hidden=self._hidden))
        info.announce_at = now + self._config.heartbeat if phase == "run" else math.inf

    # --- this tab as a listener -----------------------------------------------------------

    def _say_listen(self, info: StreamInfo, now: float) -> None:
        self._port.send(StreamListen(src=self._port.me(), stream=info.key, listening=True, seq=info.seq,
                                     event_id=info.event_id, hidden=self._hidden))
        info.refresh_at = now + self._config.heartbeat
        info.leases.pop(self._port.me(), None)  # this tab's own listening is info.listening

    def _heard(self, info: StreamInfo, seq: int, event_id: EventId, text: str, now: float,
               latest: bool = False) -> None:
        """An event of ``info`` (from the wire or this tab's source): keep the latest, deliver a new one.

        ``latest``: an owner's answer to a listener (``to``), which may skip events. It is
        delivered as a jump only to a tab that is starting or catching up. A tab that has been
        delivering the broadcasts waits for them instead: an answer relayed by another tab can
        overtake the broadcasts it relays (every pair of tabs has its own delay), and those arrive.
        """
        if seq > info.seq or info.data is None and seq == info.seq:
            info.seq, info.event_id, info.data = seq, event_id, text
            if info.key not in self.registered:
                self.streams[info.key] = self.streams.pop(info.key)  # most recently heard last
        if info.listening and seq > info.delivered:
            jump = seq != info.delivered + 1
            starting = info.catch_up or not info.delivered  # a jump is what it may get: the latest
            if jump and latest and not starting:
                return
            self._deliver(info, seq, event_id, text, latest=jump and starting)
            info.catch_up = False

    def _deliver(self, info: StreamInfo, seq: int, event_id: EventId, text: str, latest: bool) -> None:
        info.delivered = seq
        self._port.emit(Deliver(info.key, seq, event_id, text, latest))
        if info.status != "open" or info.error is not None:
            info.status = "open"
            info.error = None
            self._changed(info)

    def _changed(self, info: StreamInfo) -> None:
        self._port.emit(StreamChanged(info.key, info.status, info.error))

    def _info(self, key: str) -> StreamInfo:
        info = self.streams.get(key)
        if info is None:
            if len(self.streams) >= MAX_STREAMS:
                for old in self.streams:  # the least recently heard stream this tab does not run
                    if old not in self.registered:
                        del self.streams[old]
                        break
            info = self.streams[key] = StreamInfo(key)
        return info


