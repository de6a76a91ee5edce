"""Helpers shared by loadtest/run and loadtest/conns (standard library only, Linux /proc)."""
import ipaddress
import os
import resource
import socket


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and localhost: the load tools may send traffic nowhere else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now. The caller confirms it won the port with listener_pid()."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _listen_inodes(port):
    """Socket inodes listening on `port` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except FileNotFoundError:
            pass
    return inodes


def listener_pid(port, candidates=None):
    """PID of the process listening on `port`, found through its socket inode in /proc/*/fd;
    None when nobody listens or the owner is not visible to us. `candidates` limits the scan."""
    inodes = _listen_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = candidates if candidates is not None else [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}") in wanted:
                        return int(pid)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def proc_status(pid, key):
    """A field of /proc/PID/status in kB (VmRSS, VmHWM, ...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nofile_limit(pid):
    """(soft, hard) 'Max open files' of another process, from /proc/PID/limits."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return (int(soft) if soft.isdigit() else soft, int(hard) if hard.isdigit() else hard)
    except OSError:
        pass
    return None


def raise_nofile():
    """Raises our soft open-file limit to the hard limit; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def read_sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().split()
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def usable_cpus():
    """What nproc prints: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
