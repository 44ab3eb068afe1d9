//! The fuser adapter: the only module that imports fuser.
//!
//! Each kernel request calls the [`Vfs`] core, converts its types, and replies; a core error
//! becomes its errno here, and only here, with a log line for the ones a user would need
//! explained (EIO). Several fuser threads serve requests, so a download blocks only the thread
//! that waits for it. Content is immutable, so the kernel is told to cache hard: long TTLs,
//! `FOPEN_KEEP_CACHE`, readdirplus.
//!
//! Every operation medimg does not serve is answered here, quietly (fuser's defaults log a
//! warning per request): `ioctl` with ENOTTY at once (Python's `open()` asks `isatty()` for
//! every file, 10,000 times an epoch); the optional ones with ENOSYS, which the kernel
//! remembers per mount and stops sending (`getxattr`, `listxattr`, `access`, `poll`, `lseek`,
//! `fsync`, `bmap`, locks, `copy_file_range`); changes with EROFS, which the kernel usually
//! answers itself on a read-only mount. No request logs a line on its success path.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner,
    MountOption, OpenFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyAttr, ReplyBmap,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    SessionACL, TimeOrNow, WriteFlags,
};

use crate::metrics::FuseTimes;
use crate::read::PageSink;
use crate::vfs::{Attr, DirItem, Kind, Vfs, VfsError, file_ino};

/// How long the kernel may trust names and attributes: the tree changes only with a new
/// catalog, which needs a remount anyway.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Answer `open` with ENOSYS (see [`Filesystem::open`] below).
const NO_OPEN: bool = true;
/// Entries asked from the core per readdir call. A kernel buffer takes a few dozen to a few
/// hundred; what it has no room for is kept for the call that continues the listing.
const READDIR_BATCH: usize = 256;
/// Kernel read-ahead per file: 8 MiB keeps several reads of a sequential reader in flight at once
/// (a FUSE read is at most 1 MiB, `max_pages` 256), so their answers overlap. The kernel takes
/// the smaller of this and the mount's `read_ahead_kb`, which starts at 128 KiB: see
/// [`raise_readahead`].
const MAX_READAHEAD: u32 = 8 << 20;
/// Kernel requests in flight at once (default 12): DataLoader workers issue many reads at once.
const MAX_BACKGROUND: u16 = 64;

/// A mounted filesystem; dropping it unmounts.
pub struct Mounted {
    session: fuser::BackgroundSession,
    busy: Arc<AtomicUsize>,
    failures: Arc<crate::logs::Summarised>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mounted")
    }
}

impl Mounted {
    /// Kernel requests being answered now (lookups, listings and reads that may wait on an
    /// upstream): a clean stop lets them finish before it unmounts.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// A handle on [`Mounted::busy`] for other threads (`medimg status`).
    pub fn busy_counter(&self) -> Arc<AtomicUsize> {
        self.busy.clone()
    }

    /// Whether the kernel side has gone (unmounted from outside with `fusermount3 -u`).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmount (if still mounted) and wait for the worker threads.
    pub fn unmount(self) -> std::io::Result<()> {
        self.failures.flush();
        if self.session.guard.is_finished() {
            return self.session.join();
        }
        self.session.umount_and_join()
    }
}

/// Mount `vfs` read-only at `mountpoint` with `threads` workers.
pub fn mount(
    vfs: Arc<Vfs>,
    mountpoint: &Path,
    threads: usize,
    allow_other: bool,
    times: FuseTimes,
) -> std::io::Result<Mounted> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("medimg".into()),
        MountOption::Subtype("medimg".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    config.acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(threads.max(1));
    config.clone_fd = true;
    // Resolved before mounting: afterwards, resolving it would ask this very daemon.
    let resolved = mountpoint.canonicalize()?;
    let busy = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(crate::logs::Summarised::default());
    let adapter = Adapter {
        vfs: vfs.clone(),
        busy: busy.clone(),
        times,
        failures: failures.clone(),
    };
    let session = fuser::spawn_mount(adapter, mountpoint, &config)?;
    vfs.start_push(Arc::new(KernelPages(session.notifier())));
    raise_readahead(&resolved);
    Ok(Mounted {
        session,
        busy,
        failures,
    })
}

/// Lift the mount's read-ahead from the kernel's 128 KiB to [`MAX_READAHEAD`].
///
/// A FUSE mount's backing device starts with `read_ahead_kb` 128 and the kernel caps the
/// `max_readahead` the daemon asks for at it, so a sequential reader's 1 MiB `read`s reach the
/// daemon as 128 KiB requests, one after another (measured: 4,096 requests for a 512 MB file
/// instead of 512). The device comes from `/proc/self/mountinfo`, not from a `stat` of the
/// mountpoint, which would ask this very daemon. Writing the sysfs knob needs root; without it
/// the mount works, only slower for large files, and the log says how to raise it.
fn raise_readahead(mountpoint: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(dev) = mountinfo_device(&info, &mountpoint.to_string_lossy()) else {
        tracing::debug!("no mountinfo line for {}", mountpoint.display());
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    let kb = (MAX_READAHEAD / 1024).to_string();
    if let Err(e) = std::fs::write(&knob, &kb) {
        tracing::info!(
            "large files read faster with more kernel read-ahead: `echo {kb} > {knob}` as root \
             ({e})"
        );
    }
}

/// The device field of the last FUSE mount at `mountpoint` in mountinfo text (the last: a mount
/// over an earlier one hides it). The type reads `fuse`, or `fuse.medimg` when `fusermount3`
/// mounted it. Mount points are octal-escaped there (`\040` a space).
fn mountinfo_device(info: &str, mountpoint: &str) -> Option<String> {
    info.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let dev = f.nth(2)?;
            let point = f.nth(1)?;
            let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
            (matches!(fstype, "fuse" | "fuse.medimg") && unescape_mountinfo(point) == mountpoint)
                .then(|| dev.to_string())
        })
        .next_back()
}

/// Whether a medimg mount sits at `mountpoint` (absolute), from `/proc/self/mountinfo`.
pub fn is_medimg_mount(mountpoint: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    medimg_mount_in(&info, &mountpoint.to_string_lossy())
}

/// Whether mountinfo text has a medimg mount (FUSE, source `medimg`) at `point`.
fn medimg_mount_in(info: &str, point: &str) -> bool {
    info.lines().any(|line| {
        let at = line.split(' ').nth(4).map(unescape_mountinfo);
        let mut tail = line.split(" - ").nth(1).unwrap_or("").split(' ');
        let (fstype, source) = (tail.next().unwrap_or(""), tail.next().unwrap_or(""));
        at.as_deref() == Some(point) && fstype.starts_with("fuse") && source == "medimg"
    })
}

/// How long a mount's daemon has to answer a `statfs` before a restart takes it for hung.
const LIVENESS_WAIT: Duration = Duration::from_secs(3);

/// `statfs` of `path` on a thread of its own: its errno, or `None` if no answer came within
/// `wait` (the thread is left blocked in the kernel until the connection is aborted).
fn statfs_within(path: &Path, wait: Duration) -> Option<std::io::Result<()>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: a valid C string and a zeroed out-struct of the right type.
        let r = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::statfs(c.as_ptr(), &mut st)
        };
        let _ = tx.send(if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        });
    });
    rx.recv_timeout(wait).ok()
}

/// Abort the FUSE connection of the mount at `point` through fusectl (mounting it if needed):
/// every request waiting on it ends, and the mount answers ENOTCONN. Needs root.
fn abort_connection(point: &str) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dev = mountinfo_device(&info, point).ok_or("no mountinfo line")?;
    let minor = dev.rsplit(':').next().unwrap_or_default();
    let dir = Path::new("/sys/fs/fuse/connections");
    let knob = dir.join(minor).join("abort");
    if !knob.exists() {
        // SAFETY: valid C strings; mounting fusectl only exposes the connections' knobs.
        unsafe {
            libc::mount(
                c"fusectl".as_ptr(),
                c"/sys/fs/fuse/connections".as_ptr(),
                c"fusectl".as_ptr(),
                0,
                std::ptr::null(),
            );
        }
    }
    std::fs::write(&knob, "1").map_err(|e| {
        format!(
            "{}: {e}; as root: `echo 1 > {}` (mount -t fusectl none {} first if it is missing)",
            knob.display(),
            knob.display(),
            dir.display()
        )
    })
}

/// Clean up a mount at `mountpoint` left by a medimg daemon that died, so that a restart mounts
/// again. Returns whether there was one. A dead mount answers "Transport endpoint is not
/// connected"; one whose daemon was killed while a thread of it waited in the kernel (a page
/// push waiting on a page a reader holds) answers nothing at all: when `statfs` gets no answer
/// within [`LIVENESS_WAIT`] and the daemon of `cache_dir` does not answer on its control
/// socket either, its connection is aborted first. A dead mount of another filesystem is left
/// alone, with an error saying so.
pub fn recover_dead_mount(mountpoint: &Path, cache_dir: &Path) -> Result<bool, String> {
    let abs = std::path::absolute(mountpoint).map_err(|e| e.to_string())?;
    let point = abs.to_string_lossy().to_string();
    let medimg = is_medimg_mount(&abs);
    match statfs_within(&abs, LIVENESS_WAIT) {
        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        None if medimg && !crate::control::answers(cache_dir, LIVENESS_WAIT) => {
            abort_connection(&point).map_err(|e| {
                format!(
                    "{point} is held by a medimg daemon that died with requests in flight; \
                     abort its connection: {e}"
                )
            })?;
            tracing::warn!(
                "{point}: the medimg daemon that mounted it died with requests in flight (its \
                 connection hung); aborted the connection"
            );
        }
        _ => return Ok(false),
    }
    if !medimg {
        return Err(format!(
            "{point} is a dead mount of another filesystem (\"Transport endpoint is not \
             connected\"); unmount it first (fusermount3 -u {point})"
        ));
    }
    let unmounted = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(&abs)
        .status()
        .is_ok_and(|s| s.success());
    // As root without fuse3's tools, unmount it directly (lazily: it answers nothing anyway).
    let unmounted = unmounted || {
        let c = std::ffi::CString::new(point.as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: a valid C string; umount2 only acts on the mount table.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
    };
    if !unmounted {
        return Err(format!(
            "{point} was left mounted by a medimg daemon that died, and cannot be unmounted \
             from here; run `fusermount3 -uz {point}` as the user who mounted it"
        ));
    }
    tracing::info!("{point} was left mounted by a medimg daemon that died; unmounted it");
    Ok(true)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Adapter {
    vfs: Arc<Vfs>,
    /// Requests in progress ([`Mounted::busy`]).
    busy: Arc<AtomicUsize>,
    /// How long each operation takes (the metrics).
    times: FuseTimes,
    /// Failure lines, a repeated kind summarised.
    failures: Arc<crate::logs::Summarised>,
}

/// Counts a request as in progress while it lives, and times it.
struct Busy<'a> {
    adapter: &'a Adapter,
    op: &'static str,
    started: std::time::Instant,
}

impl Adapter {
    fn begin(&self, op: &'static str) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy {
            adapter: self,
            op,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.adapter.busy.fetch_sub(1, Ordering::Relaxed);
        self.adapter
            .times
            .observe(self.op, self.started.elapsed().as_secs_f64());
    }
}

/// The kernel's page cache of medimg's files, filled ahead of reads (FUSE notify-store).
struct KernelPages(fuser::Notifier);

impl PageSink for KernelPages {
    fn store(&self, row: i64, data: &[u8]) -> bool {
        match self.0.store(INodeNo(file_ino(row)), 0, data) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("page-cache push of row {row}: {e}");
                false
            }
        }
    }

    fn forget(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            tracing::debug!("invalidating inode {ino}: {e}");
        }
    }
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl Adapter {
    /// The errno for `e`, with one log line (and an entry in `medimg status`) if it is worth one.
    fn errno(&self, op: &str, ino: u64, e: &VfsError) -> Errno {
        if e.is_loggable() {
            let line = format!("{op} (inode {ino:#x}): {e}");
            let kind = format!("{}:{}", e.errno(), e.dataset().unwrap_or(""));
            self.failures.error(&kind, &line);
            self.vfs.note_failure(line);
        }
        Errno::from_i32(e.errno())
    }
}

fn name_str(name: &OsStr) -> Option<&str> {
    name.to_str()
}

impl Adapter {
    /// The kernel's buffer filled at item `k`: keep the items it did not take for the request
    /// that continues after item `k - 1`, so that request needs no query.
    fn keep_rest(&self, ino: u64, offset: u64, items: &mut Vec<DirItem>, k: usize) {
        let after = if k == 0 { offset } else { items[k - 1].next };
        let rest = items.split_off(k);
        self.vfs.keep_listing(ino, after, rest);
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Every listing carries attributes (no READDIRPLUS_AUTO): with AUTO the kernel lists
        // plainly after the first buffer, and the `ls -l` or `open` that follows a `find` pays
        // one LOOKUP round trip per entry (measured: 20,000 of them, 0.8-1.0 s, against 0.1 s).
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            if config.add_capabilities(cap).is_err() {
                tracing::debug!("kernel lacks {cap:?}");
            }
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
        // Sequential readers of volumes want the kernel to keep several 1 MiB reads in flight.
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _busy = self.begin("lookup");
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        match self.vfs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(self.errno("lookup", parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _busy = self.begin("getattr");
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(self.errno("getattr", ino.0, &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No-open mode: ENOSYS tells the kernel that open and release are not needed. It stops
        // sending them for every file, keeps the page cache across opens (its default for
        // no-open), and reads come with fh 0, which the core serves from a per-inode handle.
        // The FUSE floor measured 15-35 % more files per second this way when warm.
        if NO_OPEN {
            return reply.error(Errno::ENOSYS);
        }
        match self.vfs.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(self.errno("open", ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _busy = self.begin("read");
        match self.vfs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.errno("read", ino.0, &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vfs.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written. ENOSYS tells the kernel never to send a flush again, which
        // saves a round trip on every close().
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.vfs.getattr(ino.0) {
            Ok(a) if a.kind == Kind::Dir => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(self.errno("opendir", ino.0, &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _busy = self.begin("readdir");
        match self.vfs.readdir(ino.0, offset, READDIR_BATCH) {
            Ok(mut items) => {
                for (k, it) in items.iter().enumerate() {
                    let kind = match it.attr.kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                    };
                    if reply.add(INodeNo(it.attr.ino), it.next, kind, &it.name) {
                        self.keep_rest(ino.0, offset, &mut items, k);
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(self.errno("readdir", ino.0, &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _busy = self.begin("readdirplus");
        match self.vfs.readdir(ino.0, offset, READDIR_BATCH) {
            Ok(mut items) => {
                for (k, it) in items.iter().enumerate() {
                    // A provisional entry's size is not known: the kernel must ask again.
                    let ttl = if it.provisional { Duration::ZERO } else { TTL };
                    let full = reply.add(
                        INodeNo(it.attr.ino),
                        it.next,
                        &it.name,
                        &ttl,
                        &file_attr(&it.attr),
                        Generation(0),
                    );
                    if full {
                        self.keep_rest(ino.0, offset, &mut items, k);
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(self.errno("readdirplus", ino.0, &e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // A file is not a terminal: the answer `isatty()` wants, without a round of logging.
        reply.error(Errno::ENOTTY);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, r: ReplyXattr) {
        r.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // The kernel then seeks by itself (no holes: SEEK_DATA/SEEK_HOLE see one extent).
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _bs: u32, _idx: u64, reply: ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // The kernel copies through read and write instead (into another filesystem).
        reply.error(Errno::ENOSYS);
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (limit, used) = self.vfs.cache_usage();
        // Report the cache as the filesystem's size: what `df` shows is what medimg may keep.
        let bsize = 4096u64;
        reply.statfs(
            limit / bsize,
            limit.saturating_sub(used) / bsize,
            limit.saturating_sub(used) / bsize,
            0,
            0,
            bsize as u32,
            255,
            bsize as u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_names_the_medimg_mount_device() {
        let info = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:39 / /tmp/my\\040data rw,nosuid shared:20 - fuse.medimg medimg ro,user_id=0
41 22 0:40 / /tmp/other rw,nosuid shared:21 - fuse.sshfs host: rw
43 40 0:41 / /tmp/my\\040data rw,nosuid shared:22 - fuse medimg ro,user_id=0
";
        assert_eq!(
            mountinfo_device(info, "/tmp/my data").as_deref(),
            Some("0:41")
        );
        assert_eq!(mountinfo_device(info, "/tmp/other"), None);
        assert_eq!(mountinfo_device(info, "/"), None);
    }
}
