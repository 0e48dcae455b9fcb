//! A connection's task: the only code that awaits a socket. It reads into the shard's buffer,
//! hands the bytes to the core, and writes what the core queued when the socket would not take
//! it at once. Its future holds only the stream and the connection's key.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::local::{with_core, with_scratch};
use crate::core::TaskView;
use crate::core::conn::ConnKey;

enum Step {
    Read(usize),
    Eof,
    Exit,
}

pub async fn serve(mut stream: TcpStream, key: ConnKey) {
    loop {
        match poll_fn(|cx| poll_step(&mut stream, key, cx)).await {
            Step::Read(n) => with_scratch(|buf| with_core(|core| core.on_read(key, &mut buf[..n]))),
            Step::Eof => with_core(|core| core.on_eof(key)),
            Step::Exit => break,
        }
    }
    with_core(|core| core.remove(key));
    drop(stream);
}

fn poll_step(stream: &mut TcpStream, key: ConnKey, cx: &mut std::task::Context<'_>) -> Poll<Step> {
    loop {
        match with_core(|core| core.task_view(key, cx.waker())) {
            TaskView::Exit => return Poll::Ready(Step::Exit),
            TaskView::Write(front) => match Pin::new(&mut *stream).poll_write(cx, &front) {
                Poll::Ready(Ok(n)) if n > 0 => with_core(|core| core.wrote(key, n)),
                Poll::Ready(_) => return Poll::Ready(Step::Exit),
                // Woken when writable; meanwhile keep reading unless paused.
                Poll::Pending => return poll_read_unless_paused(stream, key, cx),
            },
            TaskView::Linger { shut_down } => {
                if !shut_down {
                    let _ = Pin::new(&mut *stream).poll_close(cx);
                }
                // Read and discard until the peer closes (or the close timeout kills us), so that
                // closing with unread input does not reset what we just sent.
                return match poll_read(stream, cx) {
                    Poll::Ready(Step::Read(_)) => continue,
                    other => other.map(|_| Step::Exit),
                };
            }
            TaskView::Read => return poll_read(stream, cx),
            TaskView::Wait => return Poll::Pending,
        }
    }
}

fn poll_read_unless_paused(
    stream: &mut TcpStream,
    key: ConnKey,
    cx: &mut std::task::Context<'_>,
) -> Poll<Step> {
    let paused = with_core(|core| {
        core.conn(key).is_none_or(|c| {
            c.has(crate::core::conn::flag::READ_PAUSED) || c.has(crate::core::conn::flag::CLOSE_AFTER_FLUSH)
        })
    });
    if paused { Poll::Pending } else { poll_read(stream, cx) }
}

fn poll_read(stream: &mut TcpStream, cx: &mut std::task::Context<'_>) -> Poll<Step> {
    with_scratch(|buf| match Pin::new(&mut *stream).poll_read(cx, buf) {
        Poll::Ready(Ok(0)) => Poll::Ready(Step::Eof),
        Poll::Ready(Ok(n)) => Poll::Ready(Step::Read(n)),
        Poll::Ready(Err(_)) => Poll::Ready(Step::Eof),
        Poll::Pending => Poll::Pending,
    })
}
