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
#define PM_F_HELD 8u      /* exec: the task was stopped before running (hold-at-exec, "held" map) */

/* indexes into the per-CPU "counters" array */
#define PM_CNT_SUBMITTED 0 /* records written into the ring */
#define PM_CNT_DROPPED 1   /* records that did not fit into the ring */
#define PM_CNT_HELD 2      /* execs stopped for hold-at-exec placement */
#define PM_CNT_HOLD_FULL 3 /* execs not held because the "held" map was full */
#define PM_CNT_MAX 4

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

/*
 * value of the "held" map (key: tgid): a task stopped at exec (SIGSTOP from the exec
 * tracepoint) until the agent has placed it and sends SIGCONT. The map is pinned, so an agent
 * that was killed meanwhile is replaced by one that finds and releases the task.
 */
struct pm_hold {
	__u64 start_ns;   /* the process's start_boottime (its identity with the pid) */
	__u64 held_ns;    /* bpf_ktime_get_ns() when stopped (CLOCK_MONOTONIC) */
};

/* value of the "sched_stats" map (key: tgid): scheduling totals of a process's threads */
struct pm_sched_stat {
	__u64 oncpu_ns;   /* time on a CPU (no longer traced: 0; the sampler reports it) */
	__u64 runq_ns;    /* time runnable but waiting for a CPU (run-queue latency) */
	__u64 runq_count; /* waits counted in runq_ns */
	__u64 runq_max_ns;/* longest single wait */
};

/*
 * One record of the sampler's task iterator (sampler.bpf.c): the usage of one process, summed
 * over its threads, written with bpf_seq_write() and read from the iterator's fd.
 */
#define PM_TS_SCHED_INFO 1u  /* run_delay_ns and pcount are valid (CONFIG_SCHED_INFO) */
#define PM_TS_MAX_DELAY 2u   /* max_delay_ns is valid (sched_info.max_run_delay, 6.14+) */
#define PM_TS_IO 4u          /* read_bytes and write_bytes are valid (CONFIG_TASK_IO_ACCOUNTING) */
#define PM_TS_KTHREAD 8u     /* a kernel thread */
#define PM_TS_EXITING 16u    /* exiting or a zombie (always reported, so a reaped one is noticed) */
#define PM_TS_TRUNCATED 32u  /* more threads than the kernel side walks: none walked, sums hold only exited threads (read /proc) */

struct pm_task_sample {
	__u32 tgid;
	__u32 flags;         /* PM_TS_* */
	__u64 start_ns;      /* start_boottime: ns since boot (/proc/PID/stat field 22 in ns) */
	__u64 ts_ns;         /* bpf_ktime_get_ns() when read (CLOCK_MONOTONIC) */
	__u64 prev_ts_ns;    /* when the sampler last visited this process (0: never), unchanged or not */
	__u64 oncpu_ns;      /* signal->sum_sched_runtime + every live thread's se.sum_exec_runtime */
	__u64 run_delay_ns;  /* sum of live threads' sched_info.run_delay (run-queue wait) */
	__u64 pcount;        /* sum of live threads' sched_info.pcount (times run on a CPU) */
	__u64 max_delay_ns;  /* longest single run-queue wait of any live thread (6.14+) */
	__u64 rss_pages;     /* mm->rss_stat: file + anon + shmem pages */
	__u64 read_bytes;    /* storage IO as /proc/PID/io: signal->ioac + live threads' ioac */
	__u64 write_bytes;
	__u64 cgroup_id;     /* cgroup v2 inode (task->cgroups->dfl_cgrp) */
	__u32 state;         /* the leader's task->__state (->state before 5.14) */
	__u32 exit_state;    /* the leader's task->exit_state */
	__s32 nice;          /* static_prio - 120 */
	__u32 nr_threads;    /* signal->nr_threads */
};

#endif
