//! The bounded work queue between ingest and inference, shared by all cameras.
//!
//! Each camera has a small FIFO slot. When inference falls behind, `push` drops the camera's
//! oldest waiting frame (live mode) or waits for room (lossless mode, used by `bench` and
//! file processing). Workers take frames round-robin across cameras, and a camera is "busy"
//! while one of its frames is being analysed, so each camera's frames are analysed in order
//! even with several workers.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::types::Frame;

pub struct FrameQueue {
    state: Mutex<State>,
    /// Signalled when a frame becomes available or the queue closes.
    ready: Condvar,
    /// Signalled when room appears (lossless mode).
    room: Condvar,
    capacity: usize,
    lossless: bool,
}

struct State {
    slots: Vec<VecDeque<Frame>>,
    busy: Vec<bool>,
    dropped: Vec<u64>,
    next: usize,
    closed: bool,
}

/// A frame taken by a worker; call `FrameQueue::done` with `camera` when finished.
pub struct Job {
    pub camera: usize,
    pub frame: Frame,
}

impl FrameQueue {
    pub fn new(cameras: usize, capacity: usize, lossless: bool) -> Self {
        FrameQueue {
            state: Mutex::new(State {
                slots: (0..cameras).map(|_| VecDeque::new()).collect(),
                busy: vec![false; cameras],
                dropped: vec![0; cameras],
                next: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
            lossless,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame of camera `camera`. Returns true if an older frame was dropped.
    pub fn push(&self, camera: usize, frame: Frame) -> bool {
        let mut s = self.lock();
        let mut dropped = false;
        if self.lossless {
            while !s.closed && s.slots[camera].len() >= self.capacity {
                s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        } else if s.slots[camera].len() >= self.capacity {
            s.slots[camera].pop_front();
            s.dropped[camera] += 1;
            dropped = true;
        }
        if s.closed {
            return dropped;
        }
        s.slots[camera].push_back(frame);
        drop(s);
        self.ready.notify_one();
        dropped
    }

    /// Blocks until a frame of a non-busy camera is available; None once closed and drained.
    pub fn pop(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            let n = s.slots.len();
            for k in 0..n {
                let c = (s.next + k) % n;
                if !s.busy[c] {
                    if let Some(frame) = s.slots[c].pop_front() {
                        s.busy[c] = true;
                        s.next = (c + 1) % n;
                        drop(s);
                        self.room.notify_all();
                        return Some(Job { camera: c, frame });
                    }
                }
            }
            if s.closed && s.slots.iter().all(|q| q.is_empty()) {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Marks camera `camera`'s job finished.
    pub fn done(&self, camera: usize) {
        self.lock().busy[camera] = false;
        self.ready.notify_all();
    }

    /// Frames of `camera` dropped so far.
    pub fn dropped(&self, camera: usize) -> u64 {
        self.lock().dropped[camera]
    }

    /// Stops accepting frames; workers drain what is queued, then `pop` returns None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(cam: &str, i: u64) -> Frame {
        Frame {
            camera_id: Arc::from(cam),
            index: i,
            width: 1,
            height: 1,
            rgb: Arc::from(vec![0u8; 3]),
            pts_ns: None,
            captured_at: time::OffsetDateTime::now_utc(),
            captured_instant: std::time::Instant::now(),
        }
    }

    #[test]
    fn drops_oldest_per_camera_when_full() {
        let q = FrameQueue::new(2, 2, false);
        assert!(!q.push(0, frame("a", 1)));
        assert!(!q.push(0, frame("a", 2)));
        assert!(q.push(0, frame("a", 3)));
        q.push(1, frame("b", 1));
        assert_eq!(q.dropped(0), 1);
        let j = q.pop().unwrap();
        assert_eq!((j.camera, j.frame.index), (0, 2));
        // camera 0 is busy: next pop serves camera 1 even though 0 has a frame waiting
        let j2 = q.pop().unwrap();
        assert_eq!((j2.camera, j2.frame.index), (1, 1));
        q.done(0);
        assert_eq!(q.pop().unwrap().frame.index, 3);
    }

    #[test]
    fn close_drains_then_ends() {
        let q = Arc::new(FrameQueue::new(1, 4, true));
        q.push(0, frame("a", 1));
        q.close();
        let j = q.pop().unwrap();
        q.done(j.camera);
        assert!(q.pop().is_none());
    }

    #[test]
    fn lossless_waits_for_room() {
        let q = Arc::new(FrameQueue::new(1, 1, true));
        q.push(0, frame("a", 1));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(0, frame("a", 2)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let j = q.pop().unwrap();
        assert_eq!(j.frame.index, 1);
        q.done(0);
        assert!(!t.join().unwrap());
        assert_eq!(q.pop().unwrap().frame.index, 2);
        assert_eq!(q.dropped(0), 0);
    }
}
