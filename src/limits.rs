//! Process limits (DESIGN §10, §12): raise `RLIMIT_NOFILE` to the hard limit at start-up and
//! report the connection capacity that follows (each relayed connection costs two sockets).

/// Descriptors kept aside for listeners, pipes in flight, logs and the control plane.
const RESERVED_FDS: u64 = 64;

/// Raise the soft descriptor limit to the hard one; returns the planned connection capacity
/// (`hard limit / 2`, minus a small reserve).
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!("cannot read RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!("cannot raise RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
        }
    }
    let capacity = lim.rlim_cur.saturating_sub(RESERVED_FDS) / 2;
    tracing::info!(
        nofile = lim.rlim_cur,
        "descriptor limit {}: about {} relayed connections (2 sockets each)",
        lim.rlim_cur,
        capacity
    );
    capacity
}
