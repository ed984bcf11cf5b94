//! `authtoken-bench`: the measurements `scripts/bench.sh` cannot take with
//! pamtester and curl. Every figure is printed beside a yardstick measured
//! in the same run, because absolute times drift on shared machines.
//!
//! * `kdf`: PBKDF2-HMAC-SHA256 against the machine's SHA-256 bound (two
//!   single-block compressions per round, the compressions timed here),
//!   and ring's PBKDF2, which the project used before, in the same run.
//! * `load`: full SCRAM handshakes (both `UserAuthenticate` PUTs, the proof,
//!   the server signature checked) over TLS with keep-alive from N client
//!   threads; handshakes/s, p50/p99 latency, and the server's CPU time per
//!   handshake read from `/proc/PID/stat`.
//! * `rss`: a command's peak resident memory.

#![forbid(unsafe_code)]

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_protocol::kdf;
use authtoken_protocol::mdm::{self, UserIdentity};
use authtoken_protocol::scram::{self, Keys};
use clap::{Parser, Subcommand};
use plist::Value;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "authtoken-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProbeKind {
    Replay,
    Guess,
}

#[derive(Subcommand)]
enum Command {
    /// PBKDF2-HMAC-SHA256 against the SHA-256 compression bound.
    Kdf {
        /// PBKDF2 rounds.
        #[arg(long, default_value_t = 600_000)]
        rounds: u32,
        /// Measurements of each, alternating.
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// Full SCRAM handshakes against an authority; the password is the
    /// first line of stdin.
    Load {
        /// The check-in URL (https); several (comma-separated) spread the
        /// clients over replicas, each client keeping to one.
        #[arg(long, value_delimiter = ',', required = true)]
        url: Vec<String>,
        /// CA certificate (PEM) the server's certificate chains to.
        #[arg(long)]
        ca: PathBuf,
        /// The user to sign in (a SCRAM user of the store).
        #[arg(long)]
        user: String,
        /// Concurrent clients, one run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        clients: Vec<usize>,
        /// Length of each run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// The servers' pids (comma-separated), for their CPU time per
        /// handshake.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// A yardstick server (nginx) answering the same two PUTs with the
        /// authority's fixed replies at URL/first and URL/second: driven
        /// by the same generator, alternating with the authority, and its
        /// CPU per handshake set beside the authority's.
        #[arg(long, requires = "yardstick_pid")]
        yardstick_url: Option<String>,
        /// The yardstick's pids (comma-separated: master and worker).
        #[arg(long, value_delimiter = ',')]
        yardstick_pid: Vec<u32>,
        /// Write the authority's two replies of a first handshake into
        /// DIR (challenge.plist, token.plist): the yardstick's bodies.
        #[arg(long)]
        save_replies: Option<PathBuf>,
    },
    /// Writes a TOML user store of N SCRAM users (`user0`…, all with the
    /// password on stdin at 4096 rounds, each with a POSIX account) to
    /// FILE: the 100,000-user store of the store benchmark.
    StoreFixture {
        #[arg(long)]
        users: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the NSS fixture of N network users into DIR: `passwd` (the
    /// machine's own lines, then the N users, for libnss_files), `directory`
    /// (the same users as the NSS cache, for libnss_authtoken) and `names`
    /// (a sample to look up, spread over the whole list).
    NssFixture {
        #[arg(long)]
        users: u32,
        #[arg(long)]
        dir: PathBuf,
    },
    /// getpwnam_r through glibc for every name in NAMES, ROUNDS times over;
    /// prints the median nanoseconds per lookup of the rounds. Every name
    /// must be found (the source is what nsswitch.conf says).
    Getpwnam {
        #[arg(long)]
        names: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// The first check-in's time for names the store knows (`user0`…, as
    /// `store-fixture` writes them) against names it does not (a decoy
    /// challenge), alternating on one keep-alive connection: were they
    /// apart, the time would tell who exists.
    ChallengeTiming {
        #[arg(long)]
        url: String,
        #[arg(long)]
        ca: PathBuf,
        /// How many users the fixture holds (known names are picked from them).
        #[arg(long)]
        users: u32,
        /// Challenges of each kind.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
    },
    /// The fleet's probes (scripts/fleet.sh), one JSON line per attempt:
    /// `replay` signs in (password on stdin) on each replica in turn and
    /// sends the accepted response again to every replica (a second
    /// acceptance is lost single-use state); `guess` sends wrong proofs
    /// (no device certificate: the account's shared budget) as fast as
    /// the answers come.
    FleetProbe {
        #[arg(long, value_enum)]
        kind: ProbeKind,
        #[arg(long, value_delimiter = ',', required = true)]
        url: Vec<String>,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        seconds: f64,
        /// Pause between attempts.
        #[arg(long, default_value_t = 200)]
        pause_ms: u64,
    },
    /// Runs COMMAND (stdin passed through) and prints its peak RSS.
    Rss {
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Kdf { rounds, runs } => {
            run_kdf(rounds, runs.max(1));
            Ok(())
        }
        Command::Load {
            url,
            ca,
            user,
            clients,
            seconds,
            server_pid,
            yardstick_url,
            yardstick_pid,
            save_replies,
        } => run_load(&LoadArgs {
            urls: &url,
            ca: &ca,
            user: &user,
            clients: &clients,
            seconds,
            server_pids: &server_pid,
            yardstick: yardstick_url
                .as_deref()
                .map(|url| (url, &yardstick_pid[..])),
            save_replies: save_replies.as_deref(),
        }),
        Command::StoreFixture { users, out } => store_fixture(users, &out),
        Command::ChallengeTiming {
            url,
            ca,
            users,
            rounds,
        } => challenge_timing(&url, &ca, users.max(1), rounds.max(1)),
        Command::Rss { command } => run_rss(&command),
        Command::FleetProbe {
            kind,
            url,
            ca,
            user,
            seconds,
            pause_ms,
        } => fleet_probe(
            kind,
            &url,
            &ca,
            &user,
            seconds,
            Duration::from_millis(pause_ms),
        ),
        Command::NssFixture { users, dir } => nss_fixture(users, &dir),
        Command::Getpwnam { names, rounds } => getpwnam(&names, rounds.max(1)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authtoken-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The fixture's users: names that do not sort as they were made, uids
/// from 100000 (above the machine's).
fn fixture_user(i: u32) -> authtoken_directory::UserEntry {
    authtoken_directory::UserEntry {
        name: format!("nu{:07}x{}", i.wrapping_mul(2_654_435_761) % 10_000_000, i),
        uid: 100_000 + i,
        gid: 100_000,
        gecos: format!("Network User {i}"),
        home: format!("/home/nu{i}"),
        shell: "/bin/bash".into(),
    }
}

fn nss_fixture(count: u32, dir: &Path) -> Result<(), String> {
    use authtoken_directory::{Directory, GroupEntry};
    let users: Vec<_> = (0..count).map(fixture_user).collect();
    let directory = Directory {
        serial: format!("bench-{count}"),
        groups: vec![GroupEntry {
            name: "netusers".into(),
            gid: 100_000,
            members: Vec::new(),
        }],
        users,
    };
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))
    };
    let mut passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    for u in &directory.users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            u.name, u.uid, u.gid, u.gecos, u.home, u.shell
        ));
    }
    write("passwd", passwd.as_bytes())?;
    write(
        "directory",
        &authtoken_directory::nss_cache::render(&directory, 0),
    )?;
    // 200 names, evenly over the list (files pays for the position).
    let step = (count / 200).max(1);
    let names: Vec<&str> = directory
        .users
        .iter()
        .step_by(step as usize)
        .map(|u| u.name.as_str())
        .collect();
    write("names", (names.join("\n") + "\n").as_bytes())
}

fn getpwnam(names: &Path, rounds: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(names).map_err(|e| e.to_string())?;
    let names: Vec<std::ffi::CString> = text
        .lines()
        .filter_map(|n| std::ffi::CString::new(n).ok())
        .collect();
    let mut per_lookup = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for name in &names {
            if nix::unistd::User::from_name(name.to_str().unwrap_or_default())
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("{name:?} not found"));
            }
        }
        per_lookup.push(start.elapsed().as_nanos() as f64 / names.len().max(1) as f64);
    }
    let (_, median, _) = spread(&mut per_lookup);
    println!("{median:.0}");
    Ok(())
}

/// min/median/max of `samples` (sorted in place).
fn spread(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    (samples[0], median, samples[samples.len() - 1])
}

fn timed(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e3
}

fn run_kdf(rounds: u32, runs: usize) {
    let compressions = u64::from(rounds) * kdf::COMPRESSIONS_PER_ROUND;
    let (mut bound, mut ours, mut ring_ms, mut bulk) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sink = 0u32;
    for _ in 0..runs {
        bound.push(timed(|| sink ^= kdf::compressions(compressions)[0]));
        bulk.push(timed(|| {
            sink ^= authtoken_sha_ni::bulk(compressions).map_or(0, |state| state[0])
        }));
        let mut out = [0u8; 32];
        ours.push(timed(|| {
            kdf::pbkdf2_hmac_sha256(b"bench password", b"bench salt", rounds, &mut out)
        }));
        sink ^= u32::from(out[0]);
        ring_ms.push(timed(|| {
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                std::num::NonZeroU32::new(rounds.max(1)).unwrap_or(std::num::NonZeroU32::MIN),
                b"bench salt",
                b"bench password",
                &mut out,
            )
        }));
        sink ^= u32::from(out[0]);
    }
    let (bmin, bmed, bmax) = spread(&mut bound);
    let (omin, omed, omax) = spread(&mut ours);
    let (rmin, rmed, rmax) = spread(&mut ring_ms);
    let per_compression_ns = bmed * 1e6 / compressions as f64;
    println!(
        "kdf: {runs} runs each, alternating; {rounds} rounds = {compressions} single-block SHA-256 compressions (2 per round)"
    );
    println!(
        "kdf: SHA-256 bound (compress256 chained, {per_compression_ns:.1} ns each)  min/median/max {bmin:.1}/{bmed:.1}/{bmax:.1} ms"
    );
    println!(
        "kdf: PBKDF2 (protocol::kdf, precomputed HMAC states)   min/median/max {omin:.1}/{omed:.1}/{omax:.1} ms  ratio to bound {:.2}x",
        omed / bmed
    );
    println!(
        "kdf: PBKDF2 (ring, what the project used before)      min/median/max {rmin:.1}/{rmed:.1}/{rmax:.1} ms  ratio to bound {:.2}x",
        rmed / bmed
    );
    if authtoken_sha_ni::available() {
        let (kmin, kmed, kmax) = spread(&mut bulk);
        println!(
            "kdf: the same compressions on SHA-NI chained through the state only (as bulk hashing) min/median/max {kmin:.1}/{kmed:.1}/{kmax:.1} ms: PBKDF2 / this = {:.2}x (its message waits for the last output)",
            omed / kmed
        );
    }
    // Printed so the work above cannot be optimised away.
    println!("kdf: (checksum {sink:08x})");
}

/// A keep-alive HTTPS client that PUTs check-ins.
struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    fn new(url: &str, roots: &RootCerts) -> Client {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(roots.clone())
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .max_idle_connections_per_host(1)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Client {
            agent,
            url: url.to_owned(),
        }
    }

    fn put(&self, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        self.put_to(&self.url, body)
    }

    fn put_to(&self, url: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let mut response = self
            .agent
            .put(url)
            .header("Content-Type", "application/x-apple-aspen-mdm-checkin")
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let mut reply = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_end(&mut reply)
            .map_err(|e| e.to_string())?;
        Ok((status, reply))
    }
}

fn parse_reply(body: &[u8]) -> Result<plist::Dictionary, String> {
    mdm::parse_dict(body, "reply").map_err(|e| e.to_string())
}

fn string_field<'a>(reply: &'a plist::Dictionary, key: &str) -> Result<&'a str, String> {
    reply
        .get(key)
        .and_then(Value::as_string)
        .ok_or_else(|| format!("reply has no {key}"))
}

/// The challenge of a first check-in.
fn challenge(client: &Client, id: &UserIdentity) -> Result<scram::Challenge, String> {
    let body = mdm::request_body(id, None).map_err(|e| e.to_string())?;
    let (status, reply) = client.put(&body)?;
    if status != 200 {
        return Err(format!("first check-in: HTTP {status}"));
    }
    let reply = parse_reply(&reply)?;
    let text = string_field(&reply, "DigestChallenge")?;
    // Over TLS the server offers SCRAM-SHA-256-PLUS; this generator's
    // plain ureq connection cannot bind, so it answers as a client without
    // channel binding does (GS2 `n`), which the server accepts.
    let rest = text
        .strip_prefix("SCRAM-SHA-256 ")
        .or_else(|| text.strip_prefix("SCRAM-SHA-256-PLUS "))
        .ok_or("not a SCRAM-SHA-256 challenge (add the user with --scheme scram)")?;
    scram::parse_challenge(rest, 1..=u32::MAX).map_err(|e| e.to_string())
}

/// One full handshake with keys already derived for the user's salt and
/// iterations (the client's PBKDF2 is not the server's cost); the token
/// and the server signature are checked like the helper checks them.
fn handshake(client: &Client, id: &UserIdentity, keys: &Keys) -> Result<(), String> {
    let challenge = challenge(client, id)?;
    let cnonce = scram::new_cnonce().map_err(|e| e.to_string())?;
    let last = scram::client_final_with_keys(&id.short_name, keys, &challenge, &cnonce);
    let body = mdm::request_body(id, Some(&last.digest_response)).map_err(|e| e.to_string())?;
    let (status, reply) = client.put(&body)?;
    if status != 200 {
        return Err(format!("second check-in: HTTP {status}"));
    }
    let reply = parse_reply(&reply)?;
    if string_field(&reply, "AuthToken")?.is_empty() {
        return Err("rejected (empty AuthToken): wrong password?".into());
    }
    let signature = string_field(&reply, "ServerSignature")?;
    if !scram::server_signature_matches(&last.expected_server_signature, signature) {
        return Err("wrong ServerSignature".into());
    }
    Ok(())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: field 3 is index 0, so utime (14) and stime (15)
    // are indexes 11 and 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / per_second as f64)
}

/// The CPU time this process has used, in seconds (the generator's share).
fn own_cpu_seconds() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

/// The servers' CPU time together.
fn servers_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// A check-in identity for `user` from the generator's one device.
fn identity(user: &str) -> UserIdentity {
    let udid = "8C3A5B1E-0D4F-4B7A-9E2C-6F1D3A5B7C9E".to_owned();
    UserIdentity {
        user_id: mdm::derive_user_id(&udid, user),
        udid,
        short_name: user.to_owned(),
        long_name: user.to_owned(),
    }
}

struct LoadArgs<'a> {
    urls: &'a [String],
    ca: &'a Path,
    user: &'a str,
    clients: &'a [usize],
    seconds: f64,
    server_pids: &'a [u32],
    /// The yardstick's base URL and pids.
    yardstick: Option<(&'a str, &'a [u32])>,
    save_replies: Option<&'a Path>,
}

/// What one timed run of N clients came to.
#[derive(Default)]
struct Run {
    latencies_us: Vec<u32>,
    errors: Vec<String>,
    elapsed: f64,
    server_cpu: Option<f64>,
    own_cpu: f64,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.latencies_us.extend(other.latencies_us);
        self.errors.extend(other.errors);
        self.elapsed += other.elapsed;
        self.server_cpu = match (self.server_cpu, other.server_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) => b,
            (a, None) => a,
        };
        self.own_cpu += other.own_cpu;
    }

    fn server_us_per_handshake(&self) -> Option<f64> {
        let done = self.latencies_us.len();
        self.server_cpu
            .filter(|_| done > 0)
            .map(|cpu| cpu * 1e6 / done as f64)
    }
}

/// N clients, each on its own keep-alive connection to `urls[i % len]`,
/// running `handshake` for `seconds`; the servers' CPU read before and
/// after.
fn timed_run<H>(
    n: usize,
    seconds: f64,
    urls: &[String],
    roots: &RootCerts,
    pids: &[u32],
    handshake: H,
) -> Result<Run, String>
where
    H: Fn(&Client) -> Result<(), String> + Send + Sync + 'static,
{
    let handshake = Arc::new(handshake);
    let stop = Arc::new(AtomicBool::new(false));
    let server_before = servers_cpu_seconds(pids);
    let own_before = own_cpu_seconds();
    let started = Instant::now();
    let workers: Vec<_> = (0..n.max(1))
        .map(|i| {
            let (stop, roots, url, handshake) = (
                stop.clone(),
                roots.clone(),
                urls[i % urls.len()].clone(),
                handshake.clone(),
            );
            std::thread::spawn(move || {
                let client = Client::new(&url, &roots);
                let mut latencies_us = Vec::new();
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match handshake(&client) {
                        Ok(()) => latencies_us.push(t.elapsed().as_micros() as u32),
                        Err(e) => {
                            errors.push(e);
                            // A refused client backs off instead of spinning.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                (latencies_us, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut run = Run::default();
    for worker in workers {
        let (l, e) = worker.join().map_err(|_| "a client thread panicked")?;
        run.latencies_us.extend(l);
        run.errors.extend(e);
    }
    run.elapsed = started.elapsed().as_secs_f64();
    run.own_cpu = own_cpu_seconds() - own_before;
    run.server_cpu = match (server_before, servers_cpu_seconds(pids)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Ok(run)
}

fn describe_run(n: usize, what: &str, run: &mut Run) -> String {
    run.latencies_us.sort_unstable();
    let done = run.latencies_us.len();
    let server = match (run.server_us_per_handshake(), run.server_cpu) {
        (Some(per), Some(total)) => format!("server CPU {per:.1} us/handshake ({total:.2} s)"),
        _ => "server CPU n/a".into(),
    };
    format!(
        "load: {n:>3} clients{what}: {done} handshakes, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {server}, generator CPU {:.1} us/handshake, {} errors{}",
        done as f64 / run.elapsed.max(1e-9),
        percentile(&run.latencies_us, 0.50),
        percentile(&run.latencies_us, 0.99),
        if done > 0 { run.own_cpu * 1e6 / done as f64 } else { 0.0 },
        run.errors.len(),
        run.errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    )
}

fn run_load(args: &LoadArgs) -> Result<(), String> {
    let mut password = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| format!("reading the password: {e}"))?;
    let password = Zeroizing::new(password.trim_end_matches(['\r', '\n']).to_owned());
    let roots =
        authtoken_helper::transport::load_roots(Some(args.ca)).map_err(|e| e.to_string())?;
    let id = identity(args.user);
    // The client's PBKDF2, once: the server's cost does not depend on it.
    let first = Client::new(&args.urls[0], &roots);
    let c = challenge(&first, &id)?;
    let keys = Arc::new(scram::derive_keys(
        password.as_bytes(),
        &c.salt,
        c.iterations,
    ));
    if let Some(dir) = args.save_replies {
        save_replies(&first, &id, &keys, dir)?;
    }
    handshake(&first, &id, &keys).map_err(|e| format!("a first handshake failed: {e}"))?;
    drop(first);

    println!(
        "load: full SCRAM-SHA-256 handshakes (2 PUTs, proof and server signature checked) over TLS keep-alive, {} s per run;",
        args.seconds
    );
    println!(
        "load: the generator runs on the same {} CPUs as the server, so it takes its share of them (its CPU is shown)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let authority = |n: usize, seconds: f64| {
        let (keys, id) = (keys.clone(), id.clone());
        timed_run(
            n,
            seconds,
            args.urls,
            &roots,
            args.server_pids,
            move |client| handshake(client, &id, &keys),
        )
    };
    for &n in args.clients {
        let Some((yardstick_url, yardstick_pids)) = args.yardstick else {
            let mut run = authority(n, args.seconds)?;
            println!("{}", describe_run(n, "", &mut run));
            continue;
        };
        // Alternating, twice each, half a run at a time: drift in the
        // machine's speed falls on both alike.
        let (mut ours, mut theirs) = (Run::default(), Run::default());
        let requests = Arc::new(yardstick_requests(&id)?);
        let yardstick_urls = [yardstick_url.to_owned()];
        for _ in 0..2 {
            ours.add(authority(n, args.seconds / 4.0)?);
            let requests = requests.clone();
            theirs.add(timed_run(
                n,
                args.seconds / 4.0,
                &yardstick_urls,
                &roots,
                yardstick_pids,
                move |client| yardstick_handshake(client, &requests),
            )?);
        }
        println!("{}", describe_run(n, " (authority)", &mut ours));
        println!("{}", describe_run(n, " (nginx)    ", &mut theirs));
        if let (Some(a), Some(b)) = (
            ours.server_us_per_handshake(),
            theirs.server_us_per_handshake(),
        ) {
            println!(
                "load: {n:>3} clients: authority / nginx server CPU per handshake = {:.2}x ({a:.1} us against {b:.1} us)",
                a / b
            );
        }
    }
    Ok(())
}

/// The two request bodies a yardstick handshake PUTs (the authority's own
/// check-ins for the user: a first one, and one with a response).
fn yardstick_requests(id: &UserIdentity) -> Result<(Vec<u8>, Vec<u8>), String> {
    let first = mdm::request_body(id, None).map_err(|e| e.to_string())?;
    let response = format!(
        "SCRAM-SHA-256 n={},r=yardstick,c=biws,r=yardstick,p=AAAA",
        id.short_name
    );
    let second = mdm::request_body(id, Some(&response)).map_err(|e| e.to_string())?;
    Ok((first.to_vec(), second.to_vec()))
}

/// A yardstick handshake: the same two PUTs, to `…/first` and `…/second`,
/// each answered with the authority's fixed reply.
fn yardstick_handshake(client: &Client, requests: &(Vec<u8>, Vec<u8>)) -> Result<(), String> {
    for (path, body) in [("first", &requests.0), ("second", &requests.1)] {
        let (status, reply) = client.put_to(&format!("{}/{path}", client.url), body)?;
        if status != 200 || reply.is_empty() {
            return Err(format!("{path}: HTTP {status}"));
        }
    }
    Ok(())
}

/// Runs one handshake and writes its two replies into `dir`.
fn save_replies(client: &Client, id: &UserIdentity, keys: &Keys, dir: &Path) -> Result<(), String> {
    let body = mdm::request_body(id, None).map_err(|e| e.to_string())?;
    let (_, first) = client.put(&body)?;
    let reply = parse_reply(&first)?;
    let text = string_field(&reply, "DigestChallenge")?;
    let rest = text
        .strip_prefix("SCRAM-SHA-256 ")
        .or_else(|| text.strip_prefix("SCRAM-SHA-256-PLUS "))
        .ok_or("not a SCRAM-SHA-256 challenge")?;
    let challenge = scram::parse_challenge(rest, 1..=u32::MAX).map_err(|e| e.to_string())?;
    let cnonce = scram::new_cnonce().map_err(|e| e.to_string())?;
    let last = scram::client_final_with_keys(&id.short_name, keys, &challenge, &cnonce);
    let body = mdm::request_body(id, Some(&last.digest_response)).map_err(|e| e.to_string())?;
    let (_, second) = client.put(&body)?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("challenge.plist"), first).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("token.plist"), second).map_err(|e| e.to_string())?;
    Ok(())
}

/// Seconds since the epoch, for the probe's lines (the fleet's phases are
/// in the same clock).
fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether a reply grants: 200 and a non-empty AuthToken.
fn grants(status: u16, reply: &[u8]) -> bool {
    status == 200
        && parse_reply(reply)
            .ok()
            .and_then(|d| {
                d.get("AuthToken")
                    .and_then(Value::as_string)
                    .map(|t| !t.is_empty())
            })
            .unwrap_or(false)
}

fn fleet_probe(
    kind: ProbeKind,
    urls: &[String],
    ca: &Path,
    user: &str,
    seconds: f64,
    pause: Duration,
) -> Result<(), String> {
    let roots = authtoken_helper::transport::load_roots(Some(ca)).map_err(|e| e.to_string())?;
    let clients: Vec<Client> = urls.iter().map(|url| Client::new(url, &roots)).collect();
    let id = identity(user);
    let keys = match kind {
        ProbeKind::Replay => {
            let mut password = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| format!("reading the password: {e}"))?;
            let password = password.trim_end_matches(['\r', '\n']);
            // The salt and iterations from a first challenge on any replica.
            let mut keys = None;
            for _ in 0..100 {
                if let Some(c) = clients.iter().find_map(|c| challenge(c, &id).ok()) {
                    keys = Some(scram::derive_keys(
                        password.as_bytes(),
                        &c.salt,
                        c.iterations,
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(keys.ok_or("no replica answered a first challenge")?)
        }
        ProbeKind::Guess => None,
    };
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0usize;
    while Instant::now() < end {
        let client = &clients[i % clients.len()];
        i += 1;
        let line = match (kind, &keys) {
            (ProbeKind::Replay, Some(keys)) => replay_once(client, &clients, &id, keys),
            _ => guess_once(client, &id),
        };
        println!("{line}");
        std::thread::sleep(pause);
    }
    Ok(())
}

/// One login, then its response sent again to every replica.
fn replay_once(client: &Client, all: &[Client], id: &UserIdentity, keys: &Keys) -> String {
    let t = epoch_seconds();
    let attempt = || -> Result<(u16, Vec<u8>, Vec<u8>), String> {
        let challenge = challenge(client, id)?;
        let cnonce = scram::new_cnonce().map_err(|e| e.to_string())?;
        let last = scram::client_final_with_keys(&id.short_name, keys, &challenge, &cnonce);
        let body = mdm::request_body(id, Some(&last.digest_response)).map_err(|e| e.to_string())?;
        let (status, reply) = client.put(&body)?;
        Ok((status, reply, body.to_vec()))
    };
    match attempt() {
        Ok((status, reply, body)) if grants(status, &reply) => {
            let again = all
                .iter()
                .filter(|other| matches!(other.put(&body), Ok((s, r)) if grants(s, &r)))
                .count();
            format!(r#"{{"t":{t:.3},"kind":"replay","granted":true,"replays_accepted":{again}}}"#)
        }
        Ok((status, _, _)) => {
            format!(r#"{{"t":{t:.3},"kind":"replay","granted":false,"status":{status}}}"#)
        }
        Err(e) => format!(
            r#"{{"t":{t:.3},"kind":"replay","granted":false,"error":{}}}"#,
            serde_json::Value::String(e)
        ),
    }
}

/// One wrong proof: evaluated (200, empty AuthToken), 429, or else.
fn guess_once(client: &Client, id: &UserIdentity) -> String {
    let t = epoch_seconds();
    let attempt = || -> Result<(u16, bool), String> {
        let challenge = challenge(client, id)?;
        let cnonce = scram::new_cnonce().map_err(|e| e.to_string())?;
        let keys = scram::derive_keys(b"a guess", &challenge.salt, challenge.iterations);
        let last = scram::client_final_with_keys(&id.short_name, &keys, &challenge, &cnonce);
        let body = mdm::request_body(id, Some(&last.digest_response)).map_err(|e| e.to_string())?;
        let (status, reply) = client.put(&body)?;
        Ok((status, grants(status, &reply)))
    };
    match attempt() {
        Ok((status, granted)) => format!(
            r#"{{"t":{t:.3},"kind":"guess","status":{status},"evaluated":{},"granted":{granted}}}"#,
            status == 200
        ),
        Err(e) => format!(
            r#"{{"t":{t:.3},"kind":"guess","status":0,"evaluated":false,"granted":false,"error":{}}}"#,
            serde_json::Value::String(e)
        ),
    }
}

fn challenge_timing(url: &str, ca: &Path, users: u32, rounds: usize) -> Result<(), String> {
    let roots = authtoken_helper::transport::load_roots(Some(ca)).map_err(|e| e.to_string())?;
    let client = Client::new(url, &roots);
    let mut known = Vec::with_capacity(rounds);
    let mut unknown = Vec::with_capacity(rounds);
    let time = |name: String, into: &mut Vec<f64>| -> Result<(), String> {
        let id = identity(&name);
        let started = Instant::now();
        challenge(&client, &id)?;
        into.push(started.elapsed().as_secs_f64() * 1e6);
        Ok(())
    };
    // Warm the connection and the caches first.
    for i in 0..rounds.min(50) {
        time(format!("user{i}"), &mut Vec::new())?;
        time(format!("warm{i}"), &mut Vec::new())?;
    }
    for r in 0..rounds {
        let user = format!("user{}", (r as u64 * 7919 % u64::from(users)) as u32);
        let ghost = format!("ghost{r}x{}", r * 31);
        // Alternate which goes first, so neither gets the warmer turn.
        if r % 2 == 0 {
            time(user, &mut known)?;
            time(ghost, &mut unknown)?;
        } else {
            time(ghost, &mut unknown)?;
            time(user, &mut known)?;
        }
    }
    let (_, known_median, _) = spread(&mut known);
    let (_, unknown_median, _) = spread(&mut unknown);
    println!(
        "challenge: {users} users, {rounds} of each: known median {known_median:.0} us, unknown \
         median {unknown_median:.0} us, unknown / known = {:.2}x (goal 0.9-1.1x)",
        unknown_median / known_median
    );
    Ok(())
}

fn store_fixture(users: u32, out: &std::path::Path) -> Result<(), String> {
    use authtoken_server::directory::Account;
    use authtoken_server::store::{Policy, Store, User};
    let mut password = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| format!("reading the password: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']);
    // One verifier for all: the store's size is what is measured here.
    let credential =
        Store::scram_credential(password.as_bytes(), 4096).map_err(|e| e.to_string())?;
    let mut store = Store::new().map_err(|e| e.to_string())?;
    for i in 0..users {
        let name = format!("user{i}");
        let account = Account::default_for(&name, 10_000 + i);
        store.users.insert(
            name,
            User {
                policy: Policy::Managed,
                credential: Some(credential.clone()),
                account: Some(account),
            },
        );
    }
    store.save(out).map_err(|e| e.to_string())
}

fn run_rss(command: &[String]) -> Result<(), String> {
    let status = Process::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", command[0]))?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| e.to_string())?;
    // Linux reports ru_maxrss in KiB.
    println!(
        "rss: {} peak {} KiB ({status})",
        command[0],
        usage.max_rss()
    );
    Ok(())
}
