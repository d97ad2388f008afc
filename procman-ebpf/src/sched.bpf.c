// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * procman's optional scheduling tracer (`events.sched_stats = true`): per-process run-queue
 * wait and the longest single wait, measured on sched_switch / sched_wakeup.
 *
 * Off by default: it runs on every context switch of the machine. The sampler's task iterator
 * reads the kernel's own accounting (sched_info.run_delay, pcount, se.sum_exec_runtime) at no
 * per-switch cost; this tracer adds only what that accounting lacks on older kernels, the
 * longest single wait since the agent started. In its own object so that its requirements
 * (task storage: 5.11+) never stop event capture.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "procman_event.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Before 5.14, task->__state was task->state (a long). */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline long state_of(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return t->__state;
	return ((struct task_struct___pre514 *)t)->state;
}

/* Aggregated per process in a map (never one ring record per context switch). */
#define TASK_RUNNING 0

/*
 * Per-thread wait start, in task-local storage (no hashing, no preallocated table). On-CPU
 * time is not traced any more (pm_sched_stat.oncpu_ns stays 0): the sampler reads it from the
 * kernel's own accounting at no per-switch cost.
 */
struct pm_task_ts {
	__u64 runnable_since; /* 0: not waiting for a CPU */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pm_task_ts);
} task_ts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32); /* tgid */
	__type(value, struct pm_sched_stat);
} sched_stats SEC(".maps");

static __always_inline struct pm_sched_stat *stat_of(__u32 tgid)
{
	struct pm_sched_stat *st = bpf_map_lookup_elem(&sched_stats, &tgid);
	if (st)
		return st;
	struct pm_sched_stat zero = {};
	bpf_map_update_elem(&sched_stats, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sched_stats, &tgid);
}

static __always_inline struct pm_task_ts *ts_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ts, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* without creating it: a task with no storage was never marked runnable */
static __always_inline struct pm_task_ts *ts_if_any(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ts, p, 0, 0);
}

static __always_inline void mark_runnable(struct task_struct *p)
{
	if (!p->pid)
		return;
	struct pm_task_ts *ts = ts_of(p);
	if (ts)
		ts->runnable_since = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(handle_wakeup, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle_wakeup_new, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns();

	/* preempted while runnable: it waits for a CPU from now on (a task that blocks needs
	 * nothing: its wait ended when it got the CPU) */
	if (prev->pid && state_of(prev) == TASK_RUNNING) {
		struct pm_task_ts *ts = ts_of(prev);
		if (ts)
			ts->runnable_since = now;
	}
	if (next->pid) {
		struct pm_task_ts *ts = ts_if_any(next);
		if (ts) {
			if (ts->runnable_since && now > ts->runnable_since) {
				__u64 wait = now - ts->runnable_since;
				struct pm_sched_stat *st = stat_of(next->tgid);
				if (st) {
					__sync_fetch_and_add(&st->runq_ns, wait);
					__sync_fetch_and_add(&st->runq_count, 1);
					if (wait > st->runq_max_ns)
						st->runq_max_ns = wait;
				}
			}
			ts->runnable_since = 0;
		}
	}
	return 0;
}
