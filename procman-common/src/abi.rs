//! The ring-buffer record, mirrored from `include/procman_event.h`.
//!
//! The layout test at the bottom compiles the C header with static asserts generated from this
//! file's offsets, so any drift fails `cargo test`.

pub const PM_COMM_LEN: usize = 16;
pub const PM_FILENAME_LEN: usize = 256;

pub const PM_EV_FORK: u32 = 1;
pub const PM_EV_EXEC: u32 = 2;
pub const PM_EV_EXIT: u32 = 3;

pub const PM_F_THREAD: u32 = 1;
pub const PM_F_URGENT: u32 = 2;
pub const PM_F_TRUNCATED: u32 = 4;
pub const PM_F_HELD: u32 = 8;

pub const PM_CNT_SUBMITTED: u32 = 0;
pub const PM_CNT_DROPPED: u32 = 1;
pub const PM_CNT_HELD: u32 = 2;
pub const PM_CNT_HOLD_FULL: u32 = 3;
pub const PM_CNT_MAX: u32 = 4;

/// `struct pm_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PmEvent {
    pub kind: u32,
    pub flags: u32,
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub exit_code: u32,
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub comm: [u8; PM_COMM_LEN],
    pub filename: [u8; PM_FILENAME_LEN],
}

/// `struct pm_hold`: value of the pinned `held` map (key: tgid), a task stopped at exec.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmHold {
    pub start_ns: u64,
    pub held_ns: u64,
}

/// `struct pm_sched_stat`: value of the `sched_stats` map (key: tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmSchedStat {
    pub oncpu_ns: u64,
    pub runq_ns: u64,
    pub runq_count: u64,
    pub runq_max_ns: u64,
}

pub const PM_TS_SCHED_INFO: u32 = 1;
pub const PM_TS_MAX_DELAY: u32 = 2;
pub const PM_TS_IO: u32 = 4;
pub const PM_TS_KTHREAD: u32 = 8;
pub const PM_TS_EXITING: u32 = 16;
pub const PM_TS_TRUNCATED: u32 = 32;

/// `struct pm_task_sample`: one process as the sampler's task iterator reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmTaskSample {
    pub tgid: u32,
    pub flags: u32,
    pub start_ns: u64,
    pub ts_ns: u64,
    pub prev_ts_ns: u64,
    pub oncpu_ns: u64,
    pub run_delay_ns: u64,
    pub pcount: u64,
    pub max_delay_ns: u64,
    pub rss_pages: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cgroup_id: u64,
    pub state: u32,
    pub exit_state: u32,
    pub nice: i32,
    pub nr_threads: u32,
}

impl PmTaskSample {
    pub const SIZE: usize = std::mem::size_of::<PmTaskSample>();

    /// Reads a record from the iterator's output. `None` if the buffer is too short.
    pub fn from_bytes(buf: &[u8]) -> Option<PmTaskSample> {
        if buf.len() < Self::SIZE {
            return None;
        }
        // SAFETY: PmTaskSample is repr(C), made only of integers (every bit pattern is valid),
        // and the length was checked; read_unaligned copes with any alignment.
        Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const PmTaskSample) })
    }

    /// The state letter /proc/PID/stat shows for these raw `__state` / `exit_state` values
    /// (fs/proc/array.c task_state_index: "RSDTtXZPI").
    pub fn state_char(&self) -> char {
        const TASK_REPORT: u32 = 0x7f;
        const TASK_UNINTERRUPTIBLE: u32 = 0x2;
        const TASK_NOLOAD: u32 = 0x400;
        const TASK_IDLE: u32 = TASK_UNINTERRUPTIBLE | TASK_NOLOAD;
        const TASK_RTLOCK_WAIT: u32 = 0x1000;
        const TASK_FROZEN: u32 = 0x8000;
        let mut st = (self.state | self.exit_state) & TASK_REPORT;
        if self.state & TASK_IDLE == TASK_IDLE {
            st = TASK_REPORT + 1; // TASK_REPORT_IDLE
        }
        if self.state & (TASK_RTLOCK_WAIT | TASK_FROZEN) != 0 {
            st = TASK_UNINTERRUPTIBLE; // reported as D, as /proc does
        }
        // fls(): index of the highest set bit, 1-based; 0 for none
        let idx = (32 - st.leading_zeros()) as usize;
        b"RSDTtXZPI".get(idx).map(|&c| c as char).unwrap_or('?')
    }
}

/// (field name, offset, size) of every `PmTaskSample` field, in declaration order.
pub fn task_sample_layout() -> Vec<(&'static str, usize, usize)> {
    use std::mem::{offset_of, size_of_val};
    let e = PmTaskSample::default();
    macro_rules! f {
        ($name:ident) => {
            (
                stringify!($name),
                offset_of!(PmTaskSample, $name),
                size_of_val(&e.$name),
            )
        };
    }
    vec![
        f!(tgid),
        f!(flags),
        f!(start_ns),
        f!(ts_ns),
        f!(prev_ts_ns),
        f!(oncpu_ns),
        f!(run_delay_ns),
        f!(pcount),
        f!(max_delay_ns),
        f!(rss_pages),
        f!(read_bytes),
        f!(write_bytes),
        f!(cgroup_id),
        f!(state),
        f!(exit_state),
        f!(nice),
        f!(nr_threads),
    ]
}

impl PmEvent {
    pub const SIZE: usize = std::mem::size_of::<PmEvent>();

    /// Reads a record from a ring-buffer sample. `None` if the sample is too short.
    pub fn from_bytes(buf: &[u8]) -> Option<PmEvent> {
        if buf.len() < Self::SIZE {
            return None;
        }
        // SAFETY: PmEvent is repr(C), made only of integers and byte arrays (every bit pattern
        // is valid), and the length was checked; read_unaligned copes with any alignment.
        Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const PmEvent) })
    }

    pub fn comm_str(&self) -> String {
        cstr_lossy(&self.comm)
    }

    pub fn filename_str(&self) -> String {
        cstr_lossy(&self.filename)
    }
}

/// Bytes up to the first NUL, as UTF-8 (lossy).
pub fn cstr_lossy(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// (field name, offset, size) of every field, in declaration order: what the layout test checks.
pub fn field_layout() -> Vec<(&'static str, usize, usize)> {
    use std::mem::{offset_of, size_of_val};
    let e = PmEvent::from_bytes(&[0u8; PmEvent::SIZE]).unwrap();
    macro_rules! f {
        ($name:ident) => {
            (
                stringify!($name),
                offset_of!(PmEvent, $name),
                size_of_val(&e.$name),
            )
        };
    }
    vec![
        f!(kind),
        f!(flags),
        f!(ts_ns),
        f!(pid),
        f!(tgid),
        f!(ppid),
        f!(uid),
        f!(gid),
        f!(exit_code),
        f!(cgroup_id),
        f!(start_ns),
        f!(comm),
        f!(filename),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// C source asserting, at compile time, that the header's layout equals the Rust one.
    fn assert_source() -> String {
        let mut s = String::from(
            "#include <stddef.h>\n#include <linux/types.h>\n#include \"procman_event.h\"\n",
        );
        let mut line = |cond: String, what: String| {
            s.push_str(&format!("_Static_assert({cond}, \"{what}\");\n"));
        };
        line(
            format!("sizeof(struct pm_event) == {}", PmEvent::SIZE),
            format!("sizeof(struct pm_event) != {} (Rust)", PmEvent::SIZE),
        );
        for (name, off, size) in field_layout() {
            line(
                format!("offsetof(struct pm_event, {name}) == {off}"),
                format!("{name}: offset differs from Rust ({off})"),
            );
            line(
                format!("sizeof(((struct pm_event *)0)->{name}) == {size}"),
                format!("{name}: size differs from Rust ({size})"),
            );
        }
        line(
            format!("sizeof(struct pm_task_sample) == {}", PmTaskSample::SIZE),
            format!(
                "sizeof(struct pm_task_sample) != {} (Rust)",
                PmTaskSample::SIZE
            ),
        );
        for (name, off, size) in task_sample_layout() {
            line(
                format!("offsetof(struct pm_task_sample, {name}) == {off}"),
                format!("pm_task_sample.{name}: offset differs from Rust ({off})"),
            );
            line(
                format!("sizeof(((struct pm_task_sample *)0)->{name}) == {size}"),
                format!("pm_task_sample.{name}: size differs from Rust ({size})"),
            );
        }
        let consts: [(&str, u64); 20] = [
            ("PM_COMM_LEN", PM_COMM_LEN as u64),
            ("PM_FILENAME_LEN", PM_FILENAME_LEN as u64),
            ("PM_EV_FORK", PM_EV_FORK as u64),
            ("PM_EV_EXEC", PM_EV_EXEC as u64),
            ("PM_EV_EXIT", PM_EV_EXIT as u64),
            ("PM_F_THREAD", PM_F_THREAD as u64),
            ("PM_F_URGENT", PM_F_URGENT as u64),
            ("PM_F_TRUNCATED", PM_F_TRUNCATED as u64),
            ("PM_F_HELD", PM_F_HELD as u64),
            ("PM_CNT_SUBMITTED", PM_CNT_SUBMITTED as u64),
            ("PM_CNT_DROPPED", PM_CNT_DROPPED as u64),
            ("PM_CNT_HELD", PM_CNT_HELD as u64),
            ("PM_CNT_HOLD_FULL", PM_CNT_HOLD_FULL as u64),
            ("PM_CNT_MAX", PM_CNT_MAX as u64),
            ("PM_TS_SCHED_INFO", PM_TS_SCHED_INFO as u64),
            ("PM_TS_MAX_DELAY", PM_TS_MAX_DELAY as u64),
            ("PM_TS_IO", PM_TS_IO as u64),
            ("PM_TS_KTHREAD", PM_TS_KTHREAD as u64),
            ("PM_TS_EXITING", PM_TS_EXITING as u64),
            ("PM_TS_TRUNCATED", PM_TS_TRUNCATED as u64),
        ];
        for (name, off) in [
            ("oncpu_ns", std::mem::offset_of!(PmSchedStat, oncpu_ns)),
            ("runq_ns", std::mem::offset_of!(PmSchedStat, runq_ns)),
            ("runq_count", std::mem::offset_of!(PmSchedStat, runq_count)),
            (
                "runq_max_ns",
                std::mem::offset_of!(PmSchedStat, runq_max_ns),
            ),
        ] {
            line(
                format!("offsetof(struct pm_sched_stat, {name}) == {off}"),
                format!("pm_sched_stat.{name}: offset differs from Rust ({off})"),
            );
        }
        let size = std::mem::size_of::<PmSchedStat>();
        line(
            format!("sizeof(struct pm_sched_stat) == {size}"),
            format!("sizeof(struct pm_sched_stat) != {size} (Rust)"),
        );
        for (name, off) in [
            ("start_ns", std::mem::offset_of!(PmHold, start_ns)),
            ("held_ns", std::mem::offset_of!(PmHold, held_ns)),
        ] {
            line(
                format!("offsetof(struct pm_hold, {name}) == {off}"),
                format!("pm_hold.{name}: offset differs from Rust ({off})"),
            );
        }
        let size = std::mem::size_of::<PmHold>();
        line(
            format!("sizeof(struct pm_hold) == {size}"),
            format!("sizeof(struct pm_hold) != {size} (Rust)"),
        );
        for (name, v) in consts {
            line(
                format!("{name} == {v}"),
                format!("{name} differs from Rust ({v})"),
            );
        }
        s
    }

    fn compile(compiler: &str, extra: &[&str]) -> Option<std::process::Output> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout.c");
        std::fs::write(&src, assert_source()).unwrap();
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
        Command::new(compiler)
            .args(extra)
            .args(["-fsyntax-only", "-I", include])
            .arg(&src)
            .output()
            .ok()
    }

    #[test]
    fn rust_layout_has_no_padding() {
        for (layout, size) in [
            (field_layout(), PmEvent::SIZE),
            (task_sample_layout(), PmTaskSample::SIZE),
        ] {
            let sum: usize = layout.iter().map(|f| f.2).sum();
            assert_eq!(sum, size, "implicit padding");
            let mut end = 0;
            for (name, off, size) in layout {
                assert_eq!(off, end, "gap before {name}");
                end = off + size;
            }
        }
    }

    #[test]
    fn task_state_letters_match_proc() {
        let st = |state: u32, exit_state: u32| {
            PmTaskSample {
                state,
                exit_state,
                ..Default::default()
            }
            .state_char()
        };
        assert_eq!(st(0, 0), 'R');
        assert_eq!(st(1, 0), 'S');
        assert_eq!(st(2, 0), 'D');
        assert_eq!(st(4, 0), 'T');
        assert_eq!(st(8, 0), 't');
        assert_eq!(st(0, 0x20), 'Z'); // EXIT_ZOMBIE
        assert_eq!(st(0, 0x10), 'X'); // EXIT_DEAD
        assert_eq!(st(0x402, 0), 'I'); // TASK_IDLE
        assert_eq!(st(0x101, 0), 'S'); // TASK_WAKEKILL | TASK_INTERRUPTIBLE: not reported bits
        assert_eq!(st(0x8001, 0), 'D'); // frozen
        assert_eq!(st(0x40, 0), 'P'); // parked kthread
    }

    /// The C header, compiled for the host and for the BPF target, agrees with the Rust layout.
    #[test]
    fn c_header_matches_rust_layout() {
        let mut checked = 0;
        let targets: [(&str, &[&str]); 4] = [
            ("cc", &[]),
            (
                "clang-19",
                &["-target", "bpf", "-I/usr/include/x86_64-linux-gnu"],
            ),
            (
                "clang-16",
                &["-target", "bpf", "-I/usr/include/x86_64-linux-gnu"],
            ),
            (
                "clang",
                &["-target", "bpf", "-I/usr/include/x86_64-linux-gnu"],
            ),
        ];
        let mut bpf_done = false;
        for (cc, args) in targets {
            let is_bpf = !args.is_empty();
            if is_bpf && bpf_done {
                continue;
            }
            let Some(out) = compile(cc, args) else {
                continue;
            };
            assert!(
                out.status.success(),
                "{cc} {args:?}: C header and Rust layout differ:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
            bpf_done |= is_bpf;
        }
        assert!(
            bpf_done,
            "no clang found to check the BPF-target layout (apt-get install clang-19)"
        );
        assert!(
            checked >= 2,
            "the layout was not checked for both host and BPF targets"
        );
    }

    /// The check itself can fail: a wrong offset is caught by the compiler.
    #[test]
    fn layout_check_detects_drift() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bad.c");
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
        std::fs::write(
            &src,
            "#include <stddef.h>\n#include <linux/types.h>\n#include \"procman_event.h\"\n\
             _Static_assert(offsetof(struct pm_event, pid) == 12, \"pid\");\n",
        )
        .unwrap();
        let out = Command::new("cc")
            .args(["-fsyntax-only", "-I", include])
            .arg(&src)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn decodes_record() {
        let mut raw = [0u8; PmEvent::SIZE];
        raw[0..4].copy_from_slice(&PM_EV_EXEC.to_ne_bytes());
        raw[16..20].copy_from_slice(&42u32.to_ne_bytes());
        raw[56..60].copy_from_slice(b"true");
        let e = PmEvent::from_bytes(&raw).unwrap();
        assert_eq!(e.kind, PM_EV_EXEC);
        assert_eq!(e.pid, 42);
        assert_eq!(e.comm_str(), "true");
        assert!(PmEvent::from_bytes(&raw[..10]).is_none());
    }
}
