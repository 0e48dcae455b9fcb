//! The accept loop: hands each accepted socket to the core (wrapped in TLS when the main
//! listener serves TLS) and spawns its task.

use std::time::Duration;

use glommio::net::TcpListener;

use super::conn_task;
use super::local::{self, with_core};
use super::socket::GlommioSocket;
use crate::core::io::Socket;
use crate::core::tls::TlsSocket;

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
                let plain = GlommioSocket(stream);
                // The metrics listener stays plain.
                let socket: Box<dyn Socket> = match local::tls().filter(|_| !metrics_only) {
                    None => Box::new(plain),
                    Some(config) => match TlsSocket::new(plain, config) {
                        Ok(tls) => Box::new(tls),
                        Err(e) => {
                            log::warn!("cannot start a TLS connection: {e}");
                            continue;
                        }
                    },
                };
                let key = with_core(|core| core.accept(socket, metrics_only));
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
