//! `serve`, in two steps: [`Server::build`] turns the options into a
//! ready server (the store loaded, the authority or device made, TLS and
//! the connection caps set up) without listening yet; [`Server::run`]
//! binds, serves, reloads on `SIGHUP`, follows a PostgreSQL store, and
//! returns when stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authtoken_core::kinds::RestFlavor;
use authtoken_protocol::scram::DEFAULT_SERVER_ITERATIONS;
use clap::ValueEnum;

use crate::admission::{self, Limits};
use crate::authority::{Authority, DeviceRule, Settings, UnknownUsers};
use crate::device::{Device, DeviceState};
use crate::error::ServerError;
use crate::handlers::Service;
use crate::http::{self, Tls};
use crate::metrics::Metrics;
use crate::nonce::{self, ReplayRecord};
use crate::pgaccess::Access;
use crate::pgstore::PgStore;
use crate::shared::Shared;
use crate::store::Store;
use crate::store_location::StoreSource;
use crate::{enrollment, replica, throttle, tls};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Apple MDM UserAuthenticate check-ins.
    Mdm,
    /// An Encedo-HEM-style token device (/api/auth/token).
    Hem,
    /// Seed 002's JSON `authenticate` method (backend rest), over the
    /// --users store: POST a credentials object, get a session token.
    #[value(name = "json-authenticate")]
    JsonAuthenticate,
    /// Seed 003's MindTouch Deki `POST users/authenticate` (backend rest),
    /// over the --users store: HTTP Basic in, the token as text out.
    Deki,
}

/// `HOST:PORT`, with a host name or an IP address.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text}: no address"))
}

/// `serve`'s options.
#[derive(clap::Args)]
pub struct ServeOptions {
    /// Address to listen on, HOST:PORT (a name or an IP address); port 0
    /// picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:8443", value_parser = parse_listen)]
    listen: SocketAddr,
    /// What to serve: MDM check-ins, or an emulated token device.
    #[arg(long, value_enum, default_value = "mdm")]
    protocol: Protocol,
    /// The user store written by add-user: a TOML file (protocols mdm,
    /// json-authenticate, deki).
    #[arg(long, conflicts_with = "store")]
    users: Option<PathBuf>,
    /// Or a PostgreSQL store that several replicas share, postgres://…
    /// (libpq URL form; sslmode=require for TLS; a password is better in
    /// PGPASSWORD, or none with peer authentication over the Unix socket).
    #[arg(long, env = "AUTHTOKEN_STORE")]
    store: Option<String>,
    /// The enrolment file written by enroll-device (protocol hem).
    #[arg(long, required_if_eq("protocol", "hem"))]
    device: Option<PathBuf>,
    /// Emulate a device fault: 403 (clock not set) or 409 (not initialised).
    #[arg(long, value_enum, default_value = "ready")]
    device_state: DeviceState,
    /// The device's deliberate delay before answering an authentication.
    #[arg(long, default_value_t = 500)]
    device_delay_ms: u64,
    /// PEM certificate chain; without it the server speaks plain HTTP (loopback only).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// With --client-ca: also serve clients that present no certificate.
    /// A client that presents an enrolled device certificate gets a
    /// guessing budget of its own per account; the others share one.
    #[arg(long, requires = "client_ca")]
    client_cert_optional: bool,
    /// Users not in the store: a decoy challenge that cannot succeed (so
    /// names cannot be probed), or 410.
    #[arg(long, value_enum, default_value = "decoy")]
    unknown_users: UnknownUsers,
    /// SCRAM iterations of decoy challenges (match your users').
    #[arg(long, default_value_t = DEFAULT_SERVER_ITERATIONS)]
    decoy_iterations: u32,
    /// Remember accepted responses in this directory, shared by every
    /// server process serving the same store (default: in memory).
    #[arg(long)]
    replay_dir: Option<PathBuf>,
    /// Accepted responses one account may hold in the in-memory replay
    /// record (each for its nonce's 60 s); past it, that account's logins
    /// are refused (503) and every other account goes on.
    #[arg(long, default_value_t = nonce::MAX_REMEMBERED_PER_USER)]
    replay_per_account: usize,
    /// Wrong proofs evaluated for one account per minute, from all clients
    /// without an enrolled device certificate together (and again from
    /// each enrolled device), before answers for it are 429 with
    /// Retry-After.
    #[arg(long, default_value_t = throttle::GUESSES_PER_MINUTE)]
    throttle_after: u32,
    /// Worker threads answering requests (default: one per CPU). Fewer
    /// leave CPUs to other work on a shared machine, and cost fewer
    /// cross-thread wake-ups per request.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Connections admitted from one client address (raise it behind a
    /// NAT or a load balancer that connects from few addresses).
    #[arg(long, default_value_t = admission::PER_SOURCE as u64, value_parser = clap::value_parser!(u64).range(1..=admission::MAX_CONNECTIONS as u64))]
    per_address_connections: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics (HOST:PORT).
    #[arg(long, value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,
    /// Delay before answering a rejected digest.
    #[arg(long, default_value_t = 1000)]
    failure_delay_ms: u64,
    /// Allow plain HTTP on a non-loopback address (clients must set
    /// allow_insecure_http too: tests only).
    #[arg(long)]
    allow_insecure_http: bool,
    /// Enroll machines (`authtoken join`): the directory gen-tls made,
    /// holding ca.pem (served for the client to pin) and the device-issuing
    /// CA, device-ca.pem and device-ca.key (the root CA's key stays out of
    /// reach: only root's gen-tls and issue-cert read it). With
    /// --client-ca, a machine without a certificate may then connect, to
    /// join only: its logins get 403 unless --client-cert-optional.
    #[arg(long, requires = "tls_cert")]
    enroll_dir: Option<PathBuf>,
    /// Days a device certificate is valid (renewed after two thirds).
    #[arg(long, default_value_t = enrollment::DEVICE_DAYS, value_parser = clap::value_parser!(u32).range(2..=825))]
    device_days: u32,
    /// Logins only from an enrolled device: a connection without a device
    /// certificate, or with a revoked one, gets 403.
    #[arg(long, requires = "client_ca")]
    require_device: bool,
}

/// A server built from its options, not yet listening.
pub struct Server {
    options: ServeOptions,
    runtime: tokio::runtime::Runtime,
    metrics: Arc<Metrics>,
    service: Arc<Service>,
    /// What it serves, for the start line.
    description: String,
    /// Where `SIGHUP` reloads from.
    source: Option<StoreSource>,
    /// A PostgreSQL store to follow, and the version it was loaded at.
    followed: Option<(Arc<PgStore>, i64)>,
    tls: Option<Tls>,
    limits: Limits,
}

impl Server {
    /// Everything but the network: the runtime, the store, the service, TLS
    /// and the caps. A bad option or store fails here, before any port.
    pub fn build(options: ServeOptions, access: &Access) -> Result<Server, ServerError> {
        let threads = options.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        );
        let metrics = Arc::new(Metrics::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(|source| ServerError::Network {
                what: "starting the runtime".into(),
                source,
            })?;
        let source = match (&options.users, &options.store) {
            (Some(path), _) => Some(StoreSource::File(path.clone())),
            (None, Some(url)) => Some(StoreSource::Postgres(Arc::new(
                PgStore::open(url, access)?.observed_by(metrics.clone()),
            ))),
            (None, None) => None,
        };
        let mut followed = None;
        let (service, description) = match (options.protocol, &source, &options.device) {
            (Protocol::Mdm | Protocol::JsonAuthenticate | Protocol::Deki, Some(source), _) => {
                let (store, shared) = match source {
                    StoreSource::File(path) => {
                        let replay = match &options.replay_dir {
                            Some(dir) => {
                                std::fs::create_dir_all(dir).map_err(ServerError::io(dir))?;
                                ReplayRecord::Directory(dir.clone())
                            }
                            None => ReplayRecord::memory_per_account(options.replay_per_account),
                        };
                        (
                            Store::load(path)?,
                            Shared::local(replay, options.throttle_after)
                                .with_store_file(path.clone()),
                        )
                    }
                    StoreSource::Postgres(pg) => {
                        let (store, version) = runtime.block_on(async {
                            pg.check_schema().await?;
                            pg.load().await
                        })?;
                        followed = Some((pg.clone(), version));
                        (store, Shared::postgres(pg.clone(), options.throttle_after))
                    }
                };
                let users_count = store.users.len();
                let shown = source.shown();
                let description =
                    |name: &str| format!("protocol {name}, {users_count} users from {shown}");
                let authority = Authority::new(
                    store,
                    Settings {
                        unknown: options.unknown_users,
                        failure_delay: Duration::from_millis(options.failure_delay_ms),
                        decoy_iterations: options.decoy_iterations,
                        shared,
                        enroll: match &options.enroll_dir {
                            Some(dir) => Some(tls::enroll_from(dir, options.device_days)?),
                            None => None,
                        },
                        require: if options.require_device {
                            DeviceRule::CurrentDevice
                        } else if options.client_ca.is_some()
                            && !options.client_cert_optional
                            && options.enroll_dir.is_some()
                        {
                            DeviceRule::Certificate
                        } else {
                            DeviceRule::Nothing
                        },
                    },
                );
                let (service, name) = match options.protocol {
                    Protocol::JsonAuthenticate | Protocol::Deki => {
                        let flavor = if options.protocol == Protocol::Deki {
                            RestFlavor::Deki
                        } else {
                            RestFlavor::JsonAuthenticate
                        };
                        let service = Service::Rest {
                            authority: Arc::new(authority),
                            flavor,
                            derivations: tokio::sync::Semaphore::new(threads),
                        };
                        (service, flavor.name())
                    }
                    _ => (Service::Mdm(Arc::new(authority)), "mdm"),
                };
                (service, description(name))
            }
            (Protocol::Hem, _, Some(file)) => {
                let device = Device::load(
                    file,
                    options.device_state,
                    Duration::from_millis(options.device_delay_ms),
                )?;
                (Service::Hem(Box::new(device)), "protocol hem".to_owned())
            }
            _ => return Err(ServerError::Config(
                "--users or --store (mdm, json-authenticate, deki), or --device (hem), is required"
                    .into(),
            )),
        };
        let service = Arc::new(service);
        let tls = options.tls_cert.clone().zip(options.tls_key.clone());
        if tls.is_none() && !options.listen.ip().is_loopback() && !options.allow_insecure_http {
            return Err(ServerError::Config(
                "plain HTTP is only served on loopback; give --tls-cert/--tls-key".into(),
            ));
        }
        let acceptor = match &tls {
            Some((cert, key)) => {
                let server_tls = tls::server_config(
                    cert,
                    key,
                    options.client_ca.as_deref(),
                    // A machine that joins has no certificate yet: with
                    // --enroll-dir a certificate-less connection gets in
                    // and only the enrollment endpoints serve it, unless
                    // --client-cert-optional (DeviceRule::Certificate).
                    options.client_cert_optional || options.enroll_dir.is_some(),
                )?;
                Some(Tls {
                    acceptor: tokio_rustls::TlsAcceptor::from(server_tls.config),
                    end_point: server_tls.end_point,
                })
            }
            None => None,
        };
        let limits = Limits::from_descriptor_limit(options.per_address_connections as usize);
        Ok(Server {
            options,
            runtime,
            metrics,
            service,
            description,
            source,
            followed,
            tls: acceptor,
            limits,
        })
    }

    /// Binds the listeners and serves until `SIGINT` (or a fatal error);
    /// `SIGHUP` reloads the store.
    pub fn run(self) -> Result<(), ServerError> {
        let Server {
            options,
            runtime,
            metrics,
            service,
            description,
            source,
            followed,
            tls: acceptor,
            limits,
        } = self;
        let network = |what: String| move |source| ServerError::Network { what, source };
        runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(network(options.listen.to_string()))?;
        let local = listener
            .local_addr()
            .map_err(network("listening socket".into()))?;
        if let Some(addr) = options.metrics_listen {
            let metrics_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(network(addr.to_string()))?;
            let bound = metrics_listener
                .local_addr()
                .map_err(network("metrics socket".into()))?;
            eprintln!("authtoken-server: metrics on http://{bound}/metrics");
            tokio::spawn(http::serve_metrics(
                metrics_listener,
                metrics.clone(),
                service.clone(),
            ));
        }
        eprintln!(
            "authtoken-server: listening on {local} ({}, {description}; at most {} connections, {} per source)",
            if acceptor.is_some() { "https" } else { "http" },
            limits.max_connections,
            limits.per_source,
        );
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(network("SIGHUP handler".into()))?;
        if let Some((pg, version)) = followed {
            if let Service::Mdm(authority) | Service::Rest { authority, .. } = &*service {
                tokio::spawn(replica::follow(authority.clone(), pg, version));
            }
        }
        let reloads = {
            let service = service.clone();
            async move {
                while hangups.recv().await.is_some() {
                    reload(&service, source.as_ref()).await;
                }
            }
        };
        tokio::select! {
            result = http::serve(listener, acceptor, service, metrics, limits) => result.map_err(network("serving".into())),
            _ = reloads => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
    }
}

/// `SIGHUP`: reads the store again and puts it in force whole; a store that
/// does not load leaves the one in force, and says why.
async fn reload(service: &Service, source: Option<&StoreSource>) {
    let (Service::Mdm(authority) | Service::Rest { authority, .. }, Some(source)) =
        (service, source)
    else {
        eprintln!("authtoken-server: SIGHUP: nothing to reload (no user store)");
        return;
    };
    let loaded: Result<Store, ServerError> = match source {
        StoreSource::File(path) => Store::load(path).map_err(ServerError::from),
        StoreSource::Postgres(pg) => pg
            .load()
            .await
            .map(|(store, _)| store)
            .map_err(ServerError::from),
    };
    match loaded {
        Ok(store) => {
            let count = store.users.len();
            authority.replace_store(store);
            eprintln!(
                "authtoken-server: reloaded {}: {count} users",
                source.shown()
            );
        }
        Err(e) => eprintln!("authtoken-server: reload refused, keeping the store in force: {e}"),
    }
}
