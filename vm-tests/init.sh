#!/bin/busybox sh
# /init of the VM test's initramfs (busybox sh): runs the appliance once (demo-server,
# http-profiler, traffic-gen --count N, then busybox wget against busybox httpd), stops
# the profiler, checks its JSON lines with `http-profiler check`, prints one result line
# for the host and powers off.
# The host reads the serial console: every stage prints a "vm-test: stage" line, and
# the last line is "VM-TEST-RESULT PASS ..." or "VM-TEST-RESULT FAIL <reason>".
export PATH=/bin LD_LIBRARY_PATH=/lib
/bin/busybox --install -s /bin
. /etc/vm-test.conf # COUNT, PORT, BREAK

stage() { echo "vm-test: stage: $*"; }
finish() {
    echo "VM-TEST-RESULT $*"
    sync
    poweroff -f
}
fail() {
    for log in /out/*.log; do
        [ -s "$log" ] && { echo "vm-test: --- $log"; tail -n 40 "$log"; }
    done
    finish "FAIL $*"
}
# Waits up to $1 tenths of a second for the command after it to succeed.
wait_for() {
    n=$1
    shift
    while ! "$@" 2>/dev/null; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}

stage "mounting proc, sys, devtmpfs, tracefs, bpffs"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs nodev /sys/kernel/tracing || fail "cannot mount tracefs"
mount -t bpf bpf /sys/fs/bpf || fail "cannot mount bpffs"
mount -t tmpfs tmp /out
ip link set lo up || fail "cannot bring up the loopback interface"
echo "vm-test: kernel $(uname -r) $(uname -m), $(grep -c ^processor /proc/cpuinfo) CPUs"
[ -r /sys/kernel/btf/vmlinux ] || fail "no /sys/kernel/btf/vmlinux: kernel without CONFIG_DEBUG_INFO_BTF"
[ -d /sys/kernel/tracing/events/syscalls ] || fail "no syscall tracepoints in tracefs"

stage "starting demo-server on 127.0.0.1:$PORT"
demo-server --listen "127.0.0.1:$PORT" 2>/out/demo-server.log &
wait_for 300 wget -q -O /dev/null "http://127.0.0.1:$PORT/healthz" || fail "demo-server did not answer /healthz"

stage "starting http-profiler"
start=$(date +%s)
# -v: the console shows the struct offsets read from this kernel's BTF.
http-profiler -v --output /out/events.jsonl --port "$PORT" --port "$FORK_PORT" --max-body-bytes 262144 2>/out/profiler.log &
profiler=$!
wait_for 1800 grep -q capturing /out/profiler.log || {
    kill -0 "$profiler" 2>/dev/null || fail "http-profiler exited: $(tail -n 3 /out/profiler.log | tr '\n' ' ')"
    fail "http-profiler did not start within 180 s"
}
echo "vm-test: http-profiler loaded and attached its probes in $(($(date +%s) - start)) s"

stage "traffic-gen --count $COUNT"
traffic-gen --target "http://127.0.0.1:$PORT" --count "$COUNT" >/out/traffic-gen.log 2>&1
traffic=$?
cat /out/traffic-gen.log
[ "$traffic" -eq 0 ] || fail "traffic-gen reported errors (exit $traffic)"

stage "busybox httpd on 127.0.0.1:$FORK_PORT, busybox wget x $FORK_COUNT"
# A second kind of peer: a server that forks a child per connection (the socket is
# shared until the parent closes its copy) and sends files with sendfile, and a client
# that reads with plain read().
mkdir -p /www
i=0
while [ $i -lt 400 ]; do echo "line $i of a static page served by busybox httpd"; i=$((i + 1)); done >/www/page.html
httpd -f -p "127.0.0.1:$FORK_PORT" -h /www 2>/out/httpd.log &
# Listening when /proc/net/tcp shows the port (hex) in state 0A; a request to see it
# would count as traffic.
listening() { grep -q "^ *[0-9]*: [0-9A-F]*:$(printf %04X "$1") [0-9A-F]*:0000 0A" /proc/net/tcp; }
wait_for 100 listening "$FORK_PORT" || fail "busybox httpd did not start: $(cat /out/httpd.log)"
for i in $(seq "$FORK_COUNT"); do
    wget -q -O /out/page.html "http://127.0.0.1:$FORK_PORT/page.html" || fail "wget $i from busybox httpd failed"
done
cmp -s /www/page.html /out/page.html || fail "wget did not get the page busybox httpd served"

stage "stopping http-profiler (SIGINT)"
# The last records reach the ring buffer within microseconds; leave the reader a moment.
sleep 1
kill -INT "$profiler"
wait "$profiler"
status=$?
grep -v capturing /out/profiler.log
[ "$status" -eq 0 ] || fail "http-profiler exited with status $status"
# A tracepoint this kernel lacks, or records dropped, would show as a warning.
if grep -q ' WARN ' /out/profiler.log; then
    fail "http-profiler warned: $(grep ' WARN ' /out/profiler.log | head -n 3 | tr '\n' ' ')"
fi

if [ "$BREAK" = empty-output ]; then
    # A profiler that wrote nothing: the check below must fail.
    stage "VM_TEST_BREAK=empty-output: emptying the profiler's output"
    : >/out/events.jsonl
fi

stage "http-profiler check /out/events.jsonl --expect-requests $COUNT --port $PORT"
http-profiler check /out/events.jsonl --expect-requests "$COUNT" --port "$PORT" >/out/check.out 2>&1
checked=$?
cat /out/check.out
echo "vm-test: $(grep -c '"body_omitted":"sendfile"' /out/events.jsonl) messages with bodies sent by sendfile (body_omitted)"
stage "http-profiler check /out/events.jsonl --expect-requests $FORK_COUNT --port $FORK_PORT"
http-profiler check /out/events.jsonl --expect-requests "$FORK_COUNT" --port "$FORK_PORT" >/out/check-fork.out 2>&1
checked_fork=$?
cat /out/check-fork.out
[ "$checked" -eq 0 ] || finish "FAIL check: $(tail -n 1 /out/check.out)"
[ "$checked_fork" -eq 0 ] || finish "FAIL check of busybox httpd and wget: $(tail -n 1 /out/check-fork.out)"
finish "PASS $COUNT requests of traffic-gen to demo-server and $FORK_COUNT of busybox wget to busybox httpd, each captured on both sides with its response"
