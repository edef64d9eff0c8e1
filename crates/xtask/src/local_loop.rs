//! `cargo xtask up | env | down`: the local loop. `up` starts LocalStack, PostgreSQL and the
//! sample API in the background on the project's own ports, creates what a local run needs (the
//! bucket, the queue with its dead-letter queue, the database) and prints the environment for
//! `cargo run` of both daemons, the AWS CLI and psql; they keep running until `down`.
//!
//! What runs is recorded in the layout's state directory (`target/barge-local/up`): pid files
//! and the PostgreSQL cluster's directory. `down` stops exactly those processes.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use std::os::unix::process::CommandExt;

use crate::services::{self, LOCALSTACK_PORT, Layout, POSTGRES_PORT, Services, workspace_root};

/// The database the local settings load into.
const DATABASE: &str = "barge";
/// How many posts the sample API serves.
const SAMPLE_POSTS: i64 = 100;

/// The landing prefix of the local settings' posts source (`deploy/local/barge.toml`).
const LANDING_PREFIX: &str = "landing/posts";

/// Starts the local loop, or says where it already runs.
pub async fn up() -> anyhow::Result<ExitCode> {
    let layout = Layout::local_loop();
    if is_running(&layout) {
        eprintln!("xtask: the local loop already runs: {}", where_it_runs());
        print_env(&layout);
        return Ok(ExitCode::SUCCESS);
    }
    // Whatever is left of an earlier loop (one service died, or a machine restart left pid
    // files) is stopped; PostgreSQL's data is kept.
    stop_recorded(&layout);
    let services = Services::start(layout.clone(), true).await?;
    let aws = services.aws().await;
    let settings = barge_core::Settings::default();
    barge_localenv::ensure_bucket(&aws, &settings.storage.bucket).await?;
    let (queue_url, _) =
        barge_localenv::ensure_queue(&aws, &settings.queue.queue, Default::default()).await?;
    // deploy/local/barge.toml's posts source watches this landing prefix.
    barge_localenv::notify_landings(
        &aws,
        &settings.storage.bucket,
        &queue_url,
        &[LANDING_PREFIX],
    )
    .await?;
    barge_localenv::ensure_database(&services.database("postgres"), DATABASE).await?;
    start_sample_api(&layout).await?;
    services.detach();
    eprintln!(
        "xtask: the local loop runs: {}\nxtask: `eval \"$(cargo xtask env)\"` sets the \
         environment below; `cargo xtask down` stops it all",
        where_it_runs()
    );
    print_env(&layout);
    Ok(ExitCode::SUCCESS)
}

/// Prints the environment of the running local loop, for `eval "$(cargo xtask env)"`.
pub fn env() -> anyhow::Result<ExitCode> {
    let layout = Layout::local_loop();
    if !is_running(&layout) {
        bail!("the local loop is not running: start it with `cargo xtask up`");
    }
    print_env(&layout);
    Ok(ExitCode::SUCCESS)
}

/// Stops what `up` started and, unless `keep`, removes its data.
pub fn down(keep: bool) -> anyhow::Result<ExitCode> {
    let layout = Layout::local_loop();
    if !layout.state.exists() {
        eprintln!("xtask: nothing to stop: the local loop is not running");
        return Ok(ExitCode::SUCCESS);
    }
    stop_recorded(&layout);
    if keep {
        eprintln!(
            "xtask: stopped; PostgreSQL's data is kept in {} for the next `up` (LocalStack's \
             buckets and queues live in memory and are created again)",
            layout.postgres_dir.display()
        );
    } else {
        let _ = fs::remove_dir_all(&layout.postgres_dir);
        let _ = fs::remove_dir_all(&layout.state);
        eprintln!("xtask: stopped, and its data removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves the sample API until SIGTERM (the process `up` starts in the background).
pub async fn sample_api(listen: &str, posts: i64) -> anyhow::Result<ExitCode> {
    barge_sample_api::serve_until_signal(listen, posts).await?;
    Ok(ExitCode::SUCCESS)
}

fn where_it_runs() -> String {
    format!(
        "LocalStack on 127.0.0.1:{LOCALSTACK_PORT}, PostgreSQL on 127.0.0.1:{POSTGRES_PORT} \
         (database {DATABASE}), the sample API on http://{}/posts",
        barge_sample_api::LOCAL_ADDRESS
    )
}

/// The environment lines, on stdout: everything else xtask says goes to stderr, so that
/// `eval "$(cargo xtask env)"` sees only these.
fn print_env(layout: &Layout) {
    let database = barge_localenv::postgres::SUPERUSER_PASSWORD;
    let config = workspace_root().join("deploy/local/barge.toml");
    let mut lines: Vec<(&str, String)> = services::aws_env(layout);
    lines.push(("BARGE_CONFIG", config.display().to_string()));
    lines.extend([
        ("PGHOST", "127.0.0.1".to_owned()),
        ("PGPORT", layout.postgres_port.to_string()),
        ("PGUSER", barge_localenv::postgres::SUPERUSER.to_owned()),
        ("PGPASSWORD", database.to_owned()),
        ("PGDATABASE", DATABASE.to_owned()),
    ]);
    for (name, value) in lines {
        println!("export {name}='{}'", value.replace('\'', r"'\''"));
    }
}

fn sample_api_pid_file(layout: &Layout) -> PathBuf {
    layout.state.join("sample-api.pid")
}

/// Whether every process of the loop is alive.
fn is_running(layout: &Layout) -> bool {
    // A pid file's first line is the pid (PostgreSQL's has more lines after it).
    let alive = |file: PathBuf, name: &str| {
        fs::read_to_string(file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
            .is_some_and(|pid| process_is(pid, name))
    };
    alive(layout.state.join("localstack.pid"), "localstack")
        && alive(sample_api_pid_file(layout), "xtask")
        && alive(layout.postgres_dir.join("data/postmaster.pid"), "postgres")
}

/// Whether process `pid` exists and its command line mentions `name` (a recycled pid does not).
fn process_is(pid: u32, name: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(name))
}

/// Stops every process the state directory records.
fn stop_recorded(layout: &Layout) {
    let pid_file = sample_api_pid_file(layout);
    if let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .filter(|pid| process_is(*pid, "xtask"))
    {
        services::stop_group(pid, None);
    }
    let _ = fs::remove_file(pid_file);
    services::stop_layout(layout);
}

/// Starts this very program as the sample API, in the background, and waits until it answers.
async fn start_sample_api(layout: &Layout) -> anyhow::Result<()> {
    let listen = barge_sample_api::LOCAL_ADDRESS;
    services::ensure_port_free(listen_port(listen), "the sample API")?;
    let log_path = layout.state.join("sample-api.log");
    let log = File::create(&log_path)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["sample-api", "--listen", listen, "--posts"])
        .arg(SAMPLE_POSTS.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the sample API")?;
    fs::write(sample_api_pid_file(layout), child.id().to_string())?;
    let url = format!("http://{listen}/posts");
    let started = Instant::now();
    let answers = || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|response| response.status().is_success())
    };
    while !answers().await {
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the sample API did not answer at {url} within 30 s; log:\n{}",
                barge_localenv::postgres::tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn listen_port(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("LOCAL_ADDRESS is host:port")
}
