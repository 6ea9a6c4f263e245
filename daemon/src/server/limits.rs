//! What one client may make the daemon hold, in one place.
//!
//! Exists because a daemon artists leave running for days is fed by plugins that may be buggy or
//! outdated: connections, half-sent frames and unread replies are bounded here (queued final jobs
//! per client are bounded by the job queue, `jobs::MAX_QUEUED_FINAL_PER_CLIENT`). Every limit
//! ends in a clear error or a logged close, never a hang.

use std::time::Duration;

/// Clients past their hello at once (`--max-connections`); the next one is told
/// `TooManyConnections`. Plugins hold one or two each.
pub const DEFAULT_MAX_CLIENTS: u32 = 64;
/// Open connections of any kind (including ones that have not said hello yet); beyond this the
/// daemon closes new connections at once.
pub const MAX_OPEN_CONNECTIONS: usize = 4096;
/// How long a new connection may take to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a frame may take once its first byte arrived (a 300 MB frame over a
/// local socket takes well under a second; a forwarded socket on a slow link more).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Unwritten reply bytes above which the daemon stops reading a client's frames.
pub const UNREAD_HIGH_WATER: usize = 32 << 20;
/// How long a client may leave that many bytes unread before it is disconnected.
pub const UNREAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The limits a server runs with.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_clients: u32,
    pub hello_timeout: Duration,
    pub frame_timeout: Duration,
    pub unread_high_water: usize,
    pub unread_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_clients: DEFAULT_MAX_CLIENTS,
            hello_timeout: HELLO_TIMEOUT,
            frame_timeout: FRAME_TIMEOUT,
            unread_high_water: UNREAD_HIGH_WATER,
            unread_timeout: UNREAD_TIMEOUT,
        }
    }
}
