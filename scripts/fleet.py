#!/usr/bin/env python3
"""A fleet on one machine (docs/BENCHMARKS.md, "Fleet"): PostgreSQL, two
authtoken-server replicas and N client machines, each machine a network
namespace (a veth on a bridge of this test's own network, 198.18.0.0/16,
the benchmarking range: nothing leaves the machine) and a mount namespace
with its own /var/lib, nsswitch.conf, passwd, group, shadow, sudoers,
pam.d and /home (its config, CA and device identity live in its own
directory, which its pam.d names). Every machine joins with `authtoken
join` (its key made there), lists both replicas, has network users and
offline login on, and runs a workload of real logins through libpam
(pamtester, su, sudo -v) whose every outcome is known in advance, while
faults come on a schedule that is the same every run. Run by
scripts/fleet.sh, which builds first; writes target/fleet/report.json and
prints a table; exits 1 on any wrong outcome or lost state.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
PREFIX = "fleet-"  # network namespaces, so a leftover is easy to find
PORT = 8443
REPLICAS = {"a": "198.18.0.2", "b": "198.18.0.3"}
PROBE_ADDRESS = "198.18.0.9"
ITERATIONS = "4096"
# Attempts that start this close to a fault's start or end may see either
# side of it: a grant or a refusal of a right password is then expected,
# never a grant of a wrong one.
SETTLE_S = 6.0


def log(text):
    print(f"fleet: {text}", flush=True)


def run(*args, input=None, timeout=120, check=True, env=None):
    """A command's completed process (text); raises on failure when check."""
    done = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def password(user):
    return f"pw-{user}"


class Postgres:
    """A cluster of its own (initdb, pg_ctl) on a Unix socket, durable
    commits (fsync on), run as the postgres account."""

    def __init__(self, work):
        self.dir = work / "pg"
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".")])
        self.bin = bins[-1]
        self.as_postgres(self.bin / "initdb", "-A", "trust", "-U", "postgres", "-D", self.dir / "data")
        self.start()
        self.as_postgres("psql", "-X", "-q", "-d", self.url("postgres"), "-c", "CREATE DATABASE fleet")

    def as_postgres(self, *args):
        return run("runuser", "-u", "postgres", "--", *args)

    def url(self, name="fleet"):
        return f"postgresql:///{name}?host={self.dir}&user=postgres"

    def start(self):
        self.as_postgres(self.bin / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "log", "-w", "-o",
                         f"-k {self.dir} -c listen_addresses='' -c max_connections=200", "start")

    def stop(self):
        run("runuser", "-u", "postgres", "--", self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "fast",
            "-w", "stop", check=False)


class Net:
    """The bridge (in a namespace of its own) and one veth per node."""

    def __init__(self):
        self.namespaces = []
        self.add_namespace("sw")
        self.ip("sw", "link", "add", "br0", "type", "bridge")
        self.ip("sw", "link", "set", "br0", "up")

    def add_namespace(self, name):
        run("ip", "netns", "add", PREFIX + name)
        self.namespaces.append(PREFIX + name)
        self.ip(name, "link", "set", "lo", "up")

    def ip(self, name, *args):
        return run("ip", "-n", PREFIX + name, *args)

    def node(self, name, address):
        """A namespace NAME linked to the bridge with ADDRESS/16 on eth0."""
        self.add_namespace(name)
        peer = f"v-{name}"[:15]
        run("ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", PREFIX + name)
        run("ip", "link", "set", peer, "netns", PREFIX + "sw")
        self.ip("sw", "link", "set", peer, "master", "br0", "up")
        self.ip(name, "addr", "add", f"{address}/16", "dev", "eth0")
        self.ip(name, "link", "set", "eth0", "up")

    def link(self, name, up):
        self.ip(name, "link", "set", "eth0", "up" if up else "down")

    def remove(self):
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)


class Replica:
    def __init__(self, name, work, store_url, tls, extra=()):
        self.name, self.work, self.store_url, self.tls, self.extra = name, work, store_url, tls, list(extra)
        self.address = REPLICAS[name]
        self.process = None
        self.log = work / f"replica-{name}.log"
        self.cpu_spent = 0.0  # CPU of earlier lives (it is killed and restarted)
        self.metrics_spent = {}  # counters of earlier lives, from just before the kill

    def url(self):
        return f"https://{self.address}:{PORT}/checkin"

    def start(self):
        store = ["--users", self.store_url] if self.store_url.startswith("/") else ["--store", self.store_url]
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", PREFIX + "replica-" + self.name, BIN / "authtoken-server", "serve",
             "--listen", f"{self.address}:{PORT}", *store,
             "--tls-cert", self.tls / "server.pem", "--tls-key", self.tls / "server.key",
             # Devices (the machines) get a budget of their own; the
             # probes, without a certificate, the account's shared one.
             "--client-ca", self.tls / "ca.pem", "--client-cert-optional", "--enroll-dir", self.tls,
             "--metrics-listen", "127.0.0.1:9464", *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        for _ in range(200):
            if f"listening on {self.address}:{PORT}" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"replica {self.name} did not start: {self.log.read_text()[-2000:]}")

    def cpu(self):
        """utime + stime of this life, in seconds."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def kill(self, keep_counters=False):
        if self.process and self.process.poll() is None:
            if keep_counters:
                for key, value in self.metrics().items():
                    self.metrics_spent[key] = self.metrics_spent.get(key, 0) + value
            self.cpu_spent += self.cpu()
            self.process.kill()
            self.process.wait()

    def metrics(self):
        done = run("ip", "netns", "exec", PREFIX + "replica-" + self.name, "curl", "-s",
                   "http://127.0.0.1:9464/metrics", check=False, timeout=10)
        values = {}
        for line in done.stdout.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    values[key] = float(value)
                except ValueError:
                    pass
        return values


class Machine:
    """A client machine: its namespaces, its files, what it has seen."""

    def __init__(self, index, fleet):
        self.index = index
        self.name = f"m{index:03d}"
        self.fleet = fleet
        self.dir = fleet.work / "machines" / self.name
        self.signed_in = set()  # users with an offline verifier here
        self.revoked = False
        self.nsfile = fleet.work / "ns" / self.name
        self.address = f"198.18.{1 + index // 250}.{1 + index % 250}"

    def setup(self):
        fleet = self.fleet
        etc = self.dir / "etc"
        for d in (etc, self.dir / "var-lib", self.dir / "cache"):
            d.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        config = (f"# machine {self.name}\nbackend = \"mdm\"\nurl = \"https://authority.invalid/checkin\"\n"
                  f"helper = \"{BIN / 'authtoken-helper'}\"\nhelper_user = \"nobody\"\n"
                  f"cache_dir = \"{self.dir / 'cache'}\"\nmin_scram_iterations = {ITERATIONS}\n"
                  f"timeout_ms = 8000\nconnect_timeout_ms = 1000\n"
                  f"udid = \"{str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name + '.fleet')).upper()}\"\n\n"
                  f"[offline]\nenabled = true\n")
        (etc / "authtoken.toml").write_text(config)
        for name in ("passwd", "group", "shadow"):
            shutil.copy(fleet.work / name, self.dir / name)
        os.chmod(self.dir / "shadow", 0o640)
        self.config = etc / "authtoken.toml"
        pam = self.dir / "pam.d"
        pam.mkdir()
        module = BIN / "libpam_authtoken.so"
        stack = (f"auth [success=done default=ignore] {module} config={self.config}\n"
                 "auth required pam_unix.so\naccount required pam_unix.so\n"
                 "password required pam_deny.so\nsession required pam_unix.so\n")
        for service in ("login", "sudo"):
            (pam / service).write_text(stack)
        (pam / "su").write_text("auth sufficient pam_rootok.so\n" + stack)
        (pam / "other").write_text("auth required pam_deny.so\naccount required pam_deny.so\n")
        mounts = [
            f"mount --bind {self.dir / 'var-lib'} /var/lib",
            f"mount --bind {fleet.work / 'nsswitch.conf'} /etc/nsswitch.conf",
            f"mount --bind {self.dir / 'passwd'} /etc/passwd",
            f"mount --bind {self.dir / 'group'} /etc/group",
            f"mount --bind {self.dir / 'shadow'} /etc/shadow",
            f"mount --bind {fleet.work / 'sudoers'} /etc/sudoers",
            f"mount --bind {pam} /etc/pam.d",
            "mount -t tmpfs -o mode=0755 tmpfs /home",
            # The NSS module where glibc looks, read-only over the system's.
            f"mount -t overlay overlay -o lowerdir={fleet.nsslib}:{fleet.libdir} {fleet.libdir}",
        ]
        self.nsfile.touch()
        run("unshare", f"--mount={self.nsfile}", "--propagation", "private", "sh", "-ec", "\n".join(mounts))

    def command(self, *args):
        return ["nsenter", f"--mount={self.nsfile}", f"--net=/run/netns/{PREFIX}{self.name}", "--", *map(str, args)]

    def run(self, *args, input=None, timeout=60):
        return subprocess.run(self.command(*args), input=input, capture_output=True, text=True, timeout=timeout)

    def join(self, line):
        done = self.run(BIN / "authtoken", "join", *line, "--name", self.name, "--network-users",
                        "--config", self.config, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: join: {done.stderr}")
        # Both replicas, in the order this machine prefers (half the fleet
        # starts with each), as an administrator lists them.
        config = self.config
        first, second = (REPLICAS["a"], REPLICAS["b"]) if self.index % 2 == 0 else (REPLICAS["b"], REPLICAS["a"])
        text = config.read_text()
        joined = [l for l in text.splitlines() if l.startswith("url = ")][0]
        text = text.replace(joined, f"url = [\"https://{first}:{PORT}/checkin\", \"https://{second}:{PORT}/checkin\"]")
        config.write_text(text)

    def remove(self):
        subprocess.run(["umount", self.nsfile], capture_output=True)


# ---- the workload ---------------------------------------------------------

KINDS = [
    # kind, weight
    ("network_right", 40),
    ("network_wrong", 10),
    ("local_right", 8),
    ("local_wrong", 4),
    ("unmanaged", 8),
    ("newcomer", 6),
    ("leaver", 6),
    ("su", 8),
    ("sudo", 6),
]


class Fleet:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="authtoken-fleet.", dir="/tmp"))
        os.chmod(self.work, 0o755)
        self.records = []
        self.lock = threading.Lock()
        self.events = {}  # name -> time
        self.phases = []  # (name, start, end)
        self.stop = threading.Event()
        self.machines = []
        self.net = None
        self.pg = None
        self.replicas = {}
        self.probes = []
        self.removed_user_served = []
        self.resolved = {}  # machine -> time the newcomer resolved
        self.vanished = {}  # machine -> time the leaver vanished
        self.network_users = [f"net{i:03d}" for i in range(max(8, min(40, args.machines)))]

    # -- set-up --
    def setup(self):
        args = self.args
        log(f"{args.machines} machines, {args.seconds} s, work directory {self.work}")
        self.pg = Postgres(self.work)
        url = self.pg.url()
        server = BIN / "authtoken-server"
        tls = self.work / "tls"
        run(server, "gen-tls", tls, "--host", REPLICAS["a"], "--host", REPLICAS["b"])
        # The users, written to a TOML store and imported into the database.
        users = self.work / "users.toml"
        add = lambda user, *extra: run(server, "add-user", users, user, "--iterations", ITERATIONS, *extra,
                                       input=password(user) + "\n")
        for user in self.network_users + ["netwrong", "leaver", "replayed", "guessed"]:
            add(user)
        run(server, "add-user", users, "unmanaged1", "--policy", "unmanaged", "--no-account", input="")
        run(server, "migrate", url)
        run(server, "import-store", users, url)
        # The machines' own files: the host's, plus two local accounts
        # (one the authority does not know, one it calls unmanaged).
        shadow_hash = {u: run("openssl", "passwd", "-6", "-salt", "fleetsalt", password(u)).stdout.strip()
                       for u in ("local1", "unmanaged1")}
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        shadow = Path("/etc/shadow").read_text()
        for n, user in enumerate(("local1", "unmanaged1")):
            passwd += f"{user}:x:{5001 + n}:{5001 + n}::/home/{user}:/bin/sh\n"
            group += f"{user}:x:{5001 + n}:\n"
            shadow += f"{user}:{shadow_hash[user]}:19000:0:99999:7:::\n"
        (self.work / "passwd").write_text(passwd)
        (self.work / "group").write_text(group)
        (self.work / "shadow").write_text(shadow)
        nsswitch = "".join(
            (line + " authtoken\n") if line.split(":")[0] in ("passwd", "group") else line + "\n"
            for line in Path("/etc/nsswitch.conf").read_text().splitlines())
        (self.work / "nsswitch.conf").write_text(nsswitch)
        sudoers = self.work / "sudoers"
        sudoers.write_text("Defaults !lecture\nroot ALL=(ALL) ALL\n" + "".join(f"{u} ALL=(ALL) ALL\n" for u in self.network_users))
        os.chmod(sudoers, 0o440)
        self.nsslib = self.work / "nsslib"
        self.nsslib.mkdir()
        shutil.copy(BIN / "libnss_authtoken.so", self.nsslib / "libnss_authtoken.so.2")
        files = [l.split()[-1] for l in run("ldconfig", "-p").stdout.splitlines() if "libnss_files.so.2" in l][0]
        self.libdir = Path(os.path.realpath(files)).parent

        self.net = Net()
        for name, address in REPLICAS.items():
            self.net.node("replica-" + name, address)
        self.net.node("probe", PROBE_ADDRESS)
        nsdir = self.work / "ns"
        nsdir.mkdir()
        run("mount", "--bind", nsdir, nsdir)
        run("mount", "--make-private", nsdir)
        self.ns_mounted = True
        b_store = url
        if args.inject == "unshared-replica":
            # The fault a run must catch: replica B serving its own copy of
            # the store (the same secret) instead of the shared database, so
            # a response one replica accepted is accepted again by the other.
            copy = self.work / "copy.toml"
            shutil.copy(users, copy)
            b_store = str(copy)
        self.replicas = {"a": Replica("a", self.work, url, tls), "b": Replica("b", self.work, b_store, tls)}
        for replica in self.replicas.values():
            replica.start()
        line = run(server, "join-token", url, "--url", self.replicas["a"].url(), "--ca", tls / "ca.pem",
                   "--uses", str(args.machines), "--expires", "1h").stdout
        join = [l for l in line.splitlines() if l.startswith("authtoken join ")][0].split()[2:]
        log("joining the machines")
        for i in range(args.machines):
            machine = Machine(i, self)
            self.net.node(machine.name, machine.address)
            machine.setup()
            machine.join(join)
            self.machines.append(machine)

    # -- the schedule --
    def schedule(self):
        s = self.args.seconds
        db = min(20.0, s * 0.2)
        return [
            # (time, event)
            (0.12 * s, "replica_a_killed"),
            (0.27 * s, "replica_a_back"),
            (0.35 * s, "database_stopped"),
            (0.35 * s + db, "database_back"),
            (0.35 * s + db + 0.08 * s, "machines_cut_off"),
            (0.35 * s + db + 0.20 * s, "machines_back"),
            (0.35 * s + db + 0.25 * s, "user_added_removed"),
            (0.35 * s + db + 0.28 * s, "device_revoked"),
        ]

    def cut_group(self):
        return self.machines[: max(1, len(self.machines) // 4)]

    def phase_at(self, t):
        for name, start, end in self.phases:
            if start <= t < end:
                return name
        return "steady"

    def near_event(self, t):
        return any(abs(t - at) < SETTLE_S for at in self.events.values())

    def event(self, name):
        now = time.time()
        log(f"{now - self.t0:6.1f} s: {name}")
        if name == "replica_a_killed":
            self.replicas["a"].kill(keep_counters=True)
        elif name == "replica_a_back":
            self.replicas["a"].start()
            self.phases.append(("replica_a_killed", self.events["replica_a_killed"], now))
        elif name == "database_stopped":
            self.pg.stop()
        elif name == "database_back":
            self.pg.start()
            self.phases.append(("database_stopped", self.events["database_stopped"], now))
        elif name == "machines_cut_off":
            for machine in self.cut_group():
                self.net.link(machine.name, False)
        elif name == "machines_back":
            for machine in self.cut_group():
                self.net.link(machine.name, True)
            self.phases.append(("machines_cut_off", self.events["machines_cut_off"], now))
        elif name == "user_added_removed":
            server = BIN / "authtoken-server"
            run(server, "add-user", self.pg.url(), "newcomer", "--iterations", ITERATIONS,
                input=password("newcomer") + "\n")
            run(server, "remove-user", self.pg.url(), "leaver")
        elif name == "device_revoked":
            self.phases.append(("user_added_removed", self.events["user_added_removed"], now))
            victim = self.machines[-1]
            run(BIN / "authtoken-server", "revoke-device", self.pg.url(), victim.name)
            victim.revoked = True
        self.events[name] = time.time()

    # -- one machine's workload --
    def expected(self, machine, kind, user, t):
        """What may come of an attempt starting at t: a set of outcomes
        ("granted", "refused")."""
        added = self.events.get("user_added_removed")
        near = self.near_event(t) or any(abs(t - end) < SETTLE_S for _, _, end in self.phases)
        right = kind in ("network_right", "local_right", "unmanaged", "newcomer", "leaver", "su", "sudo")
        if not right:
            return {"refused"}
        if kind in ("local_right", "unmanaged"):
            return {"granted"}  # pam_unix decides, online or not
        if kind == "newcomer" and (added is None or t < added + SETTLE_S):
            return {"refused"} if added is None else {"granted", "refused"}
        if kind == "leaver" and added is not None:
            return {"refused"} if t >= added + SETTLE_S else {"granted", "refused"}
        cut = machine in self.cut_group() and "machines_cut_off" in self.events and "machines_back" not in self.events
        down = "database_stopped" in self.events and "database_back" not in self.events
        if near:
            return {"granted", "refused"}
        if cut or down:
            # No authority: an offline verifier from an earlier sign-in here.
            return {"granted"} if user in machine.signed_in else {"refused"}
        return {"granted"}

    def attempt(self, machine, rng):
        kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
        users = self.network_users
        # Wrong passwords go to a user never signed in right, so no offline
        # verifier is locked by failures in a row during an outage.
        user = {"network_right": rng.choice(users), "network_wrong": "netwrong",
                "su": rng.choice(users), "sudo": rng.choice(users),
                "local_right": "local1", "local_wrong": "local1", "unmanaged": "unmanaged1",
                "newcomer": "newcomer", "leaver": "leaver"}[kind]
        secret = password(user) if kind not in ("network_wrong", "local_wrong") else "not-" + password(user)
        t = time.time()
        expected = self.expected(machine, kind, user, t)
        if kind in ("su", "sudo"):
            # Through the real setuid programs, as a local user (su) or as
            # the network user herself (sudo -v), which needs her account
            # from the NSS cache.
            entry = machine.run("getent", "passwd", user)
            if entry.returncode != 0:
                return None
            if kind == "su":
                argv = ["setpriv", "--reuid=local1", "--regid=local1", "--init-groups", "su", "-c", "true", user]
            else:
                uid = entry.stdout.split(":")[2]
                argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sudo", "-S", "-k", "-v"]
        else:
            argv = ["pamtester", "login", user, "authenticate"]
        started = time.monotonic()
        detail = ""
        try:
            done = machine.run("timeout", "40", *argv, input=secret + "\n", timeout=60)
            outcome = "granted" if done.returncode == 0 else "refused"
            detail = (done.stdout + done.stderr).strip()[-300:]
        except subprocess.TimeoutExpired:
            outcome = "refused"
            detail = "timed out"
        ms = (time.monotonic() - started) * 1000
        if outcome == "granted" and kind in ("network_right", "su", "sudo", "newcomer", "leaver"):
            # An online grant left a verifier (an offline one found one).
            machine.signed_in.add(user)
        record = {"t": t, "machine": machine.name, "kind": kind, "user": user, "expected": sorted(expected),
                  "outcome": outcome, "ms": round(ms, 1), "phase": None,
                  "detail": detail if outcome not in expected else ""}
        with self.lock:
            self.records.append(record)

    def sync(self, machine):
        done = machine.run(BIN / "authtoken-helper", "sync", "--config", machine.config, timeout=60)
        now = time.time()
        if done.returncode == 0:
            removed = self.events.get("user_added_removed")
            # A cache entry for a removed user still served after the next
            # successful sync is lost state.
            if removed is not None and now > removed + 2:
                if machine.run("getent", "passwd", "leaver").returncode == 0:
                    with self.lock:
                        self.removed_user_served.append({"machine": machine.name, "t": now})
        return done.returncode == 0

    def workload(self, machine):
        """Logins at the fleet's pace (RATE a second over all machines)."""
        rng = random.Random(machine.index)
        interval = max(0.6, self.args.machines / self.args.rate)
        self.stop.wait(rng.uniform(0, interval))
        while not self.stop.is_set():
            self.attempt(machine, rng)
            self.stop.wait(rng.uniform(0.5 * interval, 1.5 * interval))

    def timer(self, machine):
        """What the sync timer does, every 10 s (the packaged timer's
        schedule, shortened for the run), and after the user change a
        lookup every second until the machine has caught up."""
        rng = random.Random(1000 + machine.index)
        next_sync = time.time() + rng.uniform(0, 10)
        while not self.stop.is_set():
            now = time.time()
            if now >= next_sync:
                self.sync(machine)
                next_sync = now + 10
            added = self.events.get("user_added_removed")
            if added is not None and not machine.revoked:
                if machine.name not in self.resolved and machine.run("getent", "passwd", "newcomer").returncode == 0:
                    self.resolved[machine.name] = time.time() - added
                if machine.name not in self.vanished and machine.run("getent", "passwd", "leaver").returncode != 0:
                    self.vanished[machine.name] = time.time() - added
            self.stop.wait(1.0)

    def probe(self, kind, user):
        urls = ",".join(r.url() for r in self.replicas.values())
        out = open(self.work / f"probe-{kind}.jsonl", "w")
        process = subprocess.Popen(
            ["ip", "netns", "exec", PREFIX + "probe", BIN / "authtoken-bench", "fleet-probe", "--kind", kind,
             "--url", urls, "--ca", self.work / "tls" / "ca.pem", "--user", user,
             "--seconds", str(self.args.seconds), "--pause-ms", "300" if kind == "replay" else "150"],
            stdin=subprocess.PIPE, stdout=out, stderr=open(self.work / f"probe-{kind}.log", "w"), text=True)
        process.stdin.write(password(user) + "\n")
        process.stdin.close()
        self.probes.append(process)

    def go(self):
        self.t0 = time.time()
        before = {name: (r.metrics(), r.cpu()) for name, r in self.replicas.items()}
        self.metrics_before = before
        self.probe("replay", "replayed")
        self.probe("guess", "guessed")
        workers = [threading.Thread(target=job, args=(m,), daemon=True)
                   for m in self.machines for job in (self.workload, self.timer)]
        for w in workers:
            w.start()
        for at, name in self.schedule():
            delay = self.t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)
            self.event(name)
        delay = self.t0 + self.args.seconds - time.time()
        if delay > 0:
            time.sleep(delay)
        self.phases.append(("device_revoked", self.events["device_revoked"], time.time()))
        # Convergence: every machine that can sync resolves the newcomer and
        # loses the leaver (bounded).
        deadline = time.time() + 60
        live = {m.name for m in self.machines if not m.revoked}
        while time.time() < deadline and not (live <= set(self.resolved) and live <= set(self.vanished)):
            time.sleep(1)
        self.stop.set()
        for w in workers:
            w.join(timeout=120)
        for p in self.probes:
            p.wait(timeout=60)
        self.t1 = time.time()

    # -- the report --
    def report(self):
        for record in self.records:
            record["phase"] = self.phase_at(record["t"])
        wrong = [r for r in self.records if r["outcome"] not in r["expected"]]
        wrong_grants = [r for r in wrong if r["outcome"] == "granted"]

        def percentile(values, p):
            values = sorted(values)
            return values[min(len(values) - 1, int(round((len(values) - 1) * p)))] if values else None

        phases = {}
        for name in ["steady"] + [p[0] for p in self.phases]:
            rs = [r for r in self.records if r["phase"] == name]
            logins = [r["ms"] for r in rs if r["outcome"] == "granted"]
            phases[name] = {
                "attempts": len(rs),
                "granted": sum(r["outcome"] == "granted" for r in rs),
                "refused": sum(r["outcome"] == "refused" for r in rs),
                "wrong": sum(r in wrong for r in rs),
                "login_p50_ms": percentile(logins, 0.5),
                "login_p99_ms": percentile(logins, 0.99),
            }
            span = [p for p in self.phases if p[0] == name]
            if span:
                phases[name]["start_s"] = round(span[0][1] - self.t0, 1)
                phases[name]["end_s"] = round(span[0][2] - self.t0, 1)
        attempts = {}
        for r in self.records:
            attempts[r["kind"]] = attempts.get(r["kind"], 0) + 1

        def lines(kind):
            try:
                return [json.loads(l) for l in (self.work / f"probe-{kind}.jsonl").read_text().splitlines() if l]
            except (OSError, ValueError):
                return []

        replays = lines("replay")
        guesses = lines("guess")
        replays_accepted = sum(l.get("replays_accepted", 0) for l in replays)
        evaluated = sorted(l["t"] for l in guesses if l.get("evaluated"))
        # No 60-second window holds more wrong proofs evaluated than the
        # budget (30 a minute for an account without a device).
        worst = 0
        j = 0
        for i, t in enumerate(evaluated):
            while evaluated[j] <= t - 60:
                j += 1
            worst = max(worst, i - j + 1)
        guesses_granted = sum(1 for l in guesses if l.get("granted"))

        after = {name: (r.metrics(), r.cpu() + r.cpu_spent) for name, r in self.replicas.items()}
        replicas = {}
        judges = tokens = evaluated_proofs = throttled = 0.0
        for name, replica in self.replicas.items():
            m0, c0 = self.metrics_before[name]
            m1, c1 = after[name]
            # A restarted replica's counters start over: its earlier life's
            # were kept just before the kill.
            m1 = {k: m1.get(k, 0) + replica.metrics_spent.get(k, 0) for k in set(m1) | set(replica.metrics_spent)}
            base = m0
            key_r = 'authtoken_requests_total{step="response",outcome="token"}'
            key_s = 'authtoken_store_duration_seconds_count{operation="judge"}'
            responses = sum(v - base.get(k, 0) for k, v in m1.items()
                            if k.startswith('authtoken_requests_total{step="response"'))
            challenges = sum(v - base.get(k, 0) for k, v in m1.items()
                             if k.startswith('authtoken_requests_total{step="challenge"'))
            handshakes = responses
            judges += m1.get(key_s, 0) - base.get(key_s, 0)
            key_e = "authtoken_proofs_evaluated_total"
            evaluated_proofs += m1.get(key_e, 0) - base.get(key_e, 0)
            throttled += sum(v - base.get(k, 0) for k, v in m1.items()
                             if k.startswith('authtoken_requests_total{step="response",outcome="throttled"'))
            tokens += m1.get(key_r, 0) - base.get(key_r, 0)
            cpu = c1 - c0
            replicas[name] = {
                "challenges": int(challenges),
                "responses": int(responses),
                "cpu_s": round(cpu, 2),
                "cpu_us_per_handshake": round(cpu * 1e6 / handshakes, 1) if handshakes else None,
            }
        live = [m.name for m in self.machines if not m.revoked]
        report = {
            "machines": len(self.machines),
            "seconds": self.args.seconds,
            "inject": self.args.inject,
            "attempts": attempts,
            "attempts_total": len(self.records),
            "wrong": len(wrong),
            "wrong_grants": len(wrong_grants),
            "wrong_examples": wrong[:10],
            "lost": {
                "replays_accepted": replays_accepted,
                "replay_probe_logins": sum(1 for l in replays if l.get("granted")),
                "budget_exceeded": max(0, worst - 30),
                "budget_most_in_a_minute": worst,
                "guesses_granted": guesses_granted,
                "removed_user_served": len(self.removed_user_served),
            },
            "phases": phases,
            "convergence_s": {
                "added_user_resolved_everywhere": round(max(self.resolved[m] for m in live), 1)
                if set(live) <= set(self.resolved) else None,
                "removed_user_gone_everywhere": round(max(self.vanished[m] for m in live), 1)
                if set(live) <= set(self.vanished) else None,
                "machines": len(live),
            },
            "database": {
                # One statement per judged response: a proof evaluated
                # (granted or wrong) or a 429 (the budget read); a 503 none.
                "statements_per_judged_response": round(judges / (evaluated_proofs + throttled), 2)
                if evaluated_proofs + throttled else None,
                "statements": int(judges),
                "tokens": int(tokens),
            },
            "replicas": replicas,
            "events_s": {k: round(v - self.t0, 1) for k, v in self.events.items()},
        }
        return report

    # -- clean-up --
    def cleanup(self):
        self.stop.set()
        for p in self.probes:
            if p.poll() is None:
                p.kill()
                p.wait()
        for replica in self.replicas.values():
            replica.kill()
        for machine in self.machines:
            machine.remove()
        # A machine set up but not yet in the list.
        for nsfile in (self.work / "ns").glob("*") if (self.work / "ns").exists() else []:
            subprocess.run(["umount", nsfile], capture_output=True)
        if getattr(self, "ns_mounted", False):
            subprocess.run(["umount", self.work / "ns"], capture_output=True)
        if self.net:
            self.net.remove()
        if self.pg:
            self.pg.stop()
        if os.environ.get("FLEET_KEEP"):
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def table(report):
    out = [f"fleet: {report['machines']} machines, {report['seconds']} s, {report['attempts_total']} attempts, "
           f"wrong {report['wrong']} (grants that should be refusals: {report['wrong_grants']})"]
    out.append(f"fleet: {'phase':<20} {'attempts':>8} {'granted':>8} {'refused':>8} {'wrong':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, p in report["phases"].items():
        out.append(f"fleet: {name:<20} {p['attempts']:>8} {p['granted']:>8} {p['refused']:>8} {p['wrong']:>6} "
                   f"{p['login_p50_ms'] if p['login_p50_ms'] is not None else '-':>8} "
                   f"{p['login_p99_ms'] if p['login_p99_ms'] is not None else '-':>8}")
    out.append("fleet: attempts by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(report["attempts"].items())))
    lost = report["lost"]
    out.append(f"fleet: lost or doubled state: replays accepted {lost['replays_accepted']} (of "
               f"{lost['replay_probe_logins']} probe logins replayed to both replicas), budget exceeded "
               f"{lost['budget_exceeded']} (most wrong proofs evaluated in a minute: {lost['budget_most_in_a_minute']}, "
               f"budget 30), removed user served after a sync {lost['removed_user_served']}")
    c = report["convergence_s"]
    out.append(f"fleet: convergence over {c['machines']} machines: added user resolves everywhere in "
               f"{c['added_user_resolved_everywhere']} s, removed user gone everywhere in {c['removed_user_gone_everywhere']} s")
    d = report["database"]
    out.append(f"fleet: database: {d['statements']} statements, {d['statements_per_judged_response']} per judged response "
               f"({d['tokens']} tokens issued)")
    for name, r in report["replicas"].items():
        out.append(f"fleet: replica {name}: {r['responses']} responses, CPU {r['cpu_us_per_handshake']} us per handshake")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--quick", action="store_true", help="8 machines, 60 s (what scripts/test.sh runs)")
    parser.add_argument("--rate", type=float, default=6.0, help="logins a second, fleet-wide")
    parser.add_argument("--inject", choices=["unshared-replica"],
                        help="a fault the run must catch: replica B on a copy of the store")
    parser.add_argument("--report", default=str(ROOT / "target" / "fleet" / "report.json"))
    args = parser.parse_args()
    if args.quick:
        args.machines, args.seconds = 8, 60.0
    if os.geteuid() != 0:
        sys.exit("fleet: run as root")
    fleet = Fleet(args)
    stopped = []

    def interrupted(signum, _frame):
        stopped.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        fleet.setup()
        fleet.go()
        report = fleet.report()
    finally:
        fleet.cleanup()
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    log(f"report: {path}")
    lost = report["lost"]
    converged = report["convergence_s"]
    # A machine that never resolves the added user, or keeps the removed
    # one, within a minute of the run's end holds stale state.
    stale = converged["added_user_resolved_everywhere"] is None or converged["removed_user_gone_everywhere"] is None
    failed = report["wrong"] or lost["replays_accepted"] or lost["budget_exceeded"] or lost["removed_user_served"] \
        or lost["guesses_granted"] or stale
    if failed:
        log("FAIL: wrong outcomes or lost state (above)")
        sys.exit(1)
    log("no wrong outcome, no lost state")


if __name__ == "__main__":
    main()
