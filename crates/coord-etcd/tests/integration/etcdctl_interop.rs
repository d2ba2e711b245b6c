//! Our elections and locks contend correctly with etcd's own `etcdctl elect` and `etcdctl lock`
//! on the same names, in both directions.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{Coordinator, Key};
use cluster_core::ids::{NodeId, PlatformName};
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::{NamespaceKind, namespace};
use coord_client::Session;
use coord_etcd::{EtcdConfig, EtcdCoordinator};
use testkit::EtcdServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn etcdctl(etcd: &EtcdServer, args: &[&str]) -> Child {
    let tool = testkit::tools::Tool::Etcdctl.locate().expect("etcdctl");
    Command::new(tool.path)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.url()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn etcdctl")
}

/// Resolves with etcdctl's first line of output (it prints once it holds the election or lock).
/// The rest of its output keeps being read, so etcdctl never dies of SIGPIPE mid-print (it must
/// live to resign when told to).
async fn first_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    first
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id().expect("etcdctl running") as libc::pid_t;
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(pid, sig);
    }
}

async fn setup() -> (EtcdServer, Arc<dyn Coordinator>, Session, Key, Key) {
    let etcd = EtcdServer::start().await.unwrap();
    let coord: Arc<dyn Coordinator> = Arc::new(
        EtcdCoordinator::connect(EtcdConfig::new([etcd.url()]))
            .await
            .unwrap(),
    );
    let session = Session::open(
        coord.clone(),
        NodeId::new("ours").unwrap(),
        LeaseTiming::new(Duration::from_secs(2), Duration::from_millis(700)).unwrap(),
    )
    .await
    .unwrap();
    let platform = PlatformName::new("interop").unwrap();
    let election = Key::new(
        namespace(&platform, None, NamespaceKind::Election),
        "leader",
    )
    .unwrap();
    let lock = Key::new(namespace(&platform, None, NamespaceKind::Locks), "migrate").unwrap();
    (etcd, coord, session, election, lock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_elect_waits_for_our_leader_and_we_wait_for_it() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let (etcd, coord, session, election, _) = setup().await;

    {
        tracing::info!("we lead; etcdctl elect on the same name waits until we resign");
        let term = coord
            .campaign(&election, "ours", session.lease())
            .await
            .unwrap();
        let mut theirs = etcdctl(&etcd, &["elect", &election.path(), "theirs"]);
        let line = tokio::spawn(async move {
            let line = first_line(&mut theirs).await;
            (line, theirs)
        });
        testkit::stays_true_for(
            "etcdctl elect won while we lead",
            Duration::from_secs(1),
            || !line.is_finished(),
        )
        .await;
        coord.resign(&term).await.unwrap();
        let (line, mut theirs) = tokio::time::timeout(Duration::from_secs(10), line)
            .await
            .unwrap()
            .unwrap();
        assert!(
            line.unwrap_or_default().starts_with(&election.path()),
            "etcdctl did not report leading"
        );
        let leader = coord.leader(&election).await.unwrap().unwrap();
        assert_eq!(leader.holder, "theirs");
        assert!(leader.token > term.token);

        tracing::info!("etcdctl leads; our campaign waits until it resigns (SIGINT)");
        let ours = {
            let (coord, election, lease) =
                (coord.clone(), election.clone(), session.lease().clone());
            tokio::spawn(async move { coord.campaign(&election, "ours", &lease).await })
        };
        testkit::stays_true_for("we won while etcdctl leads", Duration::from_secs(1), || {
            !ours.is_finished()
        })
        .await;
        signal(&theirs, libc::SIGINT);
        let _ = theirs.wait().await;
        let again = tokio::time::timeout(Duration::from_secs(10), ours)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(again.token > leader.token);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_excludes_us_and_we_exclude_it() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let (etcd, coord, session, _, lock) = setup().await;

    {
        tracing::info!(
            "etcdctl holds the lock (ttl 2 s); SIGKILLed, its lease expires and we get it"
        );
        let mut theirs = etcdctl(&etcd, &["lock", "--ttl=2", &lock.path()]);
        let line = first_line(&mut theirs).await.unwrap_or_default();
        assert!(
            line.starts_with(&lock.path()),
            "etcdctl did not take the lock: {line:?}"
        );
        let ours = {
            let (coord, lock, lease) = (coord.clone(), lock.clone(), session.lease().clone());
            tokio::spawn(async move { coord.lock(&lock, "ours", &lease).await })
        };
        testkit::stays_true_for(
            "we took a lock etcdctl holds",
            Duration::from_secs(1),
            || !ours.is_finished(),
        )
        .await;
        signal(&theirs, libc::SIGKILL);
        let _ = theirs.wait().await;
        let hold = tokio::time::timeout(Duration::from_secs(15), ours)
            .await
            .unwrap()
            .unwrap()
            .unwrap();

        tracing::info!("we hold it; a new etcdctl lock waits until we unlock");
        let mut theirs = etcdctl(&etcd, &["lock", "--ttl=2", &lock.path()]);
        let line = tokio::spawn(async move {
            let line = first_line(&mut theirs).await;
            (line, theirs)
        });
        testkit::stays_true_for(
            "etcdctl took the lock we hold",
            Duration::from_secs(1),
            || !line.is_finished(),
        )
        .await;
        coord.unlock(&hold).await.unwrap();
        let (line, _theirs) = tokio::time::timeout(Duration::from_secs(10), line)
            .await
            .unwrap()
            .unwrap();
        assert!(line.unwrap_or_default().starts_with(&lock.path()));
    }
}
