//! The RFC 6455 receive path as a state machine over byte slices: frame headers, unmasking,
//! fragmentation with interleaved control frames, incremental UTF-8, size limits, and
//! permessage-deflate messages (RFC 7692) on connections that negotiated it.
//!
//! A connection that is between messages carries no decoder state at all (`None`); a `Partial`
//! is allocated only while a header, a frame payload or a fragmented message is incomplete.
//! Frames that arrive whole are unmasked in place in the caller's read buffer and handed out
//! without a copy; a compressed message that arrives whole is inflated from there into the
//! per-core `Inflater`'s scratch.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::close::{Failure, parse_close_payload};
use super::deflate::{InflateError, Inflater, compressed_bound};
use super::frame::unmask;
use super::utf8;

/// Limits a connection's peer must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload of one frame, in bytes. A compressed frame may carry up to
    /// `compressed_bound(max_frame)` bytes.
    pub max_frame: usize,
    /// Largest payload of a whole (possibly fragmented) message, in bytes; for a compressed
    /// message, its inflated size (and `compressed_bound(max_message)` bytes on the wire).
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame: 64 * 1024, max_message: 64 * 1024 }
    }
}

/// What the peer said. Text payloads have been validated as UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (valid UTF-8).
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping with its payload.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// The peer's close frame, with its code if it sent one. Input after it is ignored.
    Close(Option<u16>),
}

/// How decoding of one chunk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// All input consumed; more may follow.
    Open,
    /// A close frame was received; the rest of the input was not looked at.
    Closed,
}

/// Decoder state carried across reads while a frame or message is incomplete.
#[derive(Debug, Default)]
pub struct Partial {
    /// Bytes of a frame header that has not arrived whole (a header is at most 14 bytes).
    head: [u8; 14],
    head_len: u8,
    frame: Option<FrameInProgress>,
    message: Option<Message>,
    /// Payload of a control frame that spans reads (≤ 125 bytes).
    control: Vec<u8>,
}

impl Partial {
    fn is_idle(&self) -> bool {
        self.head_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Heap bytes this state holds, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.control.capacity() + self.message.as_ref().map_or(0, |m| m.buf.capacity())
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    kind: Kind,
    fin: bool,
    mask: [u8; 4],
    remaining: u64,
    offset: usize,
}

#[derive(Debug)]
struct Message {
    text: bool,
    /// RSV1 was set on its first frame: `buf` holds DEFLATE data, inflated at the end.
    compressed: bool,
    buf: Vec<u8>,
    valid_up_to: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
    Continuation,
    Close,
    Ping,
    Pong,
}

impl Kind {
    fn is_control(self) -> bool {
        matches!(self, Kind::Close | Kind::Ping | Kind::Pong)
    }
}

/// Decodes `input` (freshly read bytes, unmasked in place) given the carried `state`, calling
/// `on` for every complete message and control frame in order. For a connection without
/// extensions: any RSV bit fails it.
pub fn decode(
    state: &mut Option<Box<Partial>>,
    input: &mut [u8],
    limits: &Limits,
    on: impl FnMut(Event<'_>),
) -> Result<Status, Failure> {
    decode_with(state, input, limits, None, on)
}

/// [`decode`] for a connection that negotiated permessage-deflate when `inflater` is given
/// (the per-core one): RSV1 on the first frame of a data message marks it compressed, and the
/// message is delivered inflated. Without an inflater this is exactly [`decode`].
pub fn decode_with(
    state: &mut Option<Box<Partial>>,
    input: &mut [u8],
    limits: &Limits,
    inflater: Option<&mut Inflater>,
    mut on: impl FnMut(Event<'_>),
) -> Result<Status, Failure> {
    let mut cx = Cx { limits, inflater };
    let mut pos = 0;
    let result = loop {
        if let Some(p) = state.as_deref_mut()
            && p.frame.is_some()
        {
            if pos == input.len() {
                break Ok(Status::Open);
            }
            match continue_frame(p, input, &mut pos, &mut cx, &mut on) {
                Ok(Status::Open) => continue,
                other => break other,
            }
        }
        if pos == input.len() {
            break Ok(Status::Open);
        }
        let (header, len) = match next_header(state, input, &mut pos) {
            Ok(Some(h)) => h,
            Ok(None) => break Ok(Status::Open),
            Err(f) => break Err(f),
        };
        match start_frame(state, header, len, input, &mut pos, &mut cx, &mut on) {
            Ok(Status::Open) => continue,
            other => break other,
        }
    };
    if state.as_deref().is_some_and(Partial::is_idle) {
        *state = None;
    }
    result
}

/// Parses the next frame header, completing one carried from an earlier read if there is one.
/// Returns `None` when the input ends inside the header (the bytes are kept in `state`).
fn next_header(
    state: &mut Option<Box<Partial>>,
    input: &[u8],
    pos: &mut usize,
) -> Result<Option<(FrameHeader, u64)>, Failure> {
    let carried = state.as_deref().map_or(0, |p| p.head_len as usize);
    if carried == 0 {
        let mut cursor = Cursor::new(&input[*pos..]);
        return match FrameHeader::parse(&mut cursor).map_err(|_| reserved_opcode())? {
            Some(h) => {
                *pos += cursor.position() as usize;
                Ok(Some(h))
            }
            None => {
                let p = state.get_or_insert_with(Box::default);
                let rest = &input[*pos..];
                p.head[..rest.len()].copy_from_slice(rest);
                p.head_len = rest.len() as u8;
                *pos = input.len();
                Ok(None)
            }
        };
    }
    let p = state.as_deref_mut().expect("carried header bytes live in state");
    let take = (p.head.len() - carried).min(input.len() - *pos);
    p.head[carried..carried + take].copy_from_slice(&input[*pos..*pos + take]);
    let mut cursor = Cursor::new(&p.head[..carried + take]);
    match FrameHeader::parse(&mut cursor).map_err(|_| reserved_opcode())? {
        Some(h) => {
            *pos += cursor.position() as usize - carried;
            p.head_len = 0;
            Ok(Some(h))
        }
        None => {
            p.head_len = (carried + take) as u8;
            *pos += take;
            Ok(None)
        }
    }
}

/// What a decode call works with besides the bytes: the limits, and the per-core inflater
/// when the connection negotiated permessage-deflate.
struct Cx<'l, 'i> {
    limits: &'l Limits,
    inflater: Option<&'i mut Inflater>,
}

impl Cx<'_, '_> {
    /// Inflates a whole compressed message and delivers it, validated.
    fn deliver_inflated(
        &mut self,
        text: bool,
        compressed: &[u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<Status, Failure> {
        let inflater = self.inflater.as_deref_mut().expect("compressed messages need the extension");
        let payload = inflater.inflate(compressed, self.limits.max_message).map_err(|e| match e {
            InflateError::TooBig => Failure::TooBig,
            InflateError::Corrupt => Failure::BadCompression,
        })?;
        if text {
            utf8::validate_complete(payload).map_err(|_| Failure::InvalidUtf8)?;
            on(Event::Text(payload));
        } else {
            on(Event::Binary(payload));
        }
        Ok(Status::Open)
    }
}

fn reserved_opcode() -> Failure {
    Failure::Protocol("reserved opcode")
}

fn kind_of(opcode: OpCode) -> Kind {
    match opcode {
        OpCode::Data(Data::Text) => Kind::Text,
        OpCode::Data(Data::Binary) => Kind::Binary,
        OpCode::Data(Data::Continue) => Kind::Continuation,
        OpCode::Control(Control::Close) => Kind::Close,
        OpCode::Control(Control::Ping) => Kind::Ping,
        OpCode::Control(Control::Pong) => Kind::Pong,
        // FrameHeader::parse rejects reserved opcodes before we get here.
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => Kind::Close,
    }
}

/// Validates a header against RFC 6455 and the limits, then consumes its payload: in place when
/// the whole payload is in `input`, otherwise by starting a `FrameInProgress`.
fn start_frame(
    state: &mut Option<Box<Partial>>,
    header: FrameHeader,
    len: u64,
    input: &mut [u8],
    pos: &mut usize,
    cx: &mut Cx<'_, '_>,
    on: &mut impl FnMut(Event<'_>),
) -> Result<Status, Failure> {
    let deflate = cx.inflater.is_some();
    if header.rsv2 || header.rsv3 || (header.rsv1 && !deflate) {
        return Err(Failure::Protocol("reserved bits set without an extension"));
    }
    let Some(mask) = header.mask else {
        return Err(Failure::Protocol("client frame is not masked"));
    };
    if len >> 63 != 0 {
        return Err(Failure::Protocol("payload length has its top bit set"));
    }
    let kind = kind_of(header.opcode);
    let fin = header.is_final;
    let message = state.as_deref().and_then(|p| p.message.as_ref());
    let in_message = message.is_some();
    // RFC 7692 §6.1: RSV1 marks the first frame of a compressed data message, nothing else.
    if header.rsv1 && kind.is_control() {
        return Err(Failure::Protocol("RSV1 set on a control frame"));
    }
    if header.rsv1 && kind == Kind::Continuation {
        return Err(Failure::Protocol("RSV1 set on a continuation frame"));
    }
    let compressed =
        if kind == Kind::Continuation { message.is_some_and(|m| m.compressed) } else { header.rsv1 };
    if kind.is_control() {
        if !fin {
            return Err(Failure::Protocol("fragmented control frame"));
        }
        if len > 125 {
            return Err(Failure::Protocol("control frame payload over 125 bytes"));
        }
    } else {
        match (kind, in_message) {
            (Kind::Continuation, false) => {
                return Err(Failure::Protocol("continuation frame without a message"));
            }
            (Kind::Text | Kind::Binary, true) => {
                return Err(Failure::Protocol("new message before the previous one finished"));
            }
            _ => {}
        }
        let (max_frame, max_message) = if compressed {
            (compressed_bound(cx.limits.max_frame), compressed_bound(cx.limits.max_message))
        } else {
            (cx.limits.max_frame, cx.limits.max_message)
        };
        if len > max_frame as u64 {
            return Err(Failure::TooBig);
        }
        let so_far = message.map_or(0, |m| m.buf.len() as u64);
        if so_far.saturating_add(len) > max_message as u64 {
            return Err(Failure::TooBig);
        }
    }
    let len = len as usize;
    let available = input.len() - *pos;

    // Fast path: a whole frame that is a whole message (or a control frame) is delivered from
    // the read buffer itself.
    if len <= available && (kind.is_control() || (fin && !in_message)) {
        let payload = &mut input[*pos..*pos + len];
        unmask(payload, mask, 0);
        *pos += len;
        if compressed {
            return cx.deliver_inflated(kind == Kind::Text, payload, on);
        }
        return deliver(kind, payload, on);
    }

    let p = state.get_or_insert_with(Box::default);
    if !kind.is_control() && p.message.is_none() {
        let text = kind == Kind::Text;
        // Reserve for this frame only: later fragments grow the buffer as they arrive.
        p.message = Some(Message { text, compressed, buf: Vec::with_capacity(len), valid_up_to: 0 });
    }
    p.frame = Some(FrameInProgress { kind, fin, mask, remaining: len as u64, offset: 0 });
    if len == 0 {
        return finish_frame(p, cx, on);
    }
    Ok(Status::Open)
}

/// Consumes as much of the current frame's payload as `input` holds.
fn continue_frame(
    p: &mut Partial,
    input: &mut [u8],
    pos: &mut usize,
    cx: &mut Cx<'_, '_>,
    on: &mut impl FnMut(Event<'_>),
) -> Result<Status, Failure> {
    let frame = p.frame.as_mut().expect("called with a frame in progress");
    let take = (frame.remaining.min((input.len() - *pos) as u64)) as usize;
    let chunk = &mut input[*pos..*pos + take];
    frame.offset = unmask(chunk, frame.mask, frame.offset);
    frame.remaining -= take as u64;
    *pos += take;
    if frame.kind.is_control() {
        p.control.extend_from_slice(chunk);
    } else {
        let m = p.message.as_mut().expect("data frames belong to a message");
        m.buf.extend_from_slice(chunk);
        // Compressed text is validated once inflated.
        if m.text && !m.compressed && utf8::validate_more(&m.buf, &mut m.valid_up_to).is_err() {
            return Err(Failure::InvalidUtf8);
        }
    }
    if p.frame.is_some_and(|f| f.remaining == 0) {
        return finish_frame(p, cx, on);
    }
    Ok(Status::Open)
}

/// Ends the current frame; delivers the message or control frame it completes.
fn finish_frame(
    p: &mut Partial,
    cx: &mut Cx<'_, '_>,
    on: &mut impl FnMut(Event<'_>),
) -> Result<Status, Failure> {
    let frame = p.frame.take().expect("called with a frame in progress");
    if frame.kind.is_control() {
        let payload = std::mem::take(&mut p.control);
        return deliver(frame.kind, &payload, on);
    }
    if !frame.fin {
        return Ok(Status::Open);
    }
    let m = p.message.take().expect("data frames belong to a message");
    if m.compressed {
        return cx.deliver_inflated(m.text, &m.buf, on);
    }
    if m.text && m.valid_up_to != m.buf.len() {
        return Err(Failure::InvalidUtf8);
    }
    let kind = if m.text { Kind::Text } else { Kind::Binary };
    // Already validated incrementally: deliver without a second pass.
    on(if kind == Kind::Text { Event::Text(&m.buf) } else { Event::Binary(&m.buf) });
    Ok(Status::Open)
}

/// Delivers a complete frame payload that has not been validated yet.
fn deliver(kind: Kind, payload: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<Status, Failure> {
    match kind {
        Kind::Text => {
            utf8::validate_complete(payload).map_err(|_| Failure::InvalidUtf8)?;
            on(Event::Text(payload));
        }
        Kind::Binary => on(Event::Binary(payload)),
        Kind::Ping => on(Event::Ping(payload)),
        Kind::Pong => on(Event::Pong(payload)),
        Kind::Close => {
            let code = parse_close_payload(payload)?;
            on(Event::Close(code));
            return Ok(Status::Closed);
        }
        Kind::Continuation => unreachable!("a lone continuation never reaches deliver"),
    }
    Ok(Status::Open)
}

#[cfg(test)]
mod tests;

/// Test helpers shared with other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::client_frame;
}
