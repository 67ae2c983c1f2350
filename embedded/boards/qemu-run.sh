#!/usr/bin/env bash
# Boots a firmware ELF on a QEMU Arm machine with user networking and decodes
# its defmt log. The QEMU boards' cargo runner (.cargo/config.toml), so
# `cargo run --release` in a board folder lands here with the machine, the
# NIC model and the ELF.
#
# Usage: qemu-run.sh MACHINE NIC_MODEL ELF [extra qemu arguments...]
#   e.g. qemu-run.sh mps2-an385 lan9118 target/.../ricochet-mps2-an385
#
# Host port RICOCHET_PORT (default 7777) on 127.0.0.1 is forwarded, TCP and
# UDP, to the guest's port 7 (raw echo), RICOCHET_LINES_PORT (default
# RICOCHET_PORT + 1) to 7001 (lines) and RICOCHET_FRAMES_PORT (default
# RICOCHET_PORT + 2) to 7002 (frames). QEMU accepts a forwarded TCP
# connection even before the guest listens: probe readiness with a real
# echo and a timeout, not with connect().
#
# RICOCHET_NETDEV, if set, replaces the user-mode network (and its port
# forwarding) with that -nic specification's backend and options, for
# example `socket,udp=127.0.0.1:PORT,localaddr=127.0.0.1:PORT2`: the
# frames then go to a host program (`cargo xtask` timing checks).
#
# Only QEMU's stdout (the semihosting byte stream) goes to defmt-print; QEMU's
# own messages stay on stderr (through `tee`: when QEMU refuses a forwarding
# rule because its host port is in use, this script then names the port and
# the variable that moves it). The exit status is QEMU's (the firmware's
# semihosting exit code: 1 after a panic). QEMU is stopped when this script
# is interrupted or terminated (and, where setpriv exists, when it dies).
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 MACHINE NIC_MODEL ELF [extra qemu arguments...]" >&2
    echo "  e.g. $0 mps2-an385 lan9118 target/thumbv7m-none-eabi/release/ricochet-mps2-an385" >&2
    exit 2
fi
machine=$1
nic=$2
elf=$3
shift 3
# Checked before any arithmetic: bash would evaluate a name as a variable.
# RICOCHET_PORT is 1-65532 (as `cargo xtask qemu PORT`) so that PORT+1 and
# PORT+2 are ports too; the other two, when given, 1-65535.
is_port() { # VALUE MAX
    [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= $2))
}
port=${RICOCHET_PORT:-7777}
lines_port=${RICOCHET_LINES_PORT:-}
frames_port=${RICOCHET_FRAMES_PORT:-}
if [[ -z ${RICOCHET_NETDEV:-} ]]; then
    if ! is_port "$port" 65532; then
        echo "qemu-run.sh: RICOCHET_PORT=$port: expected a port from 1 to 65532 (PORT+1 and PORT+2 are forwarded too)" >&2
        exit 2
    fi
    port=$((10#$port))
    for var in RICOCHET_LINES_PORT RICOCHET_FRAMES_PORT; do
        if [[ -n ${!var:-} ]] && ! is_port "${!var}" 65535; then
            echo "qemu-run.sh: $var=${!var}: expected a port from 1 to 65535" >&2
            exit 2
        fi
    done
    lines_port=${lines_port:-$((port + 1))}
    frames_port=${frames_port:-$((port + 2))}
fi

missing=0
if ! command -v qemu-system-arm >/dev/null; then
    echo "qemu-run.sh: qemu-system-arm not found; install it with:" >&2
    echo "  apt-get install --no-install-recommends qemu-system-arm" >&2
    missing=1
fi
if ! command -v defmt-print >/dev/null; then
    echo "qemu-run.sh: defmt-print not found; install it with:" >&2
    echo "  cargo install --locked defmt-print" >&2
    missing=1
fi
if [[ $missing -ne 0 ]]; then
    exit 127
fi
if [[ ! -f $elf ]]; then
    echo "qemu-run.sh: no such ELF: $elf" >&2
    exit 2
fi

if [[ -n ${RICOCHET_NETDEV:-} ]]; then
    nic="${RICOCHET_NETDEV},model=${nic}"
    echo "ricochet: ${machine}: network ${RICOCHET_NETDEV}" >&2
else
    forward="hostfwd=tcp:127.0.0.1:${port}-:7,hostfwd=udp:127.0.0.1:${port}-:7"
    forward+=",hostfwd=tcp:127.0.0.1:${lines_port}-:7001,hostfwd=tcp:127.0.0.1:${frames_port}-:7002"
    nic="user,model=${nic},${forward}"
    echo "ricochet: ${machine}: forwarding 127.0.0.1:${port} (raw, tcp+udp) -> guest port 7, :${lines_port} -> 7001 (lines), :${frames_port} -> 7002 (frames); try: ricochet probe tcp://127.0.0.1:${port}" >&2
fi

# Kill QEMU if this script dies without running its trap (SIGKILL).
pdeath=()
if command -v setpriv >/dev/null; then
    pdeath=(setpriv --pdeathsig TERM --)
fi

qemu_pid=
printer_pid=
stderr_pid=
qemu_stderr=
log_fd=
err_fd=

cleanup() {
    # A process group's TERM comes more than once (`timeout` passes its own
    # on to the group): finish cleaning up instead of exiting halfway (the
    # signal handlers below ignore further signals before they exit).
    trap '' INT TERM HUP
    # Our copies of the pipes' write ends, if a signal came before QEMU had
    # them: their readers end only once every writer is gone.
    if [[ -n ${log_fd:-} ]]; then
        exec {log_fd}>&-
    fi
    if [[ -n ${err_fd:-} ]]; then
        exec {err_fd}>&-
    fi
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    # defmt-print and tee end at end of input, once QEMU's ends of their
    # pipes close.
    if [[ -n $printer_pid ]]; then
        wait "$printer_pid" 2>/dev/null || true
    fi
    if [[ -n $stderr_pid ]]; then
        wait "$stderr_pid" 2>/dev/null || true
    fi
    # Last: tee creates the file when it starts, which may be after a
    # signal that came early.
    if [[ -n $qemu_stderr ]]; then
        rm -f "$qemu_stderr"
    fi
}

# Whether TCP or UDP port $1 is bound on any local address, from /proc/net
# (false where that cannot be read).
port_bound() { # PORT
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/udp /proc/net/tcp6 /proc/net/udp6 2>/dev/null
}

# A RICOCHET_PORT to suggest instead of $1: the first of +1000, +2000, ...
# (wrapping within 1024-65532) whose three ports are free now; empty if none.
free_port_after() { # PORT
    local k cand
    for ((k = 1; k <= 64; k++)); do
        # Bash's % keeps the sign: a port below 1024 would give a negative
        # remainder and a privileged port (9 gave 1009).
        cand=$((1024 + (($1 + 1000 * k - 1024) % 64509 + 64509) % 64509))
        if [[ $cand != "$1" ]] && ! port_bound "$cand" && ! port_bound $((cand + 1)) &&
            ! port_bound $((cand + 2)); then
            echo "$cand"
            return
        fi
    done
}

# QEMU names only the first forwarding rule it could not set up, and no
# fix: say which port is taken and how to forward others instead.
explain_busy_port() { # QEMU_STDERR
    local rule proto busy var suggest
    rule=$(sed -n "s/.*Could not set up host forwarding rule '\([^']*\)'.*/\1/p" "$1" | head -n 1)
    [[ -n $rule ]] || return 0
    # tcp:127.0.0.1:7777-:7
    proto=${rule%%:*}
    busy=${rule#*:127.0.0.1:}
    busy=${busy%%-*}
    var=RICOCHET_PORT
    if [[ $busy != "$port" && -n ${RICOCHET_LINES_PORT:-} && $busy == "$lines_port" ]]; then
        var=RICOCHET_LINES_PORT
    elif [[ $busy != "$port" && -n ${RICOCHET_FRAMES_PORT:-} && $busy == "$frames_port" ]]; then
        var=RICOCHET_FRAMES_PORT
    fi
    if [[ $var == RICOCHET_PORT ]]; then
        suggest=$(free_port_after "$port")
        echo "qemu-run.sh: cannot forward 127.0.0.1:${busy} (${proto}): in use (another QEMU board?);" \
            "stop what holds it, or forward other ports, e.g. RICOCHET_PORT=${suggest:-PORT} cargo run --release" \
            "(it forwards RICOCHET_PORT, +1 and +2)" >&2
    else
        echo "qemu-run.sh: cannot forward 127.0.0.1:${busy} (${proto}): in use (another QEMU board?);" \
            "stop what holds it, or set ${var} to a free port" >&2
    fi
}
trap cleanup EXIT
# A second signal while the first one's handler runs would run `exit`
# again inside `cleanup`, cutting it short (a temporary file left behind,
# seen under load): each handler ignores further signals first.
trap "trap '' INT TERM HUP; exit 130" INT
trap "trap '' INT TERM HUP; exit 143" TERM
trap "trap '' INT TERM HUP; exit 129" HUP

# The decoder reads from a pipe whose only writer is QEMU.
exec {log_fd}> >(exec defmt-print -e "$elf")
printer_pid=$!

# QEMU's messages still reach stderr at once; a copy is kept to explain a
# refused forwarding rule. tee ignores the signals that stop the group, so
# QEMU's last words ("terminating on signal 15") still get through: it ends
# when QEMU's end of the pipe closes.
qemu_stderr=$(mktemp "${TMPDIR:-/tmp}/qemu-run.XXXXXX")
exec {err_fd}> >(
    trap '' INT TERM HUP
    exec tee -a "$qemu_stderr" >&2
)
stderr_pid=$!

# Each machine's default CPU is the one its board has (QEMU refuses others).
"${pdeath[@]}" qemu-system-arm \
    -machine "$machine" \
    -nographic \
    -monitor none \
    -serial null \
    -semihosting-config enable=on,target=native \
    -nic "$nic" \
    -kernel "$elf" \
    "$@" >&"$log_fd" 2>&"$err_fd" &
qemu_pid=$!
exec {log_fd}>&- {err_fd}>&-
log_fd= err_fd=

status=0
wait "$qemu_pid" || status=$?
qemu_pid=
wait "$printer_pid" || true
printer_pid=
wait "$stderr_pid" || true
stderr_pid=
if [[ $status -ne 0 && -z ${RICOCHET_NETDEV:-} ]]; then
    explain_busy_port "$qemu_stderr"
fi
exit "$status"
