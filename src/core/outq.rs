//! A connection's queue of frames not yet written, allocated only while non-empty.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The front is the rest of a frame whose beginning was already written.
    front_started: bool,
}

impl OutQueue {
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues the unwritten rest of a frame that was partly written (the queue must be empty).
    pub fn push_rest(&mut self, rest: Bytes) {
        debug_assert!(self.frames.is_empty());
        self.push(rest);
        self.front_started = true;
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
                self.front_started = true;
                return;
            }
            n -= front.len();
            self.frames.pop_front();
            self.front_started = false;
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

    /// Drops every frame not yet begun; a frame already partly written stays, so that the byte
    /// stream remains well-formed.
    pub fn clear_unstarted(&mut self) {
        let keep = if self.front_started { self.frames.pop_front() } else { None };
        self.frames.clear();
        self.bytes = 0;
        if let Some(front) = keep {
            self.push(front);
        }
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

    #[test]
    fn clearing_keeps_a_partly_written_frame() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        q.clear_unstarted();
        assert!(q.is_empty());
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        q.advance(1);
        q.clear_unstarted();
        assert_eq!(q.front().unwrap().as_ref(), b"bc");
        assert_eq!(q.bytes(), 2);
    }
}
