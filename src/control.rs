//! `medimg status`: the running daemon answers questions on a Unix socket in its cache
//! directory (`control.sock`).
//!
//! Who may ask is checked twice: the cache directory is the daemon's user's alone (0700), and
//! the daemon reads each caller's credentials (`SO_PEERCRED`) and answers only its own user
//! and root. The protocol is one line asked (`status`, `ping`, `cache verify`, `cache clear all`,
//! `cache clear <dataset>`), one line answered (a JSON document, or `error: ...`), then the
//! connection closes; a caller that says nothing for a few seconds is dropped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's name in the cache directory.
pub const SOCKET: &str = "control.sock";

/// How long a caller may take to ask, and the daemon to answer.
const PATIENCE: Duration = Duration::from_secs(5);

/// How the daemon answers a request line: a JSON document, or what is wrong.
pub type Handler = Box<dyn Fn(&str) -> Result<serde_json::Value, String> + Send>;

/// The socket of the daemon whose cache is `cache_dir`.
pub fn socket_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(SOCKET)
}

/// Answer on `cache_dir`'s socket from a thread of its own, for the daemon's lifetime. A
/// socket left by a daemon that died is replaced (the cache lock says no other one runs).
pub fn serve(cache_dir: &Path, handler: Handler) -> std::io::Result<()> {
    let path = socket_path(cache_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    std::thread::Builder::new()
        .name("medimg-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, me, &handler) {
                    tracing::debug!("control socket: {e}");
                }
            }
        })?;
    Ok(())
}

fn answer(stream: UnixStream, me: u32, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    let uid = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.uid())
        .map_err(std::io::Error::from)?;
    let mut out = &stream;
    if uid != 0 && uid != me {
        tracing::info!(
            uid,
            "control socket: refused a user who is neither root nor the daemon's"
        );
        return writeln!(out, "error: only root and the daemon's own user may ask");
    }
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    match handler(line.trim()) {
        Ok(v) => writeln!(out, "{v}"),
        Err(e) => writeln!(out, "error: {e}"),
    }
}

/// Whether a daemon with cache `cache_dir` answers within `within` (one `ping`). A daemon
/// that died with threads stuck in the kernel still holds its socket open, so connecting is
/// not enough: the answer is.
pub fn answers(cache_dir: &Path, within: Duration) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket_path(cache_dir)) else {
        return false;
    };
    let mut answer = String::new();
    stream.set_read_timeout(Some(within)).is_ok()
        && writeln!(stream, "ping").is_ok()
        && BufReader::new(&stream)
            .read_line(&mut answer)
            .is_ok_and(|n| n > 0)
}

/// Ask the daemon whose cache is `cache_dir`: one request line, its JSON answer.
pub fn ask(cache_dir: &Path, request: &str) -> Result<serde_json::Value, String> {
    let path = socket_path(cache_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no medimg daemon answers at {} ({e}); is one running with this cache directory \
             (--cache-dir, or [cache] dir in --config)? Only root and the daemon's user may ask",
            path.display()
        )
    })?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    // Verifying a large cache takes a while: wait for it.
    let patience = if request.starts_with("cache") {
        None
    } else {
        Some(PATIENCE)
    };
    stream.set_read_timeout(patience).map_err(io)?;
    writeln!(stream, "{request}").map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if let Some(e) = answer.strip_prefix("error: ") {
        return Err(format!("the daemon says: {}", e.trim()));
    }
    serde_json::from_str(&answer).map_err(|e| format!("{}: not a status ({e})", path.display()))
}
