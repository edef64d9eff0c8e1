//! Telling systemd how a daemon is doing (`Type=notify`): `READY=1` once it works, and
//! `WATCHDOG=1` for as long as its work loop makes progress, so that a stuck loop is restarted
//! (`WatchdogSec=`). Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.
//!
//! Progress means: no piece of work (a receive, a message, an import) has been under way for
//! longer than [`STALL_LIMIT`]. Waiting idle for the next interval is not a stall.
//!
//! The same standing answers `/health/ready` (see [`crate::ops`]): ready once the daemon told
//! systemd so, and not ready while its work is stalled. A daemon with a progress window (the
//! transformer) is also not ready when its loop has made no progress ([`Liveness::progress`]: a
//! receive answered, a message settled) for that long and no work started in time to explain
//! it: its loop is waiting out an outage. That is for readiness only: the watchdog keeps being
//! fed, since restarting a daemon does not end a dependency's outage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Longer than any single step may legitimately take (a statement is cut at
/// `database.statement_timeout`, 5 min by default; an AWS call at 3 min; an HTTP request at
/// `http.timeout`); a step under way for longer means the loop is stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The daemon's standing with systemd. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    next_id: AtomicU64,
    under_way: Mutex<HashMap<u64, Instant>>,
    /// Set by [`Liveness::ready`]: the daemon's dependencies answered and its loop runs.
    ready: AtomicBool,
    /// Work under way for longer than this is a stall.
    stall_limit: Duration,
    /// When the loop last made progress (or became ready).
    progressed: Mutex<Instant>,
    /// No progress for longer than this, with no work started within it, is not ready.
    progress_window: Option<Duration>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::default(),
            under_way: Mutex::default(),
            ready: AtomicBool::default(),
            stall_limit: STALL_LIMIT,
            progressed: Mutex::new(Instant::now()),
            progress_window: None,
        }
    }
}

/// Whether a daemon can do its work, as `/health/ready` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Still starting: its dependencies have not all answered yet.
    Starting,
    /// Working.
    Ready,
    /// A piece of work has been under way for this long, beyond the stall limit.
    Stalled(Duration),
    /// The loop has made no progress for this long, beyond the progress window, and no work
    /// started within the window is under way: it waits out a failing dependency.
    NoProgress(Duration),
}

/// A piece of work under way; dropping it ends it.
#[must_use = "the work ends when the guard is dropped"]
#[derive(Debug)]
pub struct Work {
    inner: Arc<Inner>,
    id: u64,
}

impl Liveness {
    /// Starts feeding systemd's watchdog, if the service has one (`WATCHDOG_USEC`), every third
    /// of its period while no work has been under way for longer than `stall_limit`. With a
    /// `progress_window`, [`Liveness::readiness`] also watches [`Liveness::progress`].
    pub fn start(stall_limit: Duration, progress_window: Option<Duration>) -> Self {
        let liveness = Self::with_limits(stall_limit, progress_window);
        if let Some(period) = sd_notify::watchdog_enabled() {
            tokio::spawn(feed_watchdog(liveness.clone(), period / 3, stall_limit));
        }
        liveness
    }

    /// A standing whose work stalls after `stall_limit`, without the watchdog feed.
    fn with_limits(stall_limit: Duration, progress_window: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                stall_limit,
                progress_window,
                ..Inner::default()
            }),
        }
    }

    /// Tells systemd the daemon is up, with a status line for `systemctl status`, and makes
    /// [`Liveness::readiness`] say so; becoming ready counts as progress.
    pub fn ready(&self, status: &str) {
        self.progress();
        self.inner.ready.store(true, Ordering::Relaxed);
        notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Records that the work loop made progress now (a receive answered, a message settled).
    pub fn progress(&self) {
        *lock(&self.inner.progressed) = Instant::now();
    }

    /// Whether the daemon is ready: it said so, none of its work is stalled, and (with a
    /// progress window) its loop progresses.
    pub fn readiness(&self) -> Readiness {
        if !self.inner.ready.load(Ordering::Relaxed) {
            return Readiness::Starting;
        }
        if let Some(elapsed) = self.stalled(self.inner.stall_limit) {
            return Readiness::Stalled(elapsed);
        }
        match self.without_progress() {
            Some(elapsed) => Readiness::NoProgress(elapsed),
            None => Readiness::Ready,
        }
    }

    /// How long the loop has gone without progress, when that is beyond the progress window
    /// and no work under way started within the window after the last progress. Work started
    /// in time (a long load, which the stall limit bounds) explains the silence; work started
    /// later (an attempt during an outage, a receive after failed ones) does not.
    fn without_progress(&self) -> Option<Duration> {
        let window = self.inner.progress_window?;
        let progressed = *lock(&self.inner.progressed);
        let elapsed = progressed.elapsed();
        if elapsed <= window {
            return None;
        }
        let deadline = progressed + window;
        let explained = self
            .under_way()
            .values()
            .any(|started| *started <= deadline);
        (!explained).then_some(elapsed)
    }

    /// Marks a piece of work as under way until the returned guard is dropped.
    pub fn work(&self) -> Work {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.under_way().insert(id, Instant::now());
        Work {
            inner: self.inner.clone(),
            id,
        }
    }

    /// How long the oldest piece of work under way has been going, if any is.
    fn oldest_work(&self) -> Option<Duration> {
        self.under_way().values().min().map(Instant::elapsed)
    }

    /// How long the oldest work has been under way, when that is longer than `stall_limit`.
    fn stalled(&self, stall_limit: Duration) -> Option<Duration> {
        self.oldest_work().filter(|elapsed| *elapsed > stall_limit)
    }

    fn under_way(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        lock(&self.inner.under_way)
    }
}

/// Locks `mutex`; a panic elsewhere while it was held leaves plain data, still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Work {
    fn drop(&mut self) {
        lock(&self.inner.under_way).remove(&self.id);
    }
}

/// Tells systemd the daemon is stopping (after SIGTERM), so `systemctl status` says so.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

async fn feed_watchdog(liveness: Liveness, every: Duration, stall_limit: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    let mut stalled = false;
    loop {
        ticks.tick().await;
        match liveness.stalled(stall_limit) {
            Some(elapsed) => {
                if !stalled {
                    tracing::error!(
                        ?elapsed,
                        "work under way for longer than the stall limit: no longer feeding the watchdog, systemd will restart the daemon"
                    );
                }
                stalled = true;
            }
            None => {
                stalled = false;
                notify(&[NotifyState::Watchdog]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_under_way_until_its_guard_drops() {
        let liveness = Liveness::default();
        assert_eq!(liveness.oldest_work(), None);
        let first = liveness.work();
        let second = liveness.work();
        assert!(liveness.oldest_work().is_some());
        drop(first);
        assert!(liveness.oldest_work().is_some());
        drop(second);
        assert_eq!(liveness.oldest_work(), None);
    }

    #[test]
    fn ready_once_told_and_not_while_stalled() {
        let liveness = Liveness::with_limits(Duration::from_millis(20), None);
        assert_eq!(liveness.readiness(), Readiness::Starting);
        liveness.ready("test");
        assert_eq!(liveness.readiness(), Readiness::Ready);
        let work = liveness.work();
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(liveness.readiness(), Readiness::Stalled(_)));
        drop(work);
        assert_eq!(liveness.readiness(), Readiness::Ready);
    }

    #[test]
    fn only_work_under_way_too_long_is_a_stall() {
        let liveness = Liveness::default();
        let limit = Duration::from_millis(20);
        assert_eq!(liveness.stalled(limit), None, "idle is not stalled");
        let work = liveness.work();
        assert_eq!(liveness.stalled(limit), None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(liveness.stalled(limit).is_some());
        drop(work);
        assert_eq!(liveness.stalled(limit), None);
    }

    /// Backdates the last progress of `liveness` by `ago`: no sleeping, no timing.
    fn progressed_ago(liveness: &Liveness, ago: Duration) -> Instant {
        let at = Instant::now().checked_sub(ago).expect("the clock runs");
        *lock(&liveness.inner.progressed) = at;
        at
    }

    #[test]
    fn not_ready_without_progress_unless_work_started_in_time_explains_it() {
        let window = Duration::from_secs(30);
        let liveness = Liveness::with_limits(STALL_LIMIT, Some(window));
        liveness.ready("test");
        assert_eq!(liveness.readiness(), Readiness::Ready);
        let progressed = progressed_ago(&liveness, window * 2);
        assert!(matches!(liveness.readiness(), Readiness::NoProgress(_)));
        let late_attempt = liveness.work();
        assert!(
            matches!(liveness.readiness(), Readiness::NoProgress(_)),
            "work started after the window does not explain the silence"
        );
        drop(late_attempt);
        let long_load = liveness.work();
        liveness
            .under_way()
            .insert(long_load.id, progressed + Duration::from_secs(1));
        assert_eq!(
            liveness.readiness(),
            Readiness::Ready,
            "work started within the window does"
        );
        drop(long_load);
        assert!(matches!(liveness.readiness(), Readiness::NoProgress(_)));
        liveness.progress();
        assert_eq!(liveness.readiness(), Readiness::Ready);
    }

    #[test]
    fn without_a_progress_window_idle_is_ready() {
        let liveness = Liveness::with_limits(STALL_LIMIT, None);
        liveness.ready("test");
        progressed_ago(&liveness, Duration::from_secs(3600));
        assert_eq!(liveness.readiness(), Readiness::Ready);
    }
}
