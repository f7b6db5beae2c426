"""Process attacks: see host processes, signal the daemon, the zygote, other sandboxes."""

import os
import signal

from common import attempt


def handler(event, context):
    visible = sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)
    out = {}
    for pid in event["host_pids"]:
        out[f"kill({pid}, 0)"] = attempt(os.kill, pid, 0)
        out[f"kill({pid}, SIGKILL)"] = attempt(os.kill, pid, signal.SIGKILL)
        out[f"pidfd_open({pid})"] = attempt(os.pidfd_open, pid)
        out[f"getpgid({pid})"] = attempt(os.getpgid, pid)
        out[f"stat /proc/{pid}"] = attempt(os.stat, f"/proc/{pid}")
    for group in event["host_pgids"]:
        out[f"killpg({group}, SIGKILL)"] = attempt(os.killpg, group, signal.SIGKILL)
    # "Every process I may signal": inside a pid namespace that is only our own descendants.
    out["kill(-1, SIGKILL)"] = attempt(os.kill, -1, signal.SIGKILL)
    return {
        "attempts": out,
        "visible": visible,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "self_signal": attempt(os.kill, os.getpid(), 0),  # control: signalling works at all
    }
