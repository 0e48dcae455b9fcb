//! One SO_REUSEPORT listening socket per core, built with socket2 (glommio's own `bind` fixes
//! the backlog at 1024).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` SO_REUSEPORT listeners to `addr` (port 0: one ephemeral port shared by all).
/// Unless `share` (several corecast processes on one port, one SO_REUSEPORT group), fails
/// rather than sharing the port when another process already listens there.
pub(super) fn bind_all(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    share: bool,
) -> io::Result<(Vec<Socket>, u32)> {
    let backlog = clamp_backlog(backlog);
    if addr.port() != 0 && !share {
        // A plain bind fails if anyone holds the port, even with SO_REUSEPORT; ours would not.
        let probe = new_socket(addr, false)?;
        probe.bind(&addr.into()).map_err(|e| in_use(e, addr))?;
    }
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let s = new_socket(bound, true)?;
        s.bind(&bound.into()).map_err(|e| in_use(e, bound))?;
        s.listen(backlog as i32)?;
        if bound.port() == 0 {
            bound = s.local_addr()?.as_socket().expect("an inet socket");
        }
        sockets.push(s);
    }
    Ok((sockets, backlog))
}

fn new_socket(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn in_use(e: io::Error, addr: SocketAddr) -> io::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            e.kind(),
            format!("{addr} is already in use (another corecast or server?): stop it or choose --port"),
        )
    } else {
        io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))
    }
}

/// The kernel silently caps the backlog at net.core.somaxconn; cap it here so the log is true.
pub(super) fn clamp_backlog(requested: u32) -> u32 {
    match std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        Some(max) if max < requested => {
            log::warn!(
                "backlog {requested} exceeds net.core.somaxconn={max}: using {max} (raise it with tuning/apply.sh)"
            );
            max
        }
        _ => requested,
    }
}
