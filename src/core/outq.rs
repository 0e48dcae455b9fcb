//! A connection's output not yet written: shared frames (`Bytes`), in order, allocated only
//! while non-empty. Written with one vectored send per flush.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most buffers handed to one vectored send (IOV_MAX is 1024).
pub(crate) const MAX_IOV: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The front is the rest of a frame whose beginning was already written.
    front_started: bool,
}

impl OutQueue {
    pub(crate) fn push(&mut self, frame: Bytes) {
        self.bytes = self.bytes.saturating_add(frame.len());
        self.frames.push_back(frame);
    }

    pub(crate) fn front(&self) -> Option<&Bytes> {
        self.frames.front()
    }

    /// Fills `out` with the queue's first buffers; returns how many.
    pub(crate) fn iovecs<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut n = 0;
        for (slot, frame) in out.iter_mut().zip(self.frames.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        n
    }

    /// Records that `n` bytes were written; returns how many frames were completed.
    pub(crate) fn advance(&mut self, mut n: usize) -> u64 {
        debug_assert!(n <= self.bytes);
        self.bytes -= n.min(self.bytes);
        let mut completed = 0;
        while n > 0 {
            let Some(front) = self.frames.front_mut() else { break };
            if n < front.len() {
                front.advance(n);
                self.front_started = true;
                return completed;
            }
            n -= front.len();
            self.frames.pop_front();
            self.front_started = false;
            completed += 1;
        }
        completed
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet begun; a frame already partly written stays, so that the byte
    /// stream remains well-formed.
    pub(crate) fn clear_unstarted(&mut self) {
        let keep = if self.front_started { self.frames.pop_front() } else { None };
        self.frames.clear();
        self.bytes = 0;
        if let Some(front) = keep {
            self.push(front);
            self.front_started = true;
        }
    }

    /// An emptied queue whose slots are worth keeping for reuse (a small allocation).
    pub(crate) fn is_reusable(&self) -> bool {
        self.frames.is_empty() && self.frames.capacity() <= 16
    }

    /// Heap bytes this queue holds (the queue, its slots and the bytes it refers to).
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<OutQueue>() + self.frames.capacity() * std::mem::size_of::<Bytes>() + self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_frames_counts_completed_frames() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        assert_eq!(q.bytes(), 5);
        assert_eq!(q.advance(4), 1);
        assert_eq!(q.front().unwrap().as_ref(), b"e");
        assert_eq!(q.bytes(), 1);
        assert_eq!(q.advance(1), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn iovecs_list_the_queue_in_order() {
        let mut q = OutQueue::default();
        for f in [&b"ab"[..], b"c", b"def"] {
            q.push(Bytes::copy_from_slice(f));
        }
        q.advance(1);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = q.iovecs(&mut iov);
        let joined: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, b"bcdef");
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
        // Still marked as started: a second clear keeps it too.
        q.push(Bytes::from_static(b"fg"));
        q.clear_unstarted();
        assert_eq!(q.bytes(), 2);
    }
}
