//! Running under systemd (`config/medimg.service`, `Type=notify`): readiness is announced once
//! the mount answers a `stat` of its root, the watchdog is fed only while it still answers, and
//! a stop is announced before the daemon drains and unmounts. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.
//!
//! The checks run on a thread of their own and go through the kernel like any user's `stat`:
//! a mount whose workers are all stuck stops feeding the watchdog, and systemd restarts the
//! daemon, whose next start cleans up the dead mount ([`crate::fuse::recover_dead_mount`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Set once the daemon stops: the watchdog thread looks at the mount no more.
static STOP: AtomicBool = AtomicBool::new(false);
/// Held by the watchdog thread while it looks at the mount (an open directory of the mount
/// makes the unmount fail with EBUSY).
static LOOKING: Mutex<()> = Mutex::new(());

/// Announce readiness once `mountpoint` answers, then feed the watchdog while it does.
pub fn announce(mountpoint: PathBuf) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("medimg-systemd".into())
        .spawn(move || {
            if let Err(e) = std::fs::metadata(&mountpoint) {
                tracing::warn!("the mount does not answer ({e}); not telling systemd it is ready");
                return;
            }
            notify(&[NotifyState::Ready, NotifyState::Status("mounted")]);
            let Some(every) = sd_notify::watchdog_enabled() else {
                return;
            };
            loop {
                std::thread::sleep(every / 2);
                let _looking = LOOKING.lock().unwrap_or_else(|p| p.into_inner());
                if STOP.load(Ordering::SeqCst) {
                    return;
                }
                match std::fs::read_dir(&mountpoint) {
                    Ok(_) => notify(&[NotifyState::Watchdog]),
                    Err(e) => {
                        tracing::warn!("the mount does not answer ({e}); not feeding the watchdog")
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the systemd thread: {e}");
    }
}

/// Tell systemd the daemon is stopping, and stop looking at the mount (waiting up to 2 s for
/// a look in progress, so that the unmount does not find the mount's root open).
pub fn stopping() {
    STOP.store(true, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match LOOKING.try_lock() {
            Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => break,
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(5))
            }
        }
    }
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
