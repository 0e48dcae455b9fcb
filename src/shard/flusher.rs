//! The flusher: once the tasks that were runnable when a fan-out queued frames have run, it
//! writes every dirty connection — one vectored send each — in chunks, yielding to the reactor
//! between chunks so that the core keeps reading, answering pings and taking requests while a
//! large fan-out is written. What is published meanwhile joins the next pass. Under a sustained
//! backlog it sleeps until the next connection's hold ends (`Engine::flush`).

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use super::local::{clock_ms, with_core};
use crate::core::Flushed;

/// Connections written per chunk before yielding.
const CHUNK: usize = 256;

pub(super) async fn run() {
    loop {
        poll_fn(|cx| {
            if with_core(|core| core.e.flusher_ready(cx.waker())) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        loop {
            // A timer completes only on the reactor's next turn (glommio polls I/O once no task
            // is runnable): what arrived meanwhile is handled before the next chunk.
            let pause = match with_core(|core| core.flush(CHUNK)) {
                Flushed::Done => break,
                Flushed::More => Duration::from_micros(1),
                Flushed::HoldUntil(ms) => Duration::from_millis(ms.saturating_sub(clock_ms())),
            };
            glommio::timer::sleep(pause.max(Duration::from_micros(1))).await;
        }
    }
}
