// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * procman kernel side: process lifecycle events (fork, exec, exit) as fixed-size records in a
 * BPF ring buffer. Kept small on purpose; all policy lives in the Rust agent.
 *
 * Wakeups are batched: a record is committed with BPF_RB_NO_WAKEUP until `wakeup_batch` bytes'
 * worth of records are pending (the agent also polls on a timer), except exec records whose comm
 * is in the `urgent_comms` map (placement rules need them now).
 *
 * Hold-at-exec: an exec whose comm is in `hold_comms` is stopped (SIGSTOP, taken on the way
 * back to user space, so the new program runs no instruction) and recorded in the pinned `held`
 * map; the agent moves it into its slice and resumes it through a pidfd (SIGCONT). Never held:
 * pid 1, the agent, traced tasks (the tracer would see the stop) and tasks with a controlling
 * terminal (their shell's job control would report it). See procman-agent/src/hold.rs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "procman_event.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* set by the agent at load time (EbpfLoader::override_global) */
const volatile __u8 emit_threads = 0;      /* 1: also report thread fork/exit */
const volatile __u64 wakeup_bytes = 64 * sizeof(struct pm_event); /* batch size */
const volatile __u32 agent_tgid = 0;       /* never held */

#define PM_SIGSTOP 19

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* the agent may resize it before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PM_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* comm names whose exec must wake the reader immediately (filled by the agent) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[PM_COMM_LEN]);
	__type(value, __u8);
} urgent_comms SEC(".maps");

/* comm names whose exec is held until the agent has placed it (filled by the agent) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[PM_COMM_LEN]);
	__type(value, __u8);
} hold_comms SEC(".maps");

/* tasks stopped at exec and not yet released (key: tgid); pinned by the agent */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pm_hold);
} held SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct pm_event *reserve(void)
{
	struct pm_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		count(PM_CNT_DROPPED);
	return e;
}

static __always_inline void submit(struct pm_event *e, bool urgent)
{
	__u64 flags;
	if (urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	else
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	count(PM_CNT_SUBMITTED);
}

/*
 * `task` may be any thread of the process (at exit, the last thread to leave is often not the
 * leader): the process's identity (start time) and name come from the group leader, whose
 * task_struct lives until the whole group is gone. Thread records keep the thread's own comm.
 *
 * tp_btf programs get BTF-typed pointers, so fields are read with plain (CO-RE relocated)
 * loads that the verifier turns into fault-safe PROBE_MEM loads: much cheaper than one
 * bpf_probe_read_kernel() call per field.
 */
static __always_inline void fill_task(struct pm_event *e, struct task_struct *task, bool thread)
{
	struct task_struct *leader = task->group_leader;
	__u64 ugid = bpf_get_current_uid_gid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = task->pid;
	e->tgid = task->tgid;
	e->ppid = task->real_parent->tgid;
	e->uid = (__u32)ugid;
	e->gid = (__u32)(ugid >> 32);
	e->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	e->start_ns = leader->start_boottime;
	e->exit_code = 0;
	e->flags = 0;
	e->filename[0] = 0;
	bpf_probe_read_kernel(&e->comm, sizeof(e->comm), thread ? task->comm : leader->comm);
}

/* whether an exec may be held: see the top of this file */
static __always_inline bool may_hold(struct task_struct *task)
{
	if (task->tgid == 1 || task->tgid == agent_tgid)
		return false;
	if (task->ptrace)
		return false;
	if (task->signal->tty)
		return false;
	return true;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	bool thread = child->pid != child->tgid;
	if (thread && !emit_threads)
		return 0;
	struct pm_event *e = reserve();
	if (!e)
		return 0;
	/* the child has not run yet: uid/gid and comm are the parent's, which the child shares */
	fill_task(e, child, thread);
	e->kind = PM_EV_FORK;
	/* for a thread the "parent" is its own process; for a process, the forking process */
	e->ppid = parent->tgid;
	if (thread)
		e->flags |= PM_F_THREAD;
	submit(e, false);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct pm_event *e = reserve();
	if (!e)
		return 0;
	fill_task(e, task, false);
	e->kind = PM_EV_EXEC;
	long n = bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), bprm->filename);
	if (n == sizeof(e->filename))
		e->flags |= PM_F_TRUNCATED; /* may be an exact fit; the agent re-reads /proc if it cares */
	/* Kernels before ~6.5 refuse ring-buffer memory as a map key (verifier: "R2 type=alloc_mem
	 * expected=fp, ..."; seen on 6.1): look the comm up from a stack copy. */
	char comm[PM_COMM_LEN];
	__builtin_memcpy(comm, e->comm, sizeof(comm));
	bool urgent = bpf_map_lookup_elem(&urgent_comms, comm) != NULL;
	if (bpf_map_lookup_elem(&hold_comms, comm) && may_hold(task)) {
		/* held only with its record reserved: the agent is sure to hear of it */
		struct pm_hold h = { .start_ns = e->start_ns, .held_ns = e->ts_ns };
		__u32 tgid = task->tgid;
		if (bpf_map_update_elem(&held, &tgid, &h, BPF_ANY) != 0) {
			count(PM_CNT_HOLD_FULL);
		} else if (bpf_send_signal(PM_SIGSTOP) == 0) {
			e->flags |= PM_F_HELD;
			count(PM_CNT_HELD);
			urgent = true;
		} else {
			bpf_map_delete_elem(&held, &tgid);
		}
	}
	if (urgent)
		e->flags |= PM_F_URGENT;
	submit(e, urgent);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	/*
	 * The tracepoint fires once per exiting thread, after signal->live was decremented: the
	 * thread that brings it to zero ends the process.
	 */
	bool thread = task->signal->live.counter != 0;
	if (thread && !emit_threads)
		return 0;
	struct pm_event *e = reserve();
	if (!e)
		return 0;
	fill_task(e, task, thread);
	e->kind = PM_EV_EXIT;
	e->exit_code = task->exit_code;
	if (thread)
		e->flags |= PM_F_THREAD;
	submit(e, false);
	return 0;
}
