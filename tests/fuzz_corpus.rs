//! Replays the committed fuzz seed corpora through the fuzz target bodies on the stable
//! toolchain, so the invariants the fuzzers check are checked on every run.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: {} breaks an invariant", path.display());
        // Every prefix too: the fuzzers mostly meet truncated inputs.
        for end in (0..data.len()).step_by(1 + data.len() / 64) {
            body(&data[..end]);
        }
        count += 1;
    }
    assert!(count >= 5, "{target}: the seed corpus is missing");
}

#[test]
fn handshake_corpus() {
    replay("handshake", corecast::protocol::fuzzing::handshake);
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", corecast::protocol::fuzzing::frame_decoder);
}

#[test]
fn server_corpus() {
    replay("server", corecast::fuzzing::server);
}

#[test]
fn deflate_decoder_corpus() {
    replay("deflate_decoder", corecast::protocol::fuzzing::deflate_decoder);
}
