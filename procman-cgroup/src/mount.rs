//! Finding the cgroup2 mount: `/proc/self/mountinfo`, checked with statfs
//! `CGROUP2_SUPER_MAGIC`, and where each controller is bound to a v1 hierarchy instead
//! (hybrid hosts).
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Result};
use crate::fs::read_word_set;
use crate::key::Controller;

/// Where the kernel tells us what is mounted.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of /proc/self/mountinfo (only the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Root of the mount within the filesystem (field 4).
    pub root: PathBuf,
    /// Mount point (field 5), with `\040`-style escapes decoded.
    pub mount_point: PathBuf,
    /// Per-mount options (field 6), e.g. `rw,nosuid,nodev,noexec,relatime`.
    pub mount_options: String,
    /// Filesystem type (first field after ` - `).
    pub fs_type: String,
    /// Super options (last field), e.g. `rw,memory` for a v1 memory hierarchy.
    pub super_options: String,
}

/// Decodes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash)
/// the kernel uses in mountinfo paths.
fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Parses /proc/self/mountinfo text. Malformed lines are skipped (the kernel writes this file;
/// a line we cannot read is not ours to judge).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 || post.len() < 3 {
                return None;
            }
            Some(MountEntry {
                root: unescape_mountinfo(pre[3]),
                mount_point: unescape_mountinfo(pre[4]),
                mount_options: pre[5].to_string(),
                fs_type: post[0].to_string(),
                super_options: post[2].to_string(),
            })
        })
        .collect()
}

/// Picks the cgroup2 mount from parsed mountinfo: the first `cgroup2` mount whose root is `/`
/// (a bind mount of a sub-cgroup would hide the rest of the tree), else the first at all.
pub fn pick_cgroup2(entries: &[MountEntry]) -> Option<&MountEntry> {
    let mut v2 = entries.iter().filter(|e| e.fs_type == "cgroup2");
    let all: Vec<&MountEntry> = v2.by_ref().collect();
    all.iter()
        .find(|e| e.root == Path::new("/"))
        .or_else(|| all.first())
        .copied()
}

/// Where a v1 hierarchy that binds `controller` is mounted (hybrid layouts), if any.
pub fn v1_mount_of(entries: &[MountEntry], controller: Controller) -> Option<PathBuf> {
    entries
        .iter()
        .find(|e| {
            e.fs_type == "cgroup"
                && e.super_options
                    .split(',')
                    .any(|o| o == controller.v1_name())
        })
        .map(|e| e.mount_point.clone())
}

/// Checks with statfs that `path` is a cgroup2 filesystem.
// f_type's C type differs between architectures; the casts are no-ops on x86_64 only.
#[allow(clippy::unnecessary_cast)]
pub fn check_cgroup2(path: &Path) -> Result<()> {
    let st = nix::sys::statfs::statfs(path)
        .map_err(|e| CgroupError::io("statfs", path, io::Error::from(e)))?;
    let t = st.filesystem_type().0 as i64;
    if t != libc::CGROUP2_SUPER_MAGIC as i64 {
        return Err(CgroupError::NotCgroup2 {
            path: path.to_path_buf(),
            fs_type: t,
        });
    }
    Ok(())
}

/// The cgroup2 mount of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// The mount point, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified` (hybrid).
    pub path: PathBuf,
    /// Where each of procman's controllers is bound to a v1 hierarchy instead (hybrid hosts).
    pub v1_mounts: Vec<(Controller, PathBuf)>,
}

impl Cgroup2Mount {
    /// Finds the cgroup2 mount in /proc/self/mountinfo and checks it with statfs.
    pub fn discover() -> Result<Cgroup2Mount> {
        let text =
            fs::read_to_string(MOUNTINFO).map_err(|e| CgroupError::io("reading", MOUNTINFO, e))?;
        let entries = parse_mountinfo(&text);
        let found = pick_cgroup2(&entries).ok_or_else(|| CgroupError::NoCgroup2Mount {
            mountinfo: PathBuf::from(MOUNTINFO),
        })?;
        check_cgroup2(&found.mount_point)?;
        Ok(Cgroup2Mount {
            path: found.mount_point.clone(),
            v1_mounts: v1_mounts(&entries),
        })
    }

    /// Uses `path` as the cgroup2 mount after checking it with statfs.
    pub fn at(path: impl Into<PathBuf>) -> Result<Cgroup2Mount> {
        let path = path.into();
        check_cgroup2(&path)?;
        let v1 = fs::read_to_string(MOUNTINFO)
            .map(|t| v1_mounts(&parse_mountinfo(&t)))
            .unwrap_or_default();
        Ok(Cgroup2Mount {
            path,
            v1_mounts: v1,
        })
    }

    /// Uses `path` as a cgroup2 mount WITHOUT checking it: for unit tests over a fake
    /// cgroupfs in a temp dir. Never proof of enforcement.
    pub fn fake(path: impl Into<PathBuf>) -> Cgroup2Mount {
        Cgroup2Mount {
            path: path.into(),
            v1_mounts: Vec::new(),
        }
    }

    /// This mount's line of /proc/self/mountinfo, read now (options change with a remount).
    pub fn entry(&self) -> Result<MountEntry> {
        let text =
            fs::read_to_string(MOUNTINFO).map_err(|e| CgroupError::io("reading", MOUNTINFO, e))?;
        parse_mountinfo(&text)
            .into_iter()
            .rev() // the last mount on a path is the visible one
            .find(|e| e.fs_type == "cgroup2" && e.mount_point == self.path)
            .ok_or_else(|| CgroupError::NoCgroup2Mount {
                mountinfo: PathBuf::from(MOUNTINFO),
            })
    }

    /// Whether the mount has `favordynmods` now.
    pub fn favordynmods(&self) -> Result<bool> {
        Ok(self.entry()?.has_favordynmods())
    }

    /// Remounts with `favordynmods` added (every other option kept) unless it is there
    /// already. Refuses a kernel older than 6.0 before trying; checks mountinfo afterwards.
    /// Changes a mount the whole host shares: only on the operator's explicit request.
    pub fn ensure_favordynmods(&self) -> Result<FavorDynmods> {
        let entry = self.entry()?;
        if entry.has_favordynmods() {
            return Ok(FavorDynmods::AlreadyOn);
        }
        let release = kernel_release();
        if parse_release(&release).is_some_and(|v| v < FAVORDYNMODS_SINCE) {
            return Err(CgroupError::FavorDynmodsUnsupported { release });
        }
        let (flags, data) = entry.favordynmods_remount();
        let fail = |source: io::Error| CgroupError::Remount {
            path: self.path.clone(),
            options: data.clone(),
            source,
        };
        nix::mount::mount(
            None::<&str>,
            &self.path,
            None::<&str>,
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| fail(io::Error::from(e)))?;
        if !self.favordynmods()? {
            return Err(fail(io::Error::other(
                "the remount succeeded but mountinfo does not show favordynmods",
            )));
        }
        Ok(FavorDynmods::Remounted)
    }

    /// Controllers the kernel offers in this hierarchy (root `cgroup.controllers`).
    pub fn root_controllers(&self) -> Result<BTreeSet<String>> {
        read_word_set(&self.path.join("cgroup.controllers"))
    }
}

/// The cgroup2 mount option that makes migrations (a write to `cgroup.procs`) skip the RCU
/// grace period `cgroup_threadgroup_rwsem` otherwise waits for, at some cost to fork and exit.
pub const FAVORDYNMODS: &str = "favordynmods";

/// The first kernel that knows [`FAVORDYNMODS`].
pub const FAVORDYNMODS_SINCE: (u32, u32) = (6, 0);

impl MountEntry {
    /// Whether the superblock has `favordynmods` (the kernel shows it in the super options;
    /// `CONFIG_CGROUP_FAVOR_DYNMODS=y` turns it on by default, and it shows there too).
    pub fn has_favordynmods(&self) -> bool {
        self.super_options.split(',').any(|o| o == FAVORDYNMODS)
    }

    /// The `mount(2)` arguments that remount this cgroup2 mount with `favordynmods` added and
    /// nothing else changed: the per-mount flags (a remount resets the ones not given) and the
    /// superblock options (cgroup2 clears the root flags a reconfigure does not name, e.g.
    /// `nsdelegate`, `memory_recursiveprot`).
    pub fn favordynmods_remount(&self) -> (nix::mount::MsFlags, String) {
        use nix::mount::MsFlags;
        let mut flags = MsFlags::MS_REMOUNT;
        for o in self.mount_options.split(',') {
            flags |= match o {
                "ro" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                "strictatime" => MsFlags::MS_STRICTATIME,
                _ => MsFlags::empty(),
            };
        }
        let mut data: Vec<&str> = self
            .super_options
            .split(',')
            .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
            .collect();
        if !data.contains(&FAVORDYNMODS) {
            data.push(FAVORDYNMODS);
        }
        (flags, data.join(","))
    }
}

/// Parses a kernel release (`6.1.0-28-amd64`, `6.18.3`) into (major, minor).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What [`Cgroup2Mount::ensure_favordynmods`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FavorDynmods {
    /// The mount already had it: nothing was changed.
    AlreadyOn,
    /// The mount was remounted with it.
    Remounted,
}

fn v1_mounts(entries: &[MountEntry]) -> Vec<(Controller, PathBuf)> {
    Controller::ALL
        .into_iter()
        .filter_map(|c| v1_mount_of(entries, c).map(|p| (c, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_mountinfo() {
        let e = parse_mountinfo(HYBRID);
        assert_eq!(e.len(), 6);
        let m = pick_cgroup2(&e).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            v1_mount_of(&e, Controller::Io).unwrap(),
            Path::new("/sys/fs/cgroup/blkio")
        );
        assert_eq!(
            v1_mount_of(&e, Controller::Memory).unwrap(),
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(v1_mounts(&e).len(), 4);
    }

    #[test]
    fn unified_mountinfo_with_optional_fields_and_escapes() {
        let text = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
99 25 0:23 /sub /mnt/with\\040space rw - cgroup2 cgroup2 rw
garbage line
";
        let e = parse_mountinfo(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].mount_point, Path::new("/mnt/with space"));
        assert_eq!(e[1].root, Path::new("/sub"));
        // The full-tree mount wins over a bind mount of a sub-cgroup.
        assert_eq!(
            pick_cgroup2(&e).unwrap().mount_point,
            Path::new("/sys/fs/cgroup")
        );
        assert!(v1_mounts(&e).is_empty());
    }

    #[test]
    fn favordynmods_is_read_from_the_super_options_and_added_on_remount() {
        let e = parse_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n",
        );
        assert_eq!(e[0].mount_options, "rw,nosuid,nodev,noexec,relatime");
        assert!(!e[0].has_favordynmods());
        assert!(e[1].has_favordynmods());
        use nix::mount::MsFlags;
        let (flags, data) = e[0].favordynmods_remount();
        assert_eq!(
            flags,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        // the root flags a cgroup2 reconfigure would otherwise clear are kept
        assert_eq!(data, "nsdelegate,memory_recursiveprot,favordynmods");
        // already there: not added twice
        assert_eq!(e[1].favordynmods_remount().1, "nsdelegate,favordynmods");
        let bare = parse_mountinfo("41 31 0:38 / /x ro - cgroup2 cgroup2 rw\n");
        let (flags, data) = bare[0].favordynmods_remount();
        assert_eq!(flags, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
        assert_eq!(data, "favordynmods");
    }

    #[test]
    fn favordynmods_refusals_say_why_and_what_to_do() {
        let e = CgroupError::FavorDynmodsUnsupported {
            release: "5.15.0-91-generic".into(),
        }
        .to_string();
        assert!(e.contains("5.15.0-91-generic") && e.contains("6.0"), "{e}");
        assert!(e.contains("\"auto\""), "{e}");
        let e = CgroupError::Remount {
            path: "/sys/fs/cgroup".into(),
            options: "nsdelegate,favordynmods".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        assert!(
            e.contains("/sys/fs/cgroup") && e.contains("nsdelegate,favordynmods"),
            "{e}"
        );
        assert!(e.contains("unchanged") && e.contains("\"auto\""), "{e}");
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.18.3"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert!(parse_release("5.15.0").unwrap() < FAVORDYNMODS_SINCE);
        assert!(parse_release("6.0").unwrap() >= FAVORDYNMODS_SINCE);
        assert_eq!(parse_release("junk"), None);
    }

    #[test]
    fn no_cgroup2_in_mountinfo() {
        let e = parse_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
        assert!(pick_cgroup2(&e).is_none());
        assert!(parse_mountinfo("").is_empty());
    }

    #[test]
    fn statfs_refuses_a_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        let err = check_cgroup2(d.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CgroupError::NotCgroup2 { .. }), "{msg}");
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
        assert!(msg.contains("CGROUP2_SUPER_MAGIC"), "{msg}");
    }
}
