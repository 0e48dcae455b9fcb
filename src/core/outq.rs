//! A connection's queue of frames not yet written, allocated only while non-empty.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    pub fn front(&self) -> Option<&Bytes> {
        self.frames.front()
    }

    /// Records that `n` bytes of the front were written.
    pub fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self.frames.front_mut().expect("advance within queued bytes");
            if n < front.len() {
                bytes::Buf::advance(front, n);
                return;
            }
            n -= front.len();
            self.frames.pop_front();
        }
        while self.frames.front().is_some_and(Bytes::is_empty) {
            self.frames.pop_front();
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_frames() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        assert_eq!(q.bytes(), 5);
        q.advance(4);
        assert_eq!(q.front().unwrap().as_ref(), b"e");
        assert_eq!(q.bytes(), 1);
        q.advance(1);
        assert!(q.is_empty());
    }
}
