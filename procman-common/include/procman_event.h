/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * procman event ABI: the one record the kernel side writes into the ring buffer.
 *
 * This header is the single source of truth for the layout. The Rust mirror lives in
 * procman-common/src/abi.rs and a test there compiles this header (for the BPF target and for
 * the host) with static asserts generated from the Rust offsets, so the two can never drift.
 * Every field has a fixed width and the struct has no implicit padding.
 */
#ifndef PROCMAN_EVENT_H
#define PROCMAN_EVENT_H

#define PM_COMM_LEN 16
#define PM_FILENAME_LEN 256

/* event kinds */
#define PM_EV_FORK 1
#define PM_EV_EXEC 2
#define PM_EV_EXIT 3

/* flags */
#define PM_F_THREAD 1u    /* the record is about a thread, not a whole process */
#define PM_F_URGENT 2u    /* exec matched the urgent map: the reader was woken at once */
#define PM_F_TRUNCATED 4u /* filename did not fit into PM_FILENAME_LEN */

/* indexes into the per-CPU "counters" array */
#define PM_CNT_SUBMITTED 0 /* records written into the ring */
#define PM_CNT_DROPPED 1   /* records that did not fit into the ring */
#define PM_CNT_MAX 2

struct pm_event {
	__u32 kind;       /* PM_EV_* */
	__u32 flags;      /* PM_F_* */
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;        /* kernel pid (thread id) */
	__u32 tgid;       /* process id */
	__u32 ppid;       /* parent's tgid (fork: the forking process; exec/exit: real_parent) */
	__u32 uid;
	__u32 gid;
	__u32 exit_code;  /* exit: raw wait status (code << 8 | signal) */
	__u64 cgroup_id;  /* cgroup v2 inode of the task */
	__u64 start_ns;   /* task start, ns since boot (start_boottime; /proc/PID/stat field 22) */
	char comm[PM_COMM_LEN];
	char filename[PM_FILENAME_LEN]; /* exec: bprm->filename, NUL-terminated */
};

/* value of the "sched_stats" map (key: tgid): scheduling totals of a process's threads */
struct pm_sched_stat {
	__u64 oncpu_ns;   /* time on a CPU */
	__u64 runq_ns;    /* time runnable but waiting for a CPU (run-queue latency) */
	__u64 runq_count; /* waits counted in runq_ns */
	__u64 runq_max_ns;/* longest single wait */
};

#endif
