//! Each FaultProxy mode behaves as documented, against a plain echo server.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use testkit::{FaultProxy, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(sock: &mut TcpStream, msg: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    sock.write_all(msg).await?;
    let mut buf = vec![0u8; msg.len()];
    match tokio::time::timeout(wait, sock.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(ErrorKind::TimedOut, "no answer")),
    }
}

const ANSWER: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn pass_forwards_both_ways() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut sock, b"hello", ANSWER).await.unwrap(),
        b"hello"
    );
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn latency_delays_every_answer_by_at_least_the_setting() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(100));
    let started = std::time::Instant::now();
    assert_eq!(
        roundtrip(&mut sock, b"slow", ANSWER).await.unwrap(),
        b"slow"
    );
    // Each direction is delayed, so a round trip cannot come back sooner than twice the latency.
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn refuse_rejects_new_connections_but_keeps_open_ones() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut open, b"a", ANSWER).await.unwrap(), b"a");

    proxy.set_mode(Mode::Refuse);
    let mut refused = false;
    for _ in 0..100 {
        match TcpStream::connect(proxy.addr()).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::task::yield_now().await,
        }
    }
    assert!(refused, "new connections were not refused");
    assert_eq!(roundtrip(&mut open, b"b", ANSWER).await.unwrap(), b"b");

    proxy.set_mode(Mode::Pass);
    let mut fresh = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(proxy.addr()).await {
            fresh = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fresh = fresh.expect("proxy accepts again after refuse");
    assert_eq!(roundtrip(&mut fresh, b"c", ANSWER).await.unwrap(), b"c");
}

#[tokio::test]
async fn blackhole_accepts_holds_bytes_and_delivers_them_on_heal() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut open, b"x", ANSWER).await.unwrap(), b"x");

    proxy.set_mode(Mode::Blackhole);
    let mut fresh = TcpStream::connect(proxy.addr())
        .await
        .expect("blackhole still accepts");
    let err = roundtrip(&mut fresh, b"new", SILENCE).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let err = roundtrip(&mut open, b"old", SILENCE).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);

    proxy.heal();
    let mut buf = [0u8; 3];
    tokio::time::timeout(ANSWER, open.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"old", "held bytes are delivered after heal");
    tokio::time::timeout(ANSWER, fresh.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"new");
}

#[tokio::test]
async fn cut_resets_open_connections_and_lets_new_ones_in() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut open, b"x", ANSWER).await.unwrap(), b"x");

    proxy.cut();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(ANSWER, open.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "cut connection still delivers: {read:?}"
    );

    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut fresh, b"y", ANSWER).await.unwrap(), b"y");
}

#[tokio::test]
async fn origin_rules_apply_only_to_the_named_process() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    // Connections from this very process are labelled "me"; the default stays Pass.
    proxy.set_known_origin(std::process::id(), "me");
    proxy.set_origin_mode("me", Mode::Blackhole);
    let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
    let err = roundtrip(&mut sock, b"z", SILENCE).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::TimedOut,
        "origin rule was not applied"
    );

    proxy.set_origin_mode("other", Mode::Blackhole);
    proxy.set_origin_mode("me", Mode::Pass);
    let mut buf = [0u8; 1];
    tokio::time::timeout(ANSWER, sock.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"z");
}
