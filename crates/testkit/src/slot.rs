//! Test slots: a cap on how many real-server tests run at once on this machine.
//!
//! A slot is an exclusive `flock` on one of `CLUSTER_TEST_SLOTS` files (default 1) in a shared
//! directory, so the cap holds across test binaries, across nextest's processes and under plain
//! `cargo test` threads alike. On a 2-core machine, two etcd clusters racing each other turn
//! timing tests into coin flips; one slot keeps them honest. The lock dies with the process, so
//! a killed test never leaves a slot taken.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// A held test slot; dropping it frees the slot.
#[derive(Debug)]
pub struct TestSlot {
    _file: File,
    index: usize,
}

impl TestSlot {
    /// Which slot this is.
    pub fn index(&self) -> usize {
        self.index
    }
}

fn slots() -> usize {
    std::env::var("CLUSTER_TEST_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(1)
}

fn slot_dir() -> PathBuf {
    std::env::var_os("CLUSTER_TESTKIT_SLOTS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cluster-testkit-slots"))
}

fn open_slot(index: usize) -> std::io::Result<File> {
    let dir = slot_dir();
    std::fs::create_dir_all(&dir)?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("slot-{index}.lock")))
}

fn try_lock(file: &File) -> bool {
    // SAFETY: plain syscall on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Takes a slot, waiting as long as it takes. Panics only if the lock files cannot be opened.
pub fn test_slot_blocking() -> TestSlot {
    let n = slots();
    let files: Vec<File> = (0..n)
        .map(|i| open_slot(i).unwrap_or_else(|e| panic!("testkit: cannot open test slot {i}: {e}")))
        .collect();
    if n == 1 {
        let file = files.into_iter().next().unwrap_or_else(|| unreachable!());
        // SAFETY: plain syscall on a descriptor we own; blocks until the slot is free.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "testkit: flock on the test slot failed");
        return TestSlot {
            _file: file,
            index: 0,
        };
    }
    loop {
        for (index, file) in files.iter().enumerate() {
            if try_lock(file) {
                let file = file.try_clone().unwrap_or_else(|e| panic!("testkit: {e}"));
                return TestSlot { _file: file, index };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes a slot without blocking the async runtime.
pub async fn test_slot() -> TestSlot {
    match tokio::task::spawn_blocking(test_slot_blocking).await {
        Ok(slot) => slot,
        Err(e) => panic!("testkit: waiting for a test slot failed: {e}"),
    }
}
