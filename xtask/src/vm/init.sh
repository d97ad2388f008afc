#!/bin/sh
# /init of procman's test VM (busybox sh as PID 1), built into the initramfs by
# `cargo xtask vm-assets`. It loads the virtio/9p/overlay modules, builds the guest root
# (the host's / over 9p, read-only, under a tmpfs overlay), mounts cgroup2 with every
# controller enabled, runs the job from the job share (/run/procman-job/job.sh) inside
# that root, writes its exit code back to the share and powers off.
# Any failure powers off without an exit code, which the host reports as a failure.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "PROCMAN-VM-FAIL: $*"
	poweroff -f
	sleep 10
}

for m in $(cat /modules.order); do
	insmod "/modules/$m.ko" || fail "insmod $m"
done

# Debug: prove that a guest kernel panic is reported by the host as a failure.
if grep -q 'procman.panic=1' /proc/cmdline; then
	echo "procman-vm: procman.panic=1: crashing the kernel on purpose"
	echo c > /proc/sysrq-trigger
fi

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower ||
	fail "mounting the host root (9p)"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
	fail "mounting the overlay root"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run
# no tmpfs on /tmp: the overlay already makes it writable, and the workspace may live under
# the host's /tmp (CI clones), which a fresh tmpfs would hide
mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || fail "mounting cgroup2"
mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
echo "+cpu +cpuset +memory +io +pids" > $R/sys/fs/cgroup/cgroup.subtree_control ||
	fail "enabling cgroup controllers"
# libbpf and bpftool look for the kernel config here.
cp /config "$R/boot/config-$(uname -r)" 2>/dev/null

J=$R/run/procman-job
mkdir -p $J
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 job $J || fail "mounting the job share"
[ -f $J/job.sh ] || fail "no job.sh in the job share"

echo "procman-vm: kernel $(uname -r), cgroup2 controllers: $(cat $R/sys/fs/cgroup/cgroup.subtree_control)"
chroot $R /bin/sh /run/procman-job/job.sh </dev/console
rc=$?
echo "$rc" > $J/exit_code
sync
echo "PROCMAN-VM-EXIT: $rc"
umount $J
poweroff -f
sleep 10
