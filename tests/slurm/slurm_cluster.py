"""A one-node Slurm cluster for tests: munged, slurmctld and slurmd started from a private
directory (config, state, spool, logs, PID files), configured as ../shared/notes/SLURM.md
found works in these sandboxes (no systemd, no cgroup filesystem). Everything it starts is
stopped by PID. Clients find the cluster through SLURM_CONF in the environment it returns."""
import os
import shutil
import signal
import socket
import subprocess
import time


class SlurmUnavailable(Exception):
    pass


def _which(*names):
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        raise SlurmUnavailable("not installed: %s (Debian: slurmctld slurmd slurm-client munge)"
                               % ", ".join(missing))


class Cluster:
    def __init__(self, root):
        self.root = root
        self.conf = os.path.join(root, "slurm.conf")
        self.pids = {}
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = self.conf

    # ---- set-up ----------------------------------------------------------------------------
    def _write_conf(self):
        host = socket.gethostname().split(".")[0]
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout
        node = node.splitlines()[0].strip() if node else "NodeName=%s CPUs=2" % host
        # slurmd -C reports the real hostname; keep it (the node name must match) and pin its
        # address so an unresolvable hostname cannot break the clients.
        for d in ("state", "spool", "log"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        r = self.root
        text = f"""# written by tests/slurm/slurm_cluster.py
ClusterName=tulpartest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.txt
MinJobAge=3600
ReturnToService=2
KillWait=30
SchedulerType=sched/backfill
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(text)
        with open(os.path.join(r, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=cgroup/v1\n")

    def _start_munge(self):
        if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return  # a munged is already running (not ours: leave it)
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        os.chmod("/run/munge", 0o755)
        pidfile = os.path.join(self.root, "munged.pid")
        # munged refuses to run as root; its own pid file must be writable by munge
        os.chmod(self.root, 0o755)
        p = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                            "--pid-file", "/run/munge/munged.tulpartest.pid"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise SlurmUnavailable("munged failed to start: %s" % (p.stderr.strip() or p.stdout))
        for _ in range(50):
            if os.path.exists("/run/munge/munged.tulpartest.pid"):
                break
            time.sleep(0.1)
        with open("/run/munge/munged.tulpartest.pid") as f:
            self.pids["munged"] = int(f.read().strip())
        shutil.copy("/run/munge/munged.tulpartest.pid", pidfile)

    def start(self, timeout=60):
        _which("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munge", "unmunge", "runuser")
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmctld/slurmd needs root")
        self._write_conf()
        self._start_munge()
        for daemon, pidfile in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            p = subprocess.run([daemon, "-f", self.conf], env=self.env, capture_output=True,
                               text=True)
            if p.returncode != 0:
                self.stop()
                raise SlurmUnavailable("%s failed: %s %s" % (daemon, p.stderr, self.log(daemon)))
            path = os.path.join(self.root, pidfile)
            for _ in range(100):
                if os.path.exists(path) and open(path).read().strip():
                    break
                time.sleep(0.1)
            if os.path.exists(path):
                self.pids[daemon] = int(open(path).read().strip())
        t0 = time.time()
        while time.time() - t0 < timeout:
            p = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True,
                               text=True)
            if p.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        state = p.stdout.strip() or p.stderr.strip()
        self.stop()
        raise SlurmUnavailable("node did not become idle within %ds (%s); slurmd log: %s"
                               % (timeout, state, self.log("slurmd")[-1500:]))

    def log(self, daemon):
        path = os.path.join(self.root, "log", daemon + ".log")
        return open(path).read() if os.path.exists(path) else ""

    def stop(self):
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if not pid:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(150):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # ---- jobs ------------------------------------------------------------------------------
    def sbatch(self, args, cwd, env_extra=None):
        env = dict(self.env)
        env.update(env_extra or {})
        p = subprocess.run(["sbatch", "--parsable"] + args, env=env, cwd=cwd, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError("sbatch failed: %s" % p.stderr)
        return p.stdout.strip().split(";")[0]

    def job(self, jobid):
        """scontrol show job as a dict (empty when unknown)."""
        p = subprocess.run(["scontrol", "-o", "show", "job", jobid], env=self.env,
                           capture_output=True, text=True)
        out = {}
        for tok in p.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                out.setdefault(k, v)
        return out

    def wait(self, jobid, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                  "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"),
             timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.job(jobid)
            if j.get("JobState") in states:
                return j
            time.sleep(0.5)
        return self.job(jobid)

    def scancel(self, args):
        return subprocess.run(["scancel"] + args, env=self.env, capture_output=True, text=True)

    def scontrol(self, args):
        return subprocess.run(["scontrol"] + args, env=self.env, capture_output=True, text=True)
