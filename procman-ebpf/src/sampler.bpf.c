// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * procman's sampler: a BPF task iterator (iter/task, kernel 5.8+; task storage in tracing
 * programs, 5.11+). The agent creates an iterator fd every tick and reads it to the end; each
 * process (visited on its group leader) is written as one `struct pm_task_sample`.
 *
 * Two programs share the code: `sample_all` reports every process (a full sweep, every Nth
 * tick, which reconciles), `sample_changed` only processes whose CPU time, RSS, cgroup or nice
 * changed since they were last reported, plus exiting ones and zombies (so the agent notices
 * the reap) and those with too many threads to sum here (PM_MAX_THREADS). The last reported
 * values live in task-local storage on the leader: freed with the task, nothing to clean up,
 * no table to size.
 *
 * Kept in its own object so that a kernel without iterators or task storage still gets event
 * capture (procman.bpf.c); the agent then samples /proc instead.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "procman_event.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000
/* enum mm counter indexes (stable since 4.x): MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES */
#define PM_MM_FILEPAGES 0
#define PM_MM_ANONPAGES 1
#define PM_MM_SHMEMPAGES 3
/*
 * Threads summed per process by walking signal->thread_head. The walk is a bounded loop the
 * verifier checks iteration by iteration (4096 hit its 8192-jump limit after ~0.8 s), so it
 * stops here: a process with more threads is flagged PM_TS_TRUNCATED (without walking any),
 * reported at every sweep, and the agent reads its /proc files instead (a few such processes
 * per host).
 */
#define PM_MAX_THREADS 64

/* Before 6.2, mm->rss_stat was a struct of atomic counters (6.2+: percpu_counter[4]). */
struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

/* Before 5.14, task->__state was task->state (a long). */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

/*
 * What was last reported for a process (task storage on its leader). The cgroup is kept as the
 * task's css_set pointer: it changes on every cgroup move, and comparing it costs no walk to
 * the cgroup's id. visit_ns gives the agent the exact time span of a change: the values were
 * unchanged at the previous visit, however long the sweep that made it was preempted.
 */
struct pm_task_last {
	__u64 visit_ns; /* when the last sweep passed by, whether it reported the task or not */
	__u64 oncpu_ns;
	__u64 rss_pages;
	__u64 css_set;
	__s32 nice;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pm_task_last);
} last_seen SEC(".maps");

static __always_inline __u64 positive(__s64 v)
{
	return v > 0 ? (__u64)v : 0;
}

/*
 * RSS pages as /proc/PID/statm counts them (get_mm_counter: the counters' shared part).
 * rss_pages_btf() takes a pointer the verifier knows as a kernel struct (task->mm) and uses
 * direct loads (6.2+); rss_pages() takes any address (from the thread walk) and probe-reads.
 */
static __always_inline __u64 rss_pages(struct mm_struct *mm)
{
	if (!mm)
		return 0;
	if (bpf_core_type_exists(struct mm_rss_stat___pre62)) {
		struct mm_struct___pre62 *old = (void *)mm;
		return positive(BPF_CORE_READ(old, rss_stat.count[PM_MM_FILEPAGES].counter)) +
		       positive(BPF_CORE_READ(old, rss_stat.count[PM_MM_ANONPAGES].counter)) +
		       positive(BPF_CORE_READ(old, rss_stat.count[PM_MM_SHMEMPAGES].counter));
	}
	return positive(BPF_CORE_READ(mm, rss_stat[PM_MM_FILEPAGES].count)) +
	       positive(BPF_CORE_READ(mm, rss_stat[PM_MM_ANONPAGES].count)) +
	       positive(BPF_CORE_READ(mm, rss_stat[PM_MM_SHMEMPAGES].count));
}

static __always_inline __u64 rss_pages_btf(struct mm_struct *mm)
{
	if (!mm)
		return 0;
	if (bpf_core_type_exists(struct mm_rss_stat___pre62))
		/* 6.1's verifier cannot walk atomic_long_t (a typedef) for a direct load:
		 * "Type 'atomic_long_t' is not a struct" */
		return rss_pages(mm);
	return positive(mm->rss_stat[PM_MM_FILEPAGES].count) +
	       positive(mm->rss_stat[PM_MM_ANONPAGES].count) +
	       positive(mm->rss_stat[PM_MM_SHMEMPAGES].count);
}

static __always_inline __u32 task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	struct task_struct___pre514 *old = (void *)t;
	return (__u32)BPF_CORE_READ(old, state);
}

/*
 * Adds one thread's counters. `t` is a plain address (from the thread list), so every field is
 * read with bpf_probe_read_kernel (BPF_CORE_READ); the single-threaded fast path in sample()
 * uses direct loads instead.
 */
static __always_inline void add_thread(struct pm_task_sample *s, struct task_struct *t,
				       struct mm_struct **mm)
{
	s->oncpu_ns += BPF_CORE_READ(t, se.sum_exec_runtime);
	if (bpf_core_field_exists(t->sched_info)) {
		s->run_delay_ns += BPF_CORE_READ(t, sched_info.run_delay);
		s->pcount += BPF_CORE_READ(t, sched_info.pcount);
	}
	if (bpf_core_field_exists(t->sched_info.max_run_delay)) {
		__u64 m = BPF_CORE_READ(t, sched_info.max_run_delay);
		if (m > s->max_delay_ns)
			s->max_delay_ns = m;
	}
	if (bpf_core_field_exists(t->ioac.read_bytes)) {
		s->read_bytes += BPF_CORE_READ(t, ioac.read_bytes);
		s->write_bytes += BPF_CORE_READ(t, ioac.write_bytes);
	}
	if (!*mm)
		*mm = BPF_CORE_READ(t, mm);
}

static __always_inline int sample(struct bpf_iter__task *ctx, bool full)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	if (!task)
		return 0; /* the final call after the last task */
	if (task->pid != task->tgid)
		return 0; /* threads are summed on their group leader */

	struct signal_struct *sig = task->signal;
	struct mm_struct *mm = task->mm;
	__u64 css_set = (__u64)task->cgroups; /* compared, never dereferenced */
	__s32 nice = task->static_prio - 120;
	bool exiting = (task->flags & PF_EXITING) || task->exit_state;
	bool single = sig->nr_threads <= 1 && !task->exit_state;
	__u64 now = bpf_ktime_get_ns();
	struct pm_task_last *last =
		bpf_task_storage_get(&last_seen, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	/* the common case, an unchanged single-threaded process: decided before reading the rest */
	if (!full && single && !exiting && last && last->css_set == css_set &&
	    last->nice == nice && last->oncpu_ns == sig->sum_sched_runtime + task->se.sum_exec_runtime &&
	    last->rss_pages == rss_pages_btf(mm)) {
		last->visit_ns = now;
		return 0;
	}

	struct pm_task_sample s = {};
	s.ts_ns = now;
	s.prev_ts_ns = last ? last->visit_ns : 0;
	s.tgid = task->tgid;
	s.start_ns = task->start_boottime;
	s.state = task_state(task);
	s.exit_state = task->exit_state;
	s.nice = nice;
	s.nr_threads = sig->nr_threads;
	s.cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	if (task->flags & PF_KTHREAD)
		s.flags |= PM_TS_KTHREAD;
	if (exiting)
		s.flags |= PM_TS_EXITING;
	if (bpf_core_field_exists(task->sched_info))
		s.flags |= PM_TS_SCHED_INFO;
	if (bpf_core_field_exists(task->sched_info.max_run_delay))
		s.flags |= PM_TS_MAX_DELAY;
	if (bpf_core_field_exists(task->ioac.read_bytes) && bpf_core_field_exists(sig->ioac))
		s.flags |= PM_TS_IO;

	/* exited threads' CPU time and IO are kept in the signal struct */
	s.oncpu_ns = sig->sum_sched_runtime;
	if (bpf_core_field_exists(sig->ioac)) {
		s.read_bytes = sig->ioac.read_bytes;
		s.write_bytes = sig->ioac.write_bytes;
	}

	if (single) {
		/* one thread, the leader: direct (fault-safe) loads */
		s.oncpu_ns += task->se.sum_exec_runtime;
		if (bpf_core_field_exists(task->sched_info)) {
			s.run_delay_ns = task->sched_info.run_delay;
			s.pcount = task->sched_info.pcount;
		}
		if (bpf_core_field_exists(task->sched_info.max_run_delay))
			s.max_delay_ns = task->sched_info.max_run_delay;
		if (bpf_core_field_exists(task->ioac.read_bytes)) {
			s.read_bytes += task->ioac.read_bytes;
			s.write_bytes += task->ioac.write_bytes;
		}
		s.rss_pages = rss_pages_btf(mm);
	} else if (sig->nr_threads > PM_MAX_THREADS) {
		/* more threads than the walk below sums: the agent reads this process's /proc files
		 * anyway, so walking the first PM_MAX_THREADS of them would be wasted (at 100k tasks
		 * in processes of 100 threads, a third of the sweep) */
		s.flags |= PM_TS_TRUNCATED;
		s.rss_pages = rss_pages_btf(mm);
	} else {
		/* walk the live threads (for_each_thread: signal->thread_head, linked by thread_node);
		 * an exited leader has no mm: take the first thread's */
		unsigned long head = (unsigned long)BPF_CORE_READ(task, signal) +
				     bpf_core_field_offset(struct signal_struct, thread_head);
		unsigned long node_off = bpf_core_field_offset(struct task_struct, thread_node);
		unsigned long pos = (unsigned long)BPF_CORE_READ(sig, thread_head.next);
		struct mm_struct *tmm = NULL;
		int i;
		for (i = 0; i < PM_MAX_THREADS; i++) {
			if (pos == head || !pos)
				break;
			add_thread(&s, (struct task_struct *)(pos - node_off), &tmm);
			pos = (unsigned long)BPF_CORE_READ((struct list_head *)pos, next);
		}
		if (i == PM_MAX_THREADS && pos != head)
			s.flags |= PM_TS_TRUNCATED;
		s.rss_pages = mm ? rss_pages_btf(mm) : rss_pages(tmm);
	}

	if (!full && !(s.flags & (PM_TS_EXITING | PM_TS_TRUNCATED)) && last &&
	    last->oncpu_ns == s.oncpu_ns && last->rss_pages == s.rss_pages &&
	    last->css_set == css_set && last->nice == s.nice) {
		last->visit_ns = now;
		return 0;
	}
	/* The seq buffer may be full: then this task is shown again at the next read(), so the
	 * storage is updated only once the record is written. */
	if (bpf_seq_write(seq, &s, sizeof(s)) != 0)
		return 0;
	if (last) {
		last->visit_ns = now;
		last->oncpu_ns = s.oncpu_ns;
		last->rss_pages = s.rss_pages;
		last->css_set = css_set;
		last->nice = s.nice;
	}
	return 0;
}

SEC("iter/task")
int sample_changed(struct bpf_iter__task *ctx)
{
	return sample(ctx, false);
}

SEC("iter/task")
int sample_all(struct bpf_iter__task *ctx)
{
	return sample(ctx, true);
}
