//! TLS as a socket: `TlsSocket` is a `Socket` speaking TLS 1.2/1.3 (rustls's unbuffered server
//! API) over another `Socket`, so that everything above it — the HTTP and WebSocket phases, the
//! write path, echo, the Pusher service, the HTTP API — runs over TLS unchanged.
//!
//! Memory. rustls's unbuffered connection owns no buffers; its caller does. An idle connection
//! holds its connection state (keys, sequence numbers, ~3.3 KB with ring) and nothing else. The
//! buffers TLS works with belong to the core (`Scratch`, one per thread): ciphertext read from
//! sockets, records to send, plaintext gathered from several frames. A connection holds bytes of
//! its own only while they exist: ciphertext its socket has not taken yet (the *tail*), an
//! incomplete record, or plaintext its reader had no room for (`Incoming`).
//!
//! Writes. `send_vectored` encrypts up to `BATCH` bytes of what it is offered, in as few records
//! as fit (16 KiB each), sends them with one system call, and reports the plaintext it encrypted
//! as taken: like a kernel send buffer, the socket has then taken charge of it. Ciphertext the
//! inner socket does not take becomes the tail; it goes out before anything else, and while it
//! remains writes take nothing (`WouldBlock`). When nobody would otherwise ask (everything
//! offered was taken), the socket registers the connection's task for writability; the tail is
//! written whenever that task reads or writes. A record is encrypted once, when it is taken:
//! ciphertext is never produced twice nor dropped.
//!
//! Reads. `poll_read` reads ciphertext into the core's buffer, lets rustls decrypt every complete
//! record, sends what the handshake answers (flights, alerts) and returns plaintext; an
//! incomplete record waits in `Incoming` for the rest.

use std::cell::Cell;
use std::io::{self, ErrorKind, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::io::Socket;

/// Most plaintext encrypted per write: four full records.
const BATCH: usize = 64 * 1024;
/// Ciphertext read from the inner socket per read (as much as the shard's read buffer takes in
/// plaintext, so that plaintext rarely waits in `Incoming`).
const READ: usize = 64 * 1024;
/// Inner reads per `poll_read` that yield no plaintext (handshake, empty records) before the
/// task lets others run.
const READS_PER_CALL: usize = 4;
/// Most ciphertext a connection keeps unsent: a batch, the handshake's flights and alerts fit
/// many times over. Beyond it the peer is not reading and the connection fails.
const MAX_TAIL: usize = 4 * BATCH;
/// Queued records encoded after a failure (the rest of the flight and the alert saying why).
const MAX_FAILURE_CHUNKS: usize = 8;

/// `TlsSocket::flags`.
mod state {
    /// The peer sent close_notify (or both sides closed): reads end.
    pub(super) const PEER_CLOSED: u8 = 1 << 0;
    /// close_notify was queued.
    pub(super) const CLOSE_SENT: u8 = 1 << 1;
    /// Shut the inner write side down once the tail is written.
    pub(super) const SHUTDOWN_PENDING: u8 = 1 << 2;
}

/// A TLS server connection over `S` (one allocation per connection: the inner socket is held by
/// value).
pub(crate) struct TlsSocket<S> {
    inner: S,
    conn: UnbufferedServerConnection,
    /// Ciphertext the inner socket has not taken yet, in order; written before anything else.
    /// Capacity 0 while empty.
    tail: Vec<u8>,
    /// Input kept between reads; None while there is none (an idle connection).
    incoming: Option<Box<Incoming>>,
    /// The connection's task, to be woken when the tail can be written.
    waker: Option<Waker>,
    flags: u8,
}

// Per connection: rustls's state (keys, sequence numbers, handshake state) and 64 bytes of ours
// (with a zero-sized socket).
const _: () =
    assert!(std::mem::size_of::<TlsSocket<()>>() <= std::mem::size_of::<UnbufferedServerConnection>() + 64);

/// Input a connection keeps between reads.
#[derive(Default)]
struct Incoming {
    /// Ciphertext rustls has not consumed: an incomplete record (or a handshake message spanning
    /// records). Handed to rustls again, with what arrives next appended.
    cipher: Vec<u8>,
    /// Plaintext decrypted but not yet read (from `plain_at`): a record that did not fit the
    /// reader's buffer.
    plain: Vec<u8>,
    plain_at: usize,
}

/// The core's buffers for TLS work, one set per thread; connections borrow them for the length
/// of a call.
#[derive(Default)]
struct Scratch {
    /// Ciphertext read from a socket.
    read: Vec<u8>,
    /// Records to send: handshake messages, alerts, encrypted application data.
    out: Vec<u8>,
    /// Plaintext gathered from several buffers, encrypted together.
    plain: Vec<u8>,
}

thread_local! {
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's scratch buffers (a fresh set if they are in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.take().unwrap_or_default();
    let r = f(&mut scratch);
    SCRATCH.set(Some(scratch));
    r
}

/// What a pass over the connection writes once application data may be sent.
#[derive(Clone, Copy)]
enum Write<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// Where a pass puts decrypted plaintext: the reader's buffer, then the connection's stash.
struct Sink<'a> {
    buf: &'a mut [u8],
    filled: usize,
}

impl Sink<'_> {
    fn take(&mut self, payload: &[u8], incoming: &mut Option<Box<Incoming>>) {
        let stashed = incoming.as_ref().is_some_and(|i| !i.plain.is_empty());
        let n = if stashed { 0 } else { (self.buf.len() - self.filled).min(payload.len()) };
        self.buf[self.filled..self.filled + n].copy_from_slice(&payload[..n]);
        self.filled += n;
        if n < payload.len() {
            incoming.get_or_insert_with(Box::default).plain.extend_from_slice(&payload[n..]);
        }
    }
}

/// A failure rustls reports from its record layer (before any handshake state saw the record).
fn deframe_failure(e: &rustls::Error) -> bool {
    use rustls::{Error, PeerMisbehaved};
    matches!(
        e,
        Error::InvalidMessage(_)
            | Error::PeerSentOversizedRecord
            | Error::DecryptError
            | Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec)
    )
}

/// A TLS failure as the I/O error that ends the connection.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl<S: Socket> TlsSocket<S> {
    /// A connection that starts with the handshake, as `config` says.
    pub(crate) fn new(inner: S, config: Arc<ServerConfig>) -> Result<TlsSocket<S>, rustls::Error> {
        Ok(TlsSocket {
            inner,
            conn: UnbufferedServerConnection::new(config)?,
            tail: Vec::new(),
            incoming: None,
            waker: None,
            flags: 0,
        })
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn remember(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    /// Runs rustls over `input` (the connection's unconsumed ciphertext) until it needs more:
    /// handshake messages and alerts are encoded into `out` (from `*out_len`), application data
    /// is decrypted into `sink`, and once application data may be sent, `write` is encrypted into
    /// `out`. Returns the bytes of `input` consumed and whether `write` was done. On a failure
    /// the alert saying why is in `out` too.
    fn pass(
        &mut self,
        input: &mut [u8],
        sink: &mut Sink<'_>,
        out: &mut Vec<u8>,
        out_len: &mut usize,
        write: Write<'_>,
    ) -> Result<(usize, bool), rustls::Error> {
        let mut used = 0;
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(&mut input[used..]);
            let mut end = None;
            let failure = match state {
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut failure = None;
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                sink.take(record.payload, &mut self.incoming);
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    failure
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    grow_into(out, out_len, |buf| match data.encode(buf) {
                        Ok(n) => Ok(Ok(n)),
                        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                            Err(required_size)
                        }
                        Err(e) => Ok(Err(rustls::Error::General(e.to_string()))),
                    })
                    .err()
                }
                // Sent with the rest of `out` when the pass ends.
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    end = Some(!matches!(write, Write::Nothing));
                    let r = match write {
                        Write::Nothing => Ok(()),
                        Write::Data(plain) => {
                            grow_into(out, out_len, |buf| match traffic.encrypt(plain, buf) {
                                Ok(n) => Ok(Ok(n)),
                                Err(EncryptError::InsufficientSize(e)) => Err(e.required_size),
                                Err(e) => Ok(Err(rustls::Error::General(e.to_string()))),
                            })
                        }
                        Write::CloseNotify => {
                            grow_into(out, out_len, |buf| match traffic.queue_close_notify(buf) {
                                Ok(n) => Ok(Ok(n)),
                                Err(EncryptError::InsufficientSize(e)) => Err(e.required_size),
                                Err(e) => Ok(Err(rustls::Error::General(e.to_string()))),
                            })
                        }
                    };
                    r.err()
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    end = Some(false);
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.flags |= state::PEER_CLOSED;
                    None
                }
                Ok(ConnectionState::Closed) => {
                    self.flags |= state::PEER_CLOSED;
                    end = Some(false);
                    None
                }
                // Early data is off (`max_early_data_size` 0); nothing else is known.
                Ok(_) => Some(rustls::Error::General("unexpected TLS connection state".into())),
                Err(e) => Some(e),
            };
            used += discard;
            if let Some(e) = failure {
                // rustls queued an alert saying why. A record it could not deframe or decrypt
                // queues that alert alone (and asking again would deframe the same record and
                // queue a second one); a handshake message it refused may follow messages of
                // the same flight (TLS 1.3: ServerHello, then an encrypted alert), and asking
                // again after that failure only repeats the error. Encode them all, in order,
                // to be sent with the rest.
                let chunks = if deframe_failure(&e) { 1 } else { MAX_FAILURE_CHUNKS };
                for _ in 0..chunks {
                    let Ok(ConnectionState::EncodeTlsData(mut data)) =
                        self.conn.process_tls_records(&mut input[used..]).state
                    else {
                        break;
                    };
                    let encoded = grow_into(out, out_len, |buf| match data.encode(buf) {
                        Ok(n) => Ok(Ok(n)),
                        Err(EncodeError::InsufficientSize(e)) => Err(e.required_size),
                        Err(e) => Ok(Err(rustls::Error::General(e.to_string()))),
                    });
                    if encoded.is_err() {
                        break;
                    }
                }
                return Err(e);
            }
            if let Some(wrote) = end {
                return Ok((used, wrote));
            }
        }
    }

    /// Sends `data` after the tail: directly if there is no tail, keeping what the socket does
    /// not take.
    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut sent = 0;
        if self.tail.is_empty() {
            loop {
                match self.inner.send_vectored(&[IoSlice::new(data)]) {
                    Ok(n) => sent = n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        let rest = &data[sent.min(data.len())..];
        if !rest.is_empty() {
            if self.tail.len().saturating_add(rest.len()) > MAX_TAIL {
                return Err(io::Error::other("the TLS peer does not read what it is sent"));
            }
            self.tail.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Writes the tail, registering `cx` for writability while it remains; then, if asked, shuts
    /// the inner write side down.
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tail.is_empty() {
            match self.inner.poll_write(cx, &self.tail) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.tail.drain(..n.min(self.tail.len()));
                }
                Poll::Ready(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.written()
    }

    /// Writes as much of the tail as the inner socket takes now, registering nothing.
    fn flush_now(&mut self) -> io::Result<()> {
        while !self.tail.is_empty() {
            match self.inner.send_vectored(&[IoSlice::new(&self.tail)]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tail.drain(..n.min(self.tail.len()));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match self.written() {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// The tail is written: release its buffer, and shut down if that waited for it.
    fn written(&mut self) -> Poll<io::Result<()>> {
        self.tail = Vec::new();
        if self.has(state::SHUTDOWN_PENDING) {
            self.flags &= !state::SHUTDOWN_PENDING;
            return Poll::Ready(self.inner.shutdown_write());
        }
        Poll::Ready(Ok(()))
    }

    /// Has the connection's task woken when the tail can be written (it writes it when it next
    /// reads or writes).
    fn register_tail(&mut self) -> io::Result<()> {
        let Some(waker) = self.waker.clone() else { return self.flush_now() };
        match self.flush(&mut Context::from_waker(&waker)) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Moves stashed plaintext into `buf`; returns how much.
    fn take_stashed(&mut self, buf: &mut [u8]) -> usize {
        let Some(inc) = self.incoming.as_deref_mut() else { return 0 };
        let n = (inc.plain.len() - inc.plain_at).min(buf.len());
        buf[..n].copy_from_slice(&inc.plain[inc.plain_at..inc.plain_at + n]);
        inc.plain_at += n;
        if inc.plain_at == inc.plain.len() {
            inc.plain = Vec::new();
            inc.plain_at = 0;
        }
        self.tidy();
        n
    }

    /// The unconsumed ciphertext, taken out of the connection for a pass.
    fn take_cipher(&mut self) -> Vec<u8> {
        self.incoming.as_deref_mut().map(|i| std::mem::take(&mut i.cipher)).unwrap_or_default()
    }

    /// Keeps `cipher` (unconsumed ciphertext) for the next pass.
    fn keep_cipher(&mut self, mut cipher: Vec<u8>) {
        if cipher.is_empty() {
            self.tidy();
            return;
        }
        // An incomplete record after a large read: do not keep the read's capacity.
        if cipher.capacity() > 2 * cipher.len().max(4096) {
            cipher.shrink_to_fit();
        }
        self.incoming.get_or_insert_with(Box::default).cipher = cipher;
    }

    /// Drops `incoming` once it holds nothing.
    fn tidy(&mut self) {
        if self.incoming.as_ref().is_some_and(|i| i.cipher.is_empty() && i.plain.is_empty()) {
            self.incoming = None;
        }
    }

    /// Hands `n` bytes just read into `s.read` to rustls (after any unconsumed ciphertext) and
    /// sends what it answers.
    fn take_input(&mut self, n: usize, s: &mut Scratch, sink: &mut Sink<'_>) -> io::Result<()> {
        let mut cipher = self.take_cipher();
        let mut out_len = 0;
        let result = if cipher.is_empty() {
            let r = self.pass(&mut s.read[..n], sink, &mut s.out, &mut out_len, Write::Nothing);
            if let Ok((used, _)) = r {
                cipher.extend_from_slice(&s.read[used..n]);
            }
            r
        } else {
            cipher.extend_from_slice(&s.read[..n]);
            let r = self.pass(&mut cipher, sink, &mut s.out, &mut out_len, Write::Nothing);
            if let Ok((used, _)) = r {
                cipher.drain(..used);
            }
            r
        };
        let sent = self.emit(&s.out[..out_len]);
        result.map_err(tls_error)?;
        self.keep_cipher(cipher);
        sent
    }

    /// Runs a pass that writes `write` (and whatever the connection owes first) and sends the
    /// result. True if `write` was done (false: the handshake is not complete, or the connection
    /// is closed).
    fn write_pass(&mut self, s: &mut Scratch, plain: Option<usize>, close: bool) -> io::Result<bool> {
        let mut cipher = self.take_cipher();
        let mut out_len = 0;
        let write = match (plain, close) {
            (Some(n), _) => Write::Data(&s.plain[..n]),
            (None, true) => Write::CloseNotify,
            (None, false) => Write::Nothing,
        };
        // Anything decrypted now (not the case between reads, which leave only an incomplete
        // record) is stashed for the next read.
        let mut sink = Sink { buf: &mut [], filled: 0 };
        let result = self.pass(&mut cipher, &mut sink, &mut s.out, &mut out_len, write);
        let sent = self.emit(&s.out[..out_len]);
        let (used, wrote) = result.map_err(tls_error)?;
        cipher.drain(..used);
        self.keep_cipher(cipher);
        sent?;
        Ok(wrote)
    }

    /// Encrypts up to a batch of `bufs` and sends it after the (empty) tail; returns the
    /// plaintext taken.
    fn encrypt_and_send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(BATCH);
        if total == 0 {
            return Ok(0);
        }
        with_scratch(|s| {
            // One batch in as few records as fit: gathered into one buffer.
            s.plain.clear();
            for b in bufs {
                let want = total - s.plain.len();
                if want == 0 {
                    break;
                }
                s.plain.extend_from_slice(&b[..want.min(b.len())]);
            }
            if s.out.len() < BATCH + 1024 {
                s.out.resize(BATCH + 1024, 0);
            }
            if self.write_pass(s, Some(total), false)? {
                Ok(total)
            } else {
                Err(io::Error::new(ErrorKind::NotConnected, "TLS: no application data before the handshake"))
            }
        })
    }
}

/// Calls `f` on `out[*len..]`, growing `out` to what `f` says it requires (`Err(required)`), and
/// advances `*len` by what it wrote.
fn grow_into(
    out: &mut Vec<u8>,
    len: &mut usize,
    mut f: impl FnMut(&mut [u8]) -> Result<Result<usize, rustls::Error>, usize>,
) -> Result<(), rustls::Error> {
    loop {
        match f(&mut out[*len..]) {
            Ok(Ok(n)) => {
                *len += n;
                return Ok(());
            }
            Ok(Err(e)) => return Err(e),
            Err(required) => {
                let need = len.saturating_add(required);
                if need <= out.len() {
                    return Err(rustls::Error::General("TLS output buffer refused".into()));
                }
                out.resize(need, 0);
            }
        }
    }
}

impl<S: Socket> Socket for TlsSocket<S> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.remember(cx.waker());
        // Output first: the handshake's flights, a tail left by a write (Pending: registered).
        if let Poll::Ready(Err(e)) = self.flush(cx) {
            return Poll::Ready(Err(e));
        }
        let filled = self.take_stashed(buf);
        if filled == buf.len() || self.has(state::PEER_CLOSED) {
            return Poll::Ready(Ok(filled));
        }
        let mut sink = Sink { buf, filled };
        for _ in 0..READS_PER_CALL {
            let read = with_scratch(|s| {
                if s.read.len() < READ {
                    s.read.resize(READ, 0);
                }
                match self.inner.poll_read(cx, &mut s.read) {
                    Poll::Ready(Ok(n)) if n > 0 => self.take_input(n, s, &mut sink).map(|()| Some(n)),
                    Poll::Ready(Ok(_)) => Ok(Some(0)),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Ok(None),
                }
            });
            match read {
                Err(e) => return Poll::Ready(Err(e)),
                // End of stream (after close_notify, or cut short: both end the connection).
                Ok(Some(0)) => return Poll::Ready(Ok(sink.filled)),
                Ok(Some(_)) => {}
                Ok(None) if sink.filled > 0 => return Poll::Ready(Ok(sink.filled)),
                Ok(None) => return Poll::Pending,
            }
            // What the handshake answered and the socket did not take: wait for writability too.
            if let Poll::Ready(Err(e)) = self.flush(cx) {
                return Poll::Ready(Err(e));
            }
            if sink.filled > 0 || self.has(state::PEER_CLOSED) {
                return Poll::Ready(Ok(sink.filled));
            }
        }
        // Only handshake records or empty ones so far: let the other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.remember(cx.waker());
        match self.flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let n = match self.encrypt_and_send(&[IoSlice::new(buf)]) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(e)),
        };
        // Taken; what the socket did not take waits for writability.
        if let Poll::Ready(Err(e)) = self.flush(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.tail.is_empty() {
            self.flush_now()?;
            if !self.tail.is_empty() {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let taken = self.encrypt_and_send(bufs)?;
        if taken == offered && !self.tail.is_empty() {
            // The caller sees everything taken and will not ask again: the task writes the
            // tail once the socket is writable.
            self.register_tail()?;
        }
        Ok(taken)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.has(state::CLOSE_SENT) {
            self.flags |= state::CLOSE_SENT;
            // Best effort: a connection that cannot say close_notify just closes.
            let _ = with_scratch(|s| self.write_pass(s, None, true));
        }
        self.flush_now()?;
        if self.tail.is_empty() {
            return self.inner.shutdown_write();
        }
        // After the tail (written when the task next reads).
        self.flags |= state::SHUTDOWN_PENDING;
        self.register_tail()
    }
}

#[cfg(test)]
mod tests;
