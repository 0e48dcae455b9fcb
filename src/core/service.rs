//! What runs on a core's connections: the layer above the engine (the Pusher protocol) plugs in
//! through `Service`. The engine owns connections, timers, the HTTP and WebSocket phases and the
//! write path; the service decides what requests and messages mean.

use bytes::Bytes;

use super::conn::ConnKey;
use super::engine::Engine;
use crate::protocol::frame::Opcode;
use crate::protocol::http::Request;

/// What a request leads to.
pub(crate) enum Outcome<X> {
    /// Send this response; keep the connection if the flag says so.
    Respond(Bytes, bool),
    /// Complete a WebSocket handshake to the service, with this per-connection state.
    Upgrade(Upgrade<X>),
    /// The response needs other cores' answers; the connection waits until the service calls
    /// `Engine::finish_deferred`.
    Deferred,
    /// Not now: the request was not handled; it is kept (with what follows it) and presented
    /// again once the service calls `Engine::release_held`.
    Hold,
}

/// A service WebSocket about to open.
pub(crate) struct Upgrade<X> {
    /// The connection's service state.
    pub(crate) state: X,
    /// Complete the handshake only to refuse the connection (an error the client understands
    /// better than an HTTP status); the connection does not count against the limit.
    pub(crate) refusal: Option<Refusal>,
}

/// Why a service connection is refused or closed, as the service will tell its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The close code.
    pub(crate) code: u16,
    /// What the client should do.
    pub(crate) message: String,
}

/// The last words to a WebSocket the engine closes.
#[derive(Debug, Clone)]
pub(crate) struct Goodbye {
    /// A frame sent before the close frame (e.g. a protocol-level error message).
    pub(crate) notice: Option<Bytes>,
    /// The close code.
    pub(crate) code: u16,
    /// The close reason.
    pub(crate) reason: &'static str,
}

/// What a service wants done with its WebSockets when the engine acts on its own.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The frame sent to an idle connection as a heartbeat.
    pub(crate) ping: Bytes,
    /// A heartbeat went unanswered.
    pub(crate) pong_timeout: Goodbye,
    /// The server is draining.
    pub(crate) draining: Goodbye,
    /// More than `max_outbound_bytes` are queued: disconnect with this (None: stop reading
    /// from the connection until its queue drains).
    pub(crate) slow_consumer: Option<Goodbye>,
    /// A core is full and an upgrade to the service arrives: complete the handshake only to
    /// send this refusal (None: answer 503).
    pub(crate) full: Option<Refusal>,
}

/// The layer above the engine.
pub(crate) trait Service: Sized {
    /// Per-connection state kept in the connection's slab entry (keep it small: it is paid for
    /// by every connection, idle or not).
    type Conn: Default;
    /// A message between cores.
    type Peer;

    /// How the engine treats this service's WebSockets on its own.
    fn policy(&self) -> Policy;

    /// A complete HTTP request on `key` that the engine does not serve itself (it serves `/`,
    /// `/ready` and, when enabled, `/echo`). `metrics_listener`: the connection came in on the
    /// metrics port.
    fn request(
        &mut self,
        e: &mut Engine<Self>,
        key: ConnKey,
        req: &Request<'_>,
        body: &[u8],
        metrics_listener: bool,
    ) -> Outcome<Self::Conn>;

    /// A WebSocket upgraded by `request` is open (the 101 is queued). With `refusal`, send it
    /// and close.
    fn opened(&mut self, e: &mut Engine<Self>, key: ConnKey, refusal: Option<Refusal>);

    /// A complete message on one of the service's WebSockets.
    fn message(&mut self, e: &mut Engine<Self>, key: ConnKey, opcode: Opcode, payload: &[u8]);

    /// A service WebSocket is going away; its entry still exists.
    fn closed(&mut self, e: &mut Engine<Self>, key: ConnKey);

    /// A message from another core.
    fn peer(&mut self, e: &mut Engine<Self>, msg: Self::Peer);

    /// Once per second of the core's clock, after the connections' timers.
    fn tick(&mut self, e: &mut Engine<Self>);
}
