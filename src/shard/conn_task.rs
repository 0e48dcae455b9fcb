//! A connection's task: it lets the core drive the connection (`Core::drive`) whenever glommio
//! wakes it, until the core removes the connection. Its future holds only the key.

use std::future::poll_fn;

use super::local::{with_core, with_scratch};
use crate::core::conn::ConnKey;

pub(super) async fn serve(key: ConnKey) {
    poll_fn(|cx| with_scratch(|buf| with_core(|core| core.drive(key, cx, buf)))).await;
}
