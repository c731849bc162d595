//! `zrobot server start`: opens the data directory and its database, loads
//! template repositories, brings services back, and serves the API until
//! SIGINT or SIGTERM.
//!
//! Template code runs on a runtime of its own ([`TemplateRuntime`]), never on
//! the threads serving the API. A stop is bounded whatever template code
//! does: the API gets [`API_DRAIN`] to answer the requests in flight, running
//! actions get [`ACTION_GRACE`], the store [`STORE_FLUSH`]; the threads still
//! busy after that are left behind, and a watchdog ends the process at
//! [`STOP_BOUND`] if anything else hangs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use zrobot_api::{ApiConfig, AuthConfig, TlsConfig};
use zrobot_core::store::Retention;
use zrobot_core::{Robot, RobotConfig};
use zrobot_git::{TemplateRepoUrl, TemplateRepos};
use zrobot_lua::{LuaConfig, LuaEngine};
use zrobot_store::SqliteStore;

use crate::paths;

mod repos;

/// How long the requests in flight at a stop may take to be answered.
const API_DRAIN: Duration = Duration::from_secs(2);
/// How long running actions may take to end at a stop; those still running
/// are interrupted and run again at the next start.
const ACTION_GRACE: Duration = Duration::from_secs(3);
/// How long the store may take to confirm every change handed to it is written.
const STORE_FLUSH: Duration = Duration::from_secs(2);
/// How long the template threads may take to let go of their tasks.
const TEMPLATE_THREADS: Duration = Duration::from_millis(500);
/// After a stop signal, the process exits by this bound, whatever hangs.
const STOP_BOUND: Duration = Duration::from_millis(9_500);

/// The runtime template code runs on: worker threads of its own, named
/// `zrobot-template`, so that code that spins until its budget stops it
/// never holds a thread that serves the API, commits or calls other robots.
/// Dropped without [`TemplateRuntime::stop`] (an early error), it lets its
/// threads go without waiting for them.
struct TemplateRuntime(Option<tokio::runtime::Runtime>);

impl TemplateRuntime {
    fn start() -> Result<TemplateRuntime> {
        let runtime = zrobot_core::robot::template_runtime()
            .context("cannot start the threads that run template code")?;
        Ok(TemplateRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(r) => r.handle().clone(),
            None => unreachable!("the template runtime is taken only by stop, which consumes it"),
        }
    }

    /// Drops the tasks left on the runtime and waits at most `bound` for its
    /// threads; a thread stuck in code that cannot be interrupted is left
    /// behind (the process is about to exit).
    async fn stop(mut self, bound: Duration) {
        if let Some(runtime) = self.0.take() {
            // Waiting for threads blocks: not on an async thread.
            let waited = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(bound));
            if waited.await.is_err() {
                tracing::warn!("the template threads could not be stopped cleanly");
            }
        }
    }
}

impl Drop for TemplateRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// `zrobot server start` flags.
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Address to listen on.
    #[arg(
        short = 'L',
        long,
        default_value = "127.0.0.1:6600",
        value_name = "HOST:PORT"
    )]
    pub listen: String,
    /// The robot's data directory: database, template clones, god token.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A template repository to clone (or update) and load at start; repeatable.
    #[arg(short = 'T', long = "template-repo", value_name = "URL[#ref]")]
    pub template_repos: Vec<String>,
    /// Export every service to this git repository and push it regularly.
    #[arg(long, value_name = "URL")]
    pub data_repo: Option<String>,
    /// Minutes between pushes of the data repository.
    #[arg(long, default_value_t = 10, value_name = "MIN")]
    pub auto_push_interval: u64,
    /// Members of this organization (JWT scope `user:memberof:<org>`) are admins.
    #[arg(long, value_name = "ORG")]
    pub admin_organization: Option<String>,
    /// Members of this organization are users.
    #[arg(long, value_name = "ORG")]
    pub user_organization: Option<String>,
    /// The key JWTs are verified with: an HS256 secret, or an RS256/ES256 public key (PEM).
    #[arg(long, value_name = "FILE")]
    pub jwt_key: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM)...
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// ...and this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The key that seals secret data fields (`x-secret: true`, `format:
    /// password`) at rest: 64 hexadecimal digits. Give every instance of a
    /// robot the same file, and a robot restored from its data repository
    /// too. Default: DATA_DIR/data.key, made at the first start.
    #[arg(long, value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Let template code add and check out template repositories
    /// (`robot.templates` in Lua, 0-robot's `self.api.templates`). Off by
    /// default: it brings code into the robot.
    #[arg(long)]
    pub allow_template_repos_from_templates: bool,
    /// Development switch: accept the god token (see `zrobot godtoken get`), which grants everything.
    #[arg(long)]
    pub god: bool,
    /// Allow an open robot (no authentication) to listen on a non-loopback address.
    #[arg(long)]
    pub insecure: bool,
    /// A web origin (scheme://host[:port]) allowed to send changing requests
    /// and to read answers (CORS); repeatable. None by default.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Refuse `robot.exec` in templates.
    #[arg(long)]
    pub no_exec: bool,
    /// Another robot this one reaches by name, e.g. `--robot b=http://10.0.0.2:6600`;
    /// `,FILE` adds a file holding the token (JWT) to present to it. Repeatable.
    #[arg(long = "robot", value_name = "NAME=URL[,FILE]")]
    pub robots: Vec<String>,
    /// Seconds one request to another robot may take.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub remote_timeout: f64,
    /// Seconds a wait on another robot's task goes on while that robot cannot be reached.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub remote_unreachable_after: f64,
    /// MiB of a process's stdout (and as many of its stderr) `robot.exec`
    /// keeps; past them the process is killed and the action fails.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub exec_output_limit: usize,
    /// MiB of a response body `robot.http.request` reads; past them the
    /// request is dropped and the action fails.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub http_body_limit: usize,
    /// Finished tasks kept per service.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub history_max_tasks: usize,
    /// Days finished tasks are kept.
    #[arg(long, default_value_t = 7.0, value_name = "DAYS")]
    pub history_max_days: f64,
}

/// What a robot runs with, checked: nothing in it is parsed again.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The robot's data directory (made private): database, clones, god token.
    pub data_dir: PathBuf,
    /// Cloned (or updated) and loaded at start, before services come back.
    pub template_repos: Vec<TemplateRepoUrl>,
    /// Where every service is exported, and how often it is pushed.
    pub data_repo: Option<(String, Duration)>,
    /// Credentials, TLS, origins; its `repos` is filled by [`run`].
    pub api: ApiConfig,
    pub retention: Retention,
    pub lua: LuaConfig,
    /// Robots reached by name: `(name, url, token)`.
    pub robots: Vec<(String, String, Option<String>)>,
    /// Seals secret data fields at rest.
    pub data_key: Arc<zrobot_core::sealed::DataKey>,
    /// `--allow-template-repos-from-templates`.
    pub template_code_repos: bool,
}

impl ServerConfig {
    /// Checks `zrobot server start`'s flags and turns them into the address
    /// to listen on and a configuration. Touches nothing but the data
    /// directory (made if missing, mode 0700, its god token read or made
    /// with `--god`): a bad flag is refused before anything else happens.
    /// Long (about 90 lines) because it is one check per flag, in order.
    pub fn from_args(args: &StartArgs) -> Result<(SocketAddr, ServerConfig)> {
        let addr: SocketAddr = args.listen.parse().with_context(|| {
            format!(
                "--listen `{}` is not HOST:PORT with an IP address, e.g. 127.0.0.1:6600",
                args.listen
            )
        })?;
        if !(args.history_max_days.is_finite() && args.history_max_days > 0.0) {
            bail!("--history-max-days must be a positive number of days");
        }
        let seconds = |flag: &str, v: f64| -> Result<Duration> {
            if !(v.is_finite() && v > 0.0 && v < 1e6) {
                bail!("{flag} must be a positive number of seconds");
            }
            Ok(Duration::from_secs_f64(v))
        };
        let mebibytes = |flag: &str, v: usize| -> Result<usize> {
            match v.checked_mul(1024 * 1024) {
                Some(n) if v > 0 => Ok(n),
                _ => bail!("{flag} must be a positive number of MiB (at most a few thousand)"),
            }
        };
        let lua = LuaConfig {
            exec_output_limit: mebibytes("--exec-output-limit", args.exec_output_limit)?,
            http_body_limit: mebibytes("--http-body-limit", args.http_body_limit)?,
            allow_exec: !args.no_exec,
            remote_timeout: seconds("--remote-timeout", args.remote_timeout)?,
            remote_unreachable: seconds(
                "--remote-unreachable-after",
                args.remote_unreachable_after,
            )?,
            // God mode shows data to the god token, and to template code.
            god_data: args.god,
            ..Default::default()
        };
        let mut template_repos = Vec::new();
        for raw in &args.template_repos {
            template_repos.push(
                TemplateRepoUrl::parse(raw).map_err(|e| anyhow::anyhow!("--template-repo: {e}"))?,
            );
        }
        let mut robots = Vec::new();
        for spec in &args.robots {
            robots.push(parse_robot_flag(spec)?);
        }
        let data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(paths::default_data_dir);
        let mut api = ApiConfig {
            auth: AuthConfig {
                jwt_key_file: args.jwt_key.clone(),
                admin_organization: args.admin_organization.clone(),
                user_organization: args.user_organization.clone(),
                god_token: None,
            },
            insecure: args.insecure,
            allowed_origins: args.allow_origins.clone(),
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(TlsConfig {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                }),
                _ => None,
            },
            data_dir: Some(data_dir.clone()),
            ..Default::default()
        };
        api.check(addr)?;
        paths::ensure_private_dir(&data_dir)?;
        if args.god {
            api.auth.god_token = Some(paths::god_token(&data_dir)?);
        }
        let (data_key, made) = paths::data_key(&data_dir, args.secret_key_file.as_deref())
            .context("--secret-key-file")?;
        if let Some(path) = made {
            tracing::warn!(
                "secret data fields are sealed with a key made now in {}: keep it (a robot restored from its data repository needs it), or give every instance the same --secret-key-file",
                path.display()
            );
        }
        Ok((
            addr,
            ServerConfig {
                data_dir,
                template_repos,
                data_repo: args.data_repo.clone().map(|url| {
                    (
                        url,
                        Duration::from_secs(args.auto_push_interval.max(1) * 60),
                    )
                }),
                api,
                retention: Retention {
                    max_tasks: args.history_max_tasks,
                    max_age_secs: args.history_max_days * 24.0 * 3600.0,
                },
                lua,
                robots,
                data_key: Arc::new(data_key),
                template_code_repos: args.allow_template_repos_from_templates,
            },
        ))
    }
}

/// `zrobot server start`: flags, then the listener, then [`run`] until
/// SIGINT or SIGTERM, after which the process exits within [`STOP_BOUND`].
pub async fn start(args: StartArgs) -> Result<()> {
    let (addr, config) = ServerConfig::from_args(&args)?;
    let stop_signal = signals()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    run(listener, config, async move {
        stop_signal.await;
        watchdog(STOP_BOUND);
    })
    .await
}

/// Runs a robot on `listener` until `shutdown` resolves, then stops it
/// within its bounds: the API drains, running actions end or are cut (they
/// run again at the next start), the store flushes. Prints
/// `zrobot listening on URL` once the robot answers.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let ServerConfig {
        data_dir,
        template_repos,
        data_repo,
        api: mut api_config,
        retention,
        lua,
        robots,
        data_key,
        template_code_repos,
    } = config;
    // Before anything of the directory is read: a second robot on it would
    // share its database and clones.
    let _lock = paths::lock_data_dir(&data_dir)?;
    let db = data_dir.join("zrobot.db");
    let store = SqliteStore::open(&db, retention).map_err(|e| anyhow::anyhow!("{e}"))?;
    let template_runtime = TemplateRuntime::start()?;
    let robot = Robot::with_template_runtime(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(lua)),
        Arc::new(store),
        template_runtime.handle(),
    );
    robot.set_data_key(data_key);
    let repos = TemplateRepos::new(&data_dir);
    if template_code_repos {
        robot.allow_template_sources(Arc::new(repos::TemplateCodeSources {
            repos: repos.clone(),
        }));
        tracing::warn!("template code may add and check out template repositories (--allow-template-repos-from-templates)");
    }
    // Opened first: a robot starting on an empty data directory takes its
    // services back from it.
    let data = match &data_repo {
        Some((url, _)) => Some(
            zrobot_git::DataRepo::open(url, &data_dir)
                .map_err(|e| anyhow::anyhow!("--data-repo: {e}"))?,
        ),
        None => None,
    };
    bring_back(&robot, &repos, template_repos, robots, &db, data.as_ref()).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut auto_push = None;
    if let (Some(repo), Some((_, every))) = (&data, &data_repo) {
        auto_push = Some(repo.spawn_auto_push(robot.clone(), *every, stopped()));
    }
    api_config.repos = zrobot_api::repos::Repos(Some(Arc::new(repos::GitRepos {
        robot: robot.clone(),
        repos,
        data,
    })));

    let local = listener.local_addr()?;
    let scheme = if api_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Scripts and tests read this line to learn the port.
    println!("zrobot listening on {scheme}://{local}");
    let serve = zrobot_api::serve(listener, robot.clone(), api_config, stopped());
    let (served, stop_at) = serve_until(serve, shutdown, &stop_tx).await;

    stop_robot(&robot).await;
    // The data repository exports and pushes once more on the way out,
    // within what is left of the stop's bound.
    if let Some(push) = auto_push {
        let left = (stop_at + STOP_BOUND - Duration::from_secs(2))
            .saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, push).await.is_err() {
            tracing::warn!(
                "the last push of the data repository did not finish within {}s",
                left.as_secs_f64()
            );
        }
    }
    template_runtime.stop(TEMPLATE_THREADS).await;
    if let Some(served) = served {
        served.context("the API stopped")?;
    }
    Ok(())
}

/// Brings the robot's world back at start: its settings, the template
/// repositories given on the command line (at the revision last checked
/// out at run time), its services and queues, the robots it knows, and the
/// template repositories added at run time.
async fn bring_back(
    robot: &Robot,
    repos: &TemplateRepos,
    template_repos: Vec<TemplateRepoUrl>,
    known_robots: Vec<(String, String, Option<String>)>,
    db: &std::path::Path,
    data_repo: Option<&zrobot_git::DataRepo>,
) -> Result<()> {
    // Settings first: they say which revisions were checked out at run time.
    let mut loaded = robot
        .read_store()
        .await
        .context("cannot read the database")?;
    if let (Some(repo), true) = (data_repo, loaded.services.is_empty()) {
        restore_from_data_repo(robot, repo, &mut loaded).await?;
    }
    let given: Vec<_> = template_repos.iter().map(|u| u.repo_id()).collect();
    for url in template_repos {
        let url = match repos::pinned_at_run_time(robot, &url) {
            Some(pinned) => {
                tracing::info!(
                    "template repository {url}: using {pinned}, checked out at run time"
                );
                pinned
            }
            None => url,
        };
        load_template_repo(robot, repos, url).await;
    }
    // Repositories added at run time (POST /templates) come back too, before
    // the services: a service of theirs must not look orphaned.
    for (url, branch) in repos::remembered(robot) {
        let Ok(parsed) =
            TemplateRepoUrl::parse(&url).and_then(|p| p.with_reference(branch.as_deref()))
        else {
            let url = zrobot_git::redact_any(&url);
            tracing::warn!("remembered template repository {url} cannot be parsed; skipped");
            continue;
        };
        if !given.contains(&parsed.repo_id()) {
            load_template_repo(robot, repos, parsed).await;
        }
    }
    let report = robot.restore_from(loaded);
    for (name, url, token) in known_robots {
        robot
            .add_remote_robot(&name, &url, token)
            .await
            .with_context(|| format!("--robot {name}"))?;
    }
    for (name, fields) in &report.lost_secrets {
        tracing::error!(
            "service {name}: secret field(s) {} were sealed with another data key and are absent: give the robot that key (--secret-key-file) or set them again",
            fields.join(", ")
        );
    }
    tracing::info!(
        services = report.services,
        waiting_tasks = report.waiting_tasks,
        waiting_for_templates = report.missing.len(),
        "services restored from {}",
        db.display()
    );
    for (template, names) in by_template(report.fallbacks.iter().map(|(n, s, u)| ((s, u), n))) {
        let (stored, used) = template;
        tracing::warn!(
            "template {stored} is not loaded: {} move to {used} (its migrate, defaults and validate)",
            some_of(&names)
        );
    }
    for (uid, names) in by_template(report.missing.iter().map(|(n, uid)| (uid, n))) {
        tracing::warn!(
            "template {uid} is not loaded: {} wait for it (load its repository with `zrobot template add URL`)",
            some_of(&names)
        );
    }
    Ok(())
}

/// An empty database on a robot with a data repository: the services the
/// repository holds come back (stored first), without their secrets.
async fn restore_from_data_repo(
    robot: &Robot,
    repo: &zrobot_git::DataRepo,
    loaded: &mut zrobot_core::store::Loaded,
) -> Result<()> {
    let back = repo.read_services();
    for (folder, why) in &back.skipped {
        tracing::warn!("data repository: {folder} is left out: {why}");
    }
    if back.services.is_empty() {
        return Ok(());
    }
    let ops = back
        .services
        .iter()
        .cloned()
        .map(zrobot_core::store::StoreOp::PutService)
        .collect();
    robot
        .store()
        .commit(ops)
        .await
        .context("cannot store the services of the data repository")?;
    tracing::warn!(
        services = back.services.len(),
        "the database was empty: services restored from the data repository {} (their data, state and template versions; not their secrets, which it never holds: manage them with an admin JWT or the god token)",
        repo.url()
    );
    loaded.services.extend(back.services);
    Ok(())
}

/// Service names grouped by what they share, in first-seen order.
fn by_template<K: PartialEq, N>(pairs: impl Iterator<Item = (K, N)>) -> Vec<(K, Vec<N>)> {
    let mut out: Vec<(K, Vec<N>)> = Vec::new();
    for (key, name) in pairs {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(name),
            None => out.push((key, vec![name])),
        }
    }
    out
}

/// `3 services (a, b, c)`, naming at most 5.
fn some_of(names: &[&String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|n| n.as_str()).collect();
    let more = if names.len() > 5 {
        format!(", and {} more", names.len() - 5)
    } else {
        String::new()
    };
    format!(
        "{} service{} ({}{more})",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

/// Serves until the API ends or `shutdown` resolves; then tells everything
/// else to stop (`stop`) and gives the requests in flight [`API_DRAIN`].
/// Returns how the API ended (`None` if it was cut) and when the stop began.
async fn serve_until(
    serve: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: impl std::future::Future<Output = ()>,
    stop: &tokio::sync::watch::Sender<bool>,
) -> (Option<std::io::Result<()>>, tokio::time::Instant) {
    tokio::pin!(serve);
    tokio::pin!(shutdown);
    let ended = tokio::select! {
        served = &mut serve => Some(served),
        () = &mut shutdown => None,
    };
    let stop_at = tokio::time::Instant::now();
    // However the API ended, everything else stops too.
    stop.send_replace(true);
    if let Some(served) = ended {
        return (Some(served), stop_at);
    }
    tracing::info!("stopping");
    // The API stops taking requests now; those in flight get a bound.
    match tokio::time::timeout(API_DRAIN, &mut serve).await {
        Ok(served) => (Some(served), stop_at),
        Err(_) => {
            tracing::warn!(
                "requests still in flight {}s after the stop signal were dropped",
                API_DRAIN.as_secs_f64()
            );
            (None, stop_at)
        }
    }
}

/// Shuts the robot down within [`ACTION_GRACE`] and [`STORE_FLUSH`], and
/// says what did not end in time.
async fn stop_robot(robot: &Robot) {
    let report = robot.shutdown(ACTION_GRACE, STORE_FLUSH).await;
    if report.left_running > 0 {
        tracing::warn!(
            tasks = report.left_running,
            "tasks of the robot were still running after the stop; they are left behind"
        );
    }
    if !report.store_flushed {
        tracing::error!(
            "the database did not confirm the last changes within {}s",
            STORE_FLUSH.as_secs_f64()
        );
    }
}

/// Ends the process `bound` from now if it has not exited by then: a stop
/// must never hang on something stuck (template code that cannot be
/// interrupted, a disk that does not answer).
fn watchdog(bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("zrobot-stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(bound);
            eprintln!(
                "error: the robot did not stop within {}s of the stop signal; exiting anyway",
                bound.as_secs_f64()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the stop watchdog: {e}");
    }
}

/// Clones or updates one template repository and loads it; when the remote
/// cannot be reached, loads what is on disk and keeps trying in the background.
async fn load_template_repo(robot: &Robot, repos: &TemplateRepos, url: TemplateRepoUrl) {
    match repos.clone_or_update_async(url.clone()).await {
        Ok(checkout) => {
            let load =
                robot.load_repository_at(&checkout.path, &checkout.repo_id, Some(&checkout.commit));
            report_load(&url, &load);
        }
        Err(e) => {
            tracing::error!("template repository {url}: {e}");
            if let Some(checkout) = repos.current(&url) {
                tracing::warn!(
                    "template repository {url}: loading the clone on disk ({})",
                    checkout.commit
                );
                let load = robot.load_repository_at(
                    &checkout.path,
                    &checkout.repo_id,
                    Some(&checkout.commit),
                );
                report_load(&url, &load);
            }
            let (owner, robot, repos) = (robot.clone(), robot.clone(), repos.clone());
            owner.spawn_owned(async move {
                let mut pause = Duration::from_secs(10);
                loop {
                    tokio::time::sleep(pause).await;
                    match repos.clone_or_update_async(url.clone()).await {
                        Ok(checkout) => {
                            let load = robot.load_repository_at(
                                &checkout.path,
                                &checkout.repo_id,
                                Some(&checkout.commit),
                            );
                            report_load(&url, &load);
                            robot.upgrade_services().await;
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(
                                "template repository {url}: still failing, retrying in {}s: {e}",
                                (pause * 2).min(Duration::from_secs(300)).as_secs()
                            );
                            pause = (pause * 2).min(Duration::from_secs(300));
                        }
                    }
                }
            });
        }
    }
}

fn report_load(url: &TemplateRepoUrl, load: &zrobot_core::template::RepoLoad) {
    for t in &load.templates {
        tracing::info!("template {} loaded", t.uid);
    }
    for e in &load.errors {
        tracing::error!("template repository {url}: {e}");
    }
}

/// `NAME=URL[,FILE]`: FILE holds the token to present to that robot.
fn parse_robot_flag(spec: &str) -> Result<(String, String, Option<String>)> {
    let Some((name, rest)) = spec.split_once('=') else {
        bail!("--robot `{spec}`: write it NAME=URL or NAME=URL,TOKEN_FILE");
    };
    let (url, file) = match rest.split_once(',') {
        Some((u, f)) => (u, Some(f)),
        None => (rest, None),
    };
    if !zrobot_core::remote::valid_robot_name(name) {
        bail!("--robot `{spec}`: `{name}` is not a robot name (letters, digits, `-`, `_`, `.`)");
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--robot `{spec}`: the URL must start with http:// or https://");
    }
    let token = match file {
        None => None,
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--robot {name}: cannot read the token file {f}"))?
                .trim()
                .to_owned(),
        ),
    };
    Ok((name.to_owned(), url.to_owned(), token))
}

/// Installs the SIGINT and SIGTERM handlers now (before anyone is told the
/// robot listens), and resolves when either arrives.
fn signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
