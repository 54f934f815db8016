//! The syslog listener over loopback: UDP and TCP (both framings), size
//! limits, and a prompt stop.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shield_sources::syslog::{SyslogListener, SyslogSpec};

type Got = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

fn listener(max: usize) -> (SyslogListener, Got) {
    let got: Got = Arc::default();
    let g = got.clone();
    let spec = SyslogSpec {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        max_message: max,
        ..SyslogSpec::default()
    };
    let l = SyslogListener::start(
        &spec,
        Arc::new(move |peer, m: &[u8]| g.lock().unwrap().push((peer, m.to_vec()))),
    )
    .unwrap();
    (l, got)
}

/// Waits (polling, at most 5 s) until `n` messages arrived.
fn wait_for(got: &Got, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    got.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
}

#[test]
fn udp_datagrams_are_messages_with_their_peer() {
    let (l, got) = listener(1024);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(
        b"<38>Nov  3 14:02:01 web1 sshd[1]: Failed password for root from 203.0.113.7\n",
        l.udp_addr().unwrap(),
    )
    .unwrap();
    s.send_to(
        b"<34>1 2026-11-29T04:00:00Z web1 sshd 2 - - Invalid user bob",
        l.udp_addr().unwrap(),
    )
    .unwrap();
    s.send_to(&[b'z'; 2000], l.udp_addr().unwrap()).unwrap();
    s.send_to(b"<13>after the big one", l.udp_addr().unwrap())
        .unwrap();
    let msgs = wait_for(&got, 3);
    assert_eq!(
        msgs,
        vec![
            b"<38>Nov  3 14:02:01 web1 sshd[1]: Failed password for root from 203.0.113.7".to_vec(),
            b"<34>1 2026-11-29T04:00:00Z web1 sshd 2 - - Invalid user bob".to_vec(),
            b"<13>after the big one".to_vec(),
        ]
    );
    assert_eq!(got.lock().unwrap()[0].0, s.local_addr().unwrap());
    assert_eq!(
        l.counters()
            .oversized
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let started = Instant::now();
    l.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn tcp_octet_counted_and_newline_framed_messages() {
    let (l, got) = listener(1024);
    let mut c = TcpStream::connect(l.tcp_addr().unwrap()).unwrap();
    let m1 = b"<38>Nov  3 14:02:01 web1 sshd[1]: one";
    let mut stream = format!("{} ", m1.len()).into_bytes();
    stream.extend(m1);
    stream.extend(b"<38>Nov  3 14:02:02 web1 sshd[1]: two\r\n");
    let m3 = b"<34>1 2026-11-29T04:00:00Z web1 sshd 2 - - three\nwith a newline inside";
    stream.extend(format!("{} ", m3.len()).into_bytes());
    stream.extend(m3);
    // Sent in pieces that cut through lengths and messages.
    for piece in stream.chunks(7) {
        c.write_all(piece).unwrap();
        c.flush().unwrap();
    }
    c.write_all(b"<13>last, no newline").unwrap();
    drop(c);
    let msgs = wait_for(&got, 4);
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert_eq!(msgs[0], m1);
    assert_eq!(msgs[1], b"<38>Nov  3 14:02:02 web1 sshd[1]: two");
    assert_eq!(msgs[2], m3);
    assert_eq!(msgs[3], b"<13>last, no newline");
    l.stop();
}

#[test]
fn many_tcp_clients_at_once() {
    let (l, got) = listener(1024);
    let addr = l.tcp_addr().unwrap();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                for j in 0..100 {
                    writeln!(c, "<13>client {i} message {j}").unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let msgs = wait_for(&got, 800);
    assert_eq!(msgs.len(), 800);
    l.stop();
}

#[test]
fn binding_a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = SyslogSpec {
        tcp: Some(taken.local_addr().unwrap()),
        ..SyslogSpec::default()
    };
    let e = SyslogListener::start(&spec, Arc::new(|_, _: &[u8]| {})).unwrap_err();
    assert!(e.to_string().contains("cannot listen for syslog"), "{e}");
}
