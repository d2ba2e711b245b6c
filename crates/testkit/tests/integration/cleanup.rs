//! A test process killed with SIGKILL leaves no server behind.

use std::time::{Duration, Instant};

const CHILD_VAR: &str = "TESTKIT_CLEANUP_CHILD";

/// Runs only as the child of `killed_test_leaves_no_server`: starts a server, reports its pid,
/// and waits to be killed.
#[tokio::test]
async fn child_starts_a_server_and_waits() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let nats = testkit::NatsServer::start().await.unwrap();
    println!("SERVER_PID={}", nats.pid().unwrap());
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes; its parent reaps it.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').expect("stat has a command name") + 1..]
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}

#[test]
fn killed_test_leaves_no_server() {
    use std::io::{BufRead, BufReader};
    let _slot = testkit::test_slot_blocking();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            &testkit::process::test_name(module_path!(), "child_starts_a_server_and_waits"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server_pid = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest prints "test NAME ... " before the test's own output on the same line.
        if let Some((_, pid)) = line.split_once("SERVER_PID=") {
            server_pid = Some(pid.trim().parse::<u32>().unwrap());
            break;
        }
    }
    let server_pid = server_pid.expect("child reported its server");
    assert!(alive(server_pid));

    child.kill().unwrap(); // SIGKILL: no destructor runs in the child.
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(server_pid) {
        assert!(
            Instant::now() < deadline,
            "server {server_pid} outlived its killed test"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
