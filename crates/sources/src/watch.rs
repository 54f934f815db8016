//! Wake-ups for the tailer: inotify watches on the *directories* that hold the
//! followed files (so creation, rename and deletion of a file are seen, not
//! just writes to an open one). The tailer never trusts these events for
//! correctness: every pass stats every followed path, and [`Watcher::wait`]
//! always returns by its timeout, which is the stat-poll safety net for
//! filesystems where inotify says nothing (NFS, some overlays) and for queue
//! overflows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};

/// What a batch of events said.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wake {
    /// Some event arrived (a write, a rename...).
    pub(crate) any: bool,
    /// A file appeared, moved or vanished, or the queue overflowed: the globs
    /// should be re-scanned.
    pub(crate) structural: bool,
}

pub(crate) struct Watcher {
    inotify: Option<Inotify>,
    dirs: HashMap<PathBuf, WatchDescriptor>,
    buf: Vec<u8>,
}

impl Watcher {
    pub(crate) fn new() -> Self {
        let inotify = match Inotify::init() {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; files are polled by stat only (raise fs.inotify.max_user_instances to fix)");
                None
            }
        };
        Self {
            inotify,
            dirs: HashMap::new(),
            buf: vec![0; 16 * 1024],
        }
    }

    /// Watches `dir` if it is not watched yet. A missing directory is not an
    /// error: the caller asks again on its next pass.
    pub(crate) fn watch_dir(&mut self, dir: &Path) {
        let Some(ino) = self.inotify.as_mut() else {
            return;
        };
        if self.dirs.contains_key(dir) {
            return;
        }
        let mask = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        match ino.watches().add(dir, mask) {
            Ok(wd) => {
                self.dirs.insert(dir.to_path_buf(), wd);
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory yet")
            }
        }
    }

    /// Reads every queued event without blocking.
    pub(crate) fn drain(&mut self) -> Wake {
        let mut wake = Wake::default();
        let Some(ino) = self.inotify.as_mut() else {
            return wake;
        };
        loop {
            let events = match ino.read_events(&mut self.buf) {
                Ok(ev) => ev,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "reading inotify events failed");
                    wake.structural = true;
                    break;
                }
            };
            let mut n = 0;
            let mut gone = Vec::new();
            for ev in events {
                n += 1;
                wake.any = true;
                if ev.mask.intersects(
                    EventMask::CREATE
                        | EventMask::MOVED_TO
                        | EventMask::MOVED_FROM
                        | EventMask::DELETE
                        | EventMask::Q_OVERFLOW
                        | EventMask::DELETE_SELF
                        | EventMask::MOVE_SELF
                        | EventMask::IGNORED,
                ) {
                    wake.structural = true;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    gone.push(ev.wd.clone());
                }
            }
            // The kernel dropped these watches (directory removed): forget
            // them so the next pass watches the directory again if it returns.
            self.dirs.retain(|_, wd| !gone.contains(wd));
            if n == 0 {
                break;
            }
        }
        wake
    }

    /// Blocks until an event arrives or `timeout` passes, then drains.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Wake {
        let Some(ino) = self.inotify.as_ref() else {
            std::thread::sleep(timeout);
            return Wake::default();
        };
        let ts = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(ino, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!(error = %e, "poll on inotify failed; sleeping instead");
                std::thread::sleep(timeout);
            }
        }
        self.drain()
    }
}
