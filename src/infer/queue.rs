//! The bounded work queue between ingest and inference, shared by all cameras.
//!
//! Each camera has a small FIFO slot with its own mode. When inference falls behind, `push`
//! drops the camera's oldest waiting frame (live: capacity 1) or waits for room (lossless:
//! capacity 2, for unpaced file cameras, whose source then waits for analysis). A lossless
//! camera blocks only its own ingest thread, never another camera's. Workers take frames round-robin across cameras, and a camera is "busy"
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
    /// Per camera: whether `push` waits for room instead of dropping.
    lossless: Vec<bool>,
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
    /// One slot per camera; `lossless[i]` makes camera `i`'s `push` wait for room instead of
    /// dropping its oldest frame.
    pub fn new(lossless: &[bool]) -> Self {
        let cameras = lossless.len();
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
            lossless: lossless.to_vec(),
        }
    }

    /// Frames a camera's slot holds: 1 live (the freshest frame), 2 lossless (the next frame
    /// is ready when a worker finishes the current one).
    fn capacity(&self, camera: usize) -> usize {
        if self.lossless[camera] {
            2
        } else {
            1
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame of camera `camera`: a lossless camera waits for room (blocking the
    /// caller, its ingest thread), a live one drops its oldest waiting frame. Returns true if
    /// a frame was dropped.
    pub fn push(&self, camera: usize, frame: Frame) -> bool {
        let mut s = self.lock();
        let mut dropped = false;
        let capacity = self.capacity(camera);
        if self.lossless[camera] {
            while !s.closed && s.slots[camera].len() >= capacity {
                s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        } else if s.slots[camera].len() >= capacity {
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
        let q = FrameQueue::new(&[false, false]);
        assert!(!q.push(0, frame("a", 1)));
        assert!(q.push(0, frame("a", 2)));
        assert!(q.push(0, frame("a", 3)));
        q.push(1, frame("b", 1));
        assert_eq!(q.dropped(0), 2);
        let j = q.pop().unwrap();
        assert_eq!((j.camera, j.frame.index), (0, 3));
        // camera 0 is busy: its next frame waits while camera 1 is served
        q.push(0, frame("a", 4));
        let j2 = q.pop().unwrap();
        assert_eq!((j2.camera, j2.frame.index), (1, 1));
        q.done(0);
        assert_eq!(q.pop().unwrap().frame.index, 4);
    }

    #[test]
    fn close_drains_then_ends() {
        let q = Arc::new(FrameQueue::new(&[true]));
        q.push(0, frame("a", 1));
        q.close();
        let j = q.pop().unwrap();
        q.done(j.camera);
        assert!(q.pop().is_none());
    }

    #[test]
    fn lossless_waits_for_room() {
        let q = Arc::new(FrameQueue::new(&[true]));
        q.push(0, frame("a", 1));
        q.push(0, frame("a", 2));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(0, frame("a", 3)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished(), "a full lossless slot makes push wait");
        let j = q.pop().unwrap();
        assert_eq!(j.frame.index, 1);
        q.done(0);
        assert!(!t.join().unwrap());
        assert_eq!(q.pop().unwrap().frame.index, 2);
        q.done(0);
        assert_eq!(q.pop().unwrap().frame.index, 3);
        assert_eq!(q.dropped(0), 0);
    }

    /// A lossless camera whose slot is full blocks only its own producer: a live camera's
    /// push returns at once (dropping its oldest frame) while the lossless push waits.
    #[test]
    fn modes_are_per_camera() {
        let q = Arc::new(FrameQueue::new(&[true, false]));
        q.push(0, frame("file", 1));
        q.push(0, frame("file", 2));
        let q2 = q.clone();
        let blocked = std::thread::spawn(move || q2.push(0, frame("file", 3)));
        let live = {
            let q3 = q.clone();
            std::thread::spawn(move || (q3.push(1, frame("rtsp", 1)), q3.push(1, frame("rtsp", 2))))
        };
        assert_eq!(live.join().unwrap(), (false, true), "the live camera drops, never waits");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!blocked.is_finished(), "the lossless camera waits for room");
        assert_eq!((q.dropped(0), q.dropped(1)), (0, 1));
        let j = q.pop().unwrap();
        assert_eq!((j.camera, j.frame.index), (0, 1));
        q.done(0);
        assert!(!blocked.join().unwrap());
        let mut order = Vec::new();
        q.close();
        while let Some(j) = q.pop() {
            order.push((j.camera, j.frame.index));
            q.done(j.camera);
        }
        assert_eq!(order, vec![(1, 2), (0, 2), (0, 3)]);
    }
}
