//! The README's "Running the daemons yourself" block, run command by command as a new user would:
//! `cargo xtask up`, `env`, both daemons, psql, `down`. `cargo` itself cannot run inside
//! `cargo test` (it waits for the build directory this run holds), so `cargo xtask …` runs the
//! xtask binary and `cargo run -p X -- …` runs X's binary from the same build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The block, without its comments. The test fails if the README says anything else.
const STEPS: [&str; 6] = [
    "cargo xtask up",
    "eval \"$(cargo xtask env)\"",
    "cargo run -p importer -- once",
    "cargo run -p transformer -- run",
    "psql -c 'SELECT count(*) FROM posts'",
    "cargo xtask down",
];
/// The project's own loopback ports, which `up` uses and `down` must free.
const PORTS: [u16; 3] = [14566, 15432, 18089];
/// Posts the sample API serves in the local loop.
const POSTS: &str = "100";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the README's block under "## Running the daemons yourself".
fn readme_steps() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Running the daemons yourself")
        .expect("the section exists")..];
    let block = &section[section.find("```sh\n").expect("a sh block") + 6..];
    block[..block.find("```").unwrap()]
        .lines()
        .map(|line| line.split("  #").next().unwrap().trim().to_owned())
        .collect()
}

/// A binary of this build: `xtask`, or a package's binary next to it.
fn binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name(name)
}

fn run(program: &Path, args: &[&str], env: &HashMap<String, String>) -> Output {
    Command::new(program)
        .args(args)
        .envs(env)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", program.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `export NAME='value'` lines, as `cargo xtask env` prints them.
fn exports(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
            Some((name.to_owned(), value.trim_matches('\'').to_owned()))
        })
        .collect()
}

fn psql_count(env: &HashMap<String, String>) -> Option<String> {
    let out = run(
        Path::new("psql"),
        &["-At", "-c", "SELECT count(*) FROM posts"],
        env,
    );
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_owned())
}

/// Stops what the test started, also when an assertion fails half-way, so that the next run
/// finds the ports free.
struct Cleanup {
    transformer: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(transformer) = &mut self.transformer {
            let _ = transformer.kill();
            let _ = transformer.wait();
        }
        let _ = Command::new(binary("xtask")).arg("down").output();
    }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_readme_local_loop_runs_as_written() {
    assert_eq!(
        readme_steps(),
        STEPS,
        "the README's block changed: update this test"
    );
    let state = workspace().join("target/barge-local/up");
    assert!(
        !state.exists() && PORTS.iter().all(|port| port_is_free(*port)),
        "a local loop already runs here (`cargo xtask down` stops it); this test needs its ports"
    );
    let xtask = binary("xtask");
    let mut cleanup = Cleanup { transformer: None };
    // Only what the README's commands set: the test run's own LocalStack is somewhere else.
    let mut env: HashMap<String, String> = HashMap::new();

    // cargo xtask up, twice: the second says where it runs and changes nothing.
    let up = run(&xtask, &["up"], &env);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let pids: Vec<String> = ["localstack.pid", "sample-api.pid"]
        .iter()
        .map(|file| std::fs::read_to_string(state.join(file)).unwrap())
        .collect();
    let again = run(&xtask, &["up"], &env);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("the local loop already runs"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        text(&again.stdout),
        text(&up.stdout),
        "the same environment"
    );

    // eval "$(cargo xtask env)"
    let printed = run(&xtask, &["env"], &env);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    env.extend(exports(&text(&printed.stdout)));
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "BARGE_CONFIG",
        "PGHOST",
        "PGPORT",
    ] {
        assert!(env.contains_key(name), "{name} missing from {env:?}");
    }

    // cargo run -p importer -- once
    let once = run(&binary("importer"), &["once"], &env);
    assert!(once.status.success(), "{}", text(&once.stderr));

    // cargo run -p transformer -- run, until the rows are there, then Ctrl-C.
    let transformer = cleanup.transformer.insert(
        Command::new(binary("transformer"))
            .arg("run")
            .envs(&env)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while psql_count(&env).as_deref() != Some(POSTS) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the transformer loaded {:?} rows in a minute",
            psql_count(&env)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill")
        .args(["-INT", &transformer.id().to_string()])
        .status()
        .unwrap();
    assert!(transformer.wait().unwrap().success());
    cleanup.transformer = None;

    // psql -c 'SELECT count(*) FROM posts'
    let psql = run(
        Path::new("psql"),
        &["-c", "SELECT count(*) FROM posts"],
        &env,
    );
    assert!(text(&psql.stdout).contains(POSTS), "{}", text(&psql.stdout));

    // cargo xtask down: no process, no port, no state left; a second down says so.
    let down = run(&xtask, &["down"], &env);
    assert!(down.status.success(), "{}", text(&down.stderr));
    for pid in &pids {
        // Gone, or a zombie where nothing reaps orphans: either way it no longer runs.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        let state = stat.as_deref().ok().and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        });
        assert!(
            state.is_none() || state == Some('Z'),
            "process {pid} still runs ({state:?})"
        );
    }
    for port in PORTS {
        assert!(port_is_free(port), "port {port} is still open");
    }
    assert!(!state.exists());
    let again = run(&xtask, &["down"], &env);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("nothing to stop"),
        "{}",
        text(&again.stderr)
    );
}
