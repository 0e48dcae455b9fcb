//! A bounded lock-free single-producer single-consumer ring that can wake its consumer on
//! another thread: `rtrb` for the slots, an `AtomicWaker` for the wake-up. It joins threads that
//! do not share a runtime (the glommio cores and the tokio Redis bridge). Pushing never blocks.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

pub(crate) struct Tx<T> {
    slots: rtrb::Producer<T>,
    waker: Arc<AtomicWaker>,
}

pub(crate) struct Rx<T> {
    slots: rtrb::Consumer<T>,
    waker: Arc<AtomicWaker>,
}

pub(crate) fn ring<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    let (slots_tx, slots_rx) = rtrb::RingBuffer::new(capacity);
    let waker = Arc::new(AtomicWaker::new());
    (Tx { slots: slots_tx, waker: waker.clone() }, Rx { slots: slots_rx, waker })
}

impl<T> Tx<T> {
    /// Adds `item` and wakes the consumer; gives `item` back when the ring is full.
    pub(crate) fn push(&mut self, item: T) -> Result<(), T> {
        match self.slots.push(item) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(rtrb::PushError::Full(item)) => Err(item),
        }
    }
}

impl<T> Rx<T> {
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        if let Ok(item) = self.slots.pop() {
            return Poll::Ready(item);
        }
        self.waker.register(cx.waker());
        // Re-check after registering: a push between the first check and the registration
        // would otherwise go unnoticed.
        match self.slots.pop() {
            Ok(item) => Poll::Ready(item),
            Err(_) => Poll::Pending,
        }
    }

    /// Waits for the next item.
    pub(crate) async fn pop(&mut self) -> T {
        poll_fn(|cx| self.poll_pop(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_cross_threads_in_order_and_wake_the_consumer() {
        let (mut tx, mut rx) = ring::<u32>(4);
        let producer = std::thread::spawn(move || {
            for i in 0..1000 {
                let mut item = i;
                while let Err(back) = tx.push(item) {
                    item = back;
                    std::thread::yield_now();
                }
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got: Vec<u32> = rt.block_on(async {
            let mut got = Vec::new();
            while got.len() < 1000 {
                got.push(rx.pop().await);
            }
            got
        });
        producer.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_ring_gives_the_item_back() {
        let (mut tx, _rx) = ring::<u8>(1);
        tx.push(1).unwrap();
        assert_eq!(tx.push(2), Err(2));
    }
}
