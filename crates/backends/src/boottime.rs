//! `CLOCK_BOOTTIME`: the clock the agent and its supervisors share. It is one clock for every
//! process of the machine and keeps counting while the machine is suspended, so a deadline the
//! agent computes is the same instant for the supervisor, and a suspend cannot stretch a term.

/// Nanoseconds on `CLOCK_BOOTTIME`.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux we run on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The instant `remaining` from now, in nanoseconds on `CLOCK_BOOTTIME`.
pub fn after(remaining: std::time::Duration) -> u64 {
    now_ns().saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX))
}
