//! The accept loop: hands each accepted socket to the core and spawns its task.

use std::time::Duration;

use glommio::net::TcpListener;

use super::conn_task;
use super::local::with_core;
use super::socket::GlommioSocket;

/// Accepts until cancelled. `metrics_only`: this is the metrics listener.
pub(super) async fn run(listener: TcpListener, send_buffer: usize, metrics_only: bool) {
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if send_buffer > 0 {
                    let _ = super::sys::set_send_buffer(&stream, send_buffer);
                }
                let key = with_core(|core| core.accept(Box::new(GlommioSocket(stream)), metrics_only));
                glommio::spawn_local(conn_task::serve(key)).detach();
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; say so at most every 10 s.
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    log::warn!(
                        "accept failed: {e} (raise RLIMIT_NOFILE or lower --max-connections; see tuning/)"
                    );
                    last_error_log = Some(std::time::Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
