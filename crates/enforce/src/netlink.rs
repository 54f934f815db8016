//! A small nf_tables netlink client for what the hot path needs: set element
//! batches. One `sendmsg` carries a whole transaction (`BATCH_BEGIN`, any
//! number of `NEWSETELEM` / `DELSETELEM` messages, `BATCH_END`); the kernel
//! applies all of it or none of it, synchronously inside the `sendmsg` call,
//! so when `send` returns every error is already queued on the socket.
//!
//! The wire format is the one `nft` itself sends (compare with
//! `nft --debug=mnl add element …`): elements of an interval set are a start
//! element carrying the timeout and an end element (`NFT_SET_ELEM_INTERVAL_END`,
//! key = last address + 1, no timeout; none when the range ends at the top of
//! the address space).
//!
//! Creating the table, sets and chains stays with `nft -f -`: it happens once
//! at start, and rules would need the whole expression encoding.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

use ipnet::IpNet;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink::SocketAddrNetlink,
    sockopt,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NFPROTO_INET: u8 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// Attribute lengths are `u16`: a message's element list must stay below 64 KiB.
const MAX_ELEMS_BYTES: usize = 60_000;

/// One set element on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Elem {
    key: [u8; 16],
    len: u8,
    timeout_ms: Option<u64>,
    end: bool,
}

impl Elem {
    fn of(addr: IpAddr, timeout_ms: Option<u64>, end: bool) -> Elem {
        let mut key = [0u8; 16];
        let len = match addr {
            IpAddr::V4(a) => {
                key[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                key.copy_from_slice(&a.octets());
                16
            }
        };
        Elem {
            key,
            len,
            timeout_ms,
            end,
        }
    }

    /// The elements of `net`: one for a host; start and (unless the range ends
    /// at the top of the address space) end for a range in an interval set.
    pub(crate) fn for_net(
        net: &IpNet,
        interval: bool,
        timeout_ms: Option<u64>,
    ) -> [Option<Elem>; 2] {
        let start = Elem::of(net.network(), timeout_ms, false);
        if !interval {
            return [Some(start), None];
        }
        let end = match net {
            IpNet::V4(n) => u32::from(n.broadcast())
                .checked_add(1)
                .map(|v| Elem::of(IpAddr::V4(v.into()), None, true)),
            IpNet::V6(n) => u128::from(n.broadcast())
                .checked_add(1)
                .map(|v| Elem::of(IpAddr::V6(v.into()), None, true)),
        };
        [Some(start), end]
    }

    fn wire_len(&self) -> usize {
        // LIST_ELEM nest + KEY nest + VALUE + optional TIMEOUT / FLAGS.
        4 + 4
            + 4
            + usize::from(self.len)
            + if self.timeout_ms.is_some() { 12 } else { 0 }
            + if self.end { 8 } else { 0 }
    }
}

/// What a message of a batch did, for error messages.
#[derive(Clone, Debug)]
struct MsgInfo {
    seq: u32,
    what: String,
}

/// One transaction under construction.
pub(crate) struct Batch {
    buf: Vec<u8>,
    seq: u32,
    msgs: Vec<MsgInfo>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::with_capacity(4096),
            seq: 0,
            msgs: Vec::new(),
        };
        b.control(NFNL_MSG_BATCH_BEGIN);
        b
    }

    /// True when no message was added between begin and end.
    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    fn control(&mut self, ty: u16) {
        let off = self.header(ty, NLM_F_REQUEST);
        // nfgenmsg: family AF_UNSPEC, version 0, res_id = subsystem (big endian).
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
        self.finish_msg(off);
    }

    fn header(&mut self, ty: u16, flags: u16) -> usize {
        let off = self.buf.len();
        self.seq = self.seq.wrapping_add(1);
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        off
    }

    fn finish_msg(&mut self, off: usize) {
        let len = (self.buf.len() - off) as u32;
        self.buf[off..off + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn nest_start(&mut self, ty: u16) -> usize {
        let off = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        off
    }

    fn nest_end(&mut self, off: usize) {
        let len = (self.buf.len() - off) as u16;
        self.buf[off..off + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn setelem_msg(&mut self, ty: u16, table: &str, set: &str) -> usize {
        let flags = if ty == NFT_MSG_NEWSETELEM {
            NLM_F_REQUEST | NLM_F_CREATE
        } else {
            NLM_F_REQUEST
        };
        let off = self.header((NFNL_SUBSYS_NFTABLES << 8) | ty, flags);
        // nfgenmsg: family inet, version 0, res_id 0.
        self.buf.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
        self.attr(NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(table));
        self.attr(NFTA_SET_ELEM_LIST_SET, &nul_terminated(set));
        off
    }

    /// Remove every element of a set (a `DELSETELEM` without elements).
    pub(crate) fn flush_set(&mut self, table: &str, set: &str) {
        let off = self.setelem_msg(NFT_MSG_DELSETELEM, table, set);
        self.finish_msg(off);
        self.msgs.push(MsgInfo {
            seq: self.seq,
            what: format!("flushing set {set}"),
        });
    }

    /// Add (`delete == false`) or delete elements, split into messages below 64 KiB.
    pub(crate) fn elements(&mut self, delete: bool, table: &str, set: &str, elems: &[Elem]) {
        let ty = if delete {
            NFT_MSG_DELSETELEM
        } else {
            NFT_MSG_NEWSETELEM
        };
        let mut rest = elems;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && bytes + rest[n].wire_len() <= MAX_ELEMS_BYTES {
                bytes += rest[n].wire_len();
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n.max(1));
            rest = tail;
            let off = self.setelem_msg(ty, table, set);
            let list = self.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
            for e in chunk {
                let el = self.nest_start(NFTA_LIST_ELEM);
                if let Some(ms) = e.timeout_ms {
                    self.attr(NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
                }
                if e.end {
                    self.attr(
                        NFTA_SET_ELEM_FLAGS,
                        &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                    );
                }
                let key = self.nest_start(NFTA_SET_ELEM_KEY);
                self.attr(NFTA_DATA_VALUE, &e.key[..usize::from(e.len)]);
                self.nest_end(key);
                self.nest_end(el);
            }
            self.nest_end(list);
            self.finish_msg(off);
            let what = if chunk.len() == 1 {
                let e = &chunk[0];
                let addr: IpAddr = if e.len == 4 {
                    IpAddr::from(<[u8; 4]>::try_from(&e.key[..4]).expect("4 bytes"))
                } else {
                    IpAddr::from(e.key)
                };
                format!(
                    "{} element {addr}{} {} set {set}",
                    if delete { "deleting" } else { "adding" },
                    if e.end { " (range end)" } else { "" },
                    if delete { "from" } else { "to" },
                )
            } else {
                format!(
                    "{} {} elements {} set {set}",
                    if delete { "deleting" } else { "adding" },
                    chunk.len(),
                    if delete { "from" } else { "to" },
                )
            };
            self.msgs.push(MsgInfo {
                seq: self.seq,
                what,
            });
        }
    }

    fn finish(mut self) -> (Vec<u8>, Vec<MsgInfo>) {
        self.control(NFNL_MSG_BATCH_END);
        (self.buf, self.msgs)
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The kernel refused a transaction (nothing of it was applied).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) what: String,
    pub(crate) error: io::Error,
}

/// A netlink socket to nf_tables, in the namespace it was opened in.
pub(crate) struct NfSock {
    fd: OwnedFd,
    sndbuf: usize,
    rx: Vec<u8>,
}

impl NfSock {
    /// Open a socket in this process's network namespace, or in the named one
    /// (`/run/netns/NAME`, as `ip netns` creates them; tests only).
    pub(crate) fn open(netns: Option<&str>) -> io::Result<NfSock> {
        let fd = match netns {
            None => socket()?,
            Some(name) => {
                // setns(2) affects only the calling thread: do it in a short-lived
                // thread; the socket keeps the namespace it was created in.
                let path = format!("/run/netns/{name}");
                std::thread::scope(|s| {
                    s.spawn(|| -> io::Result<OwnedFd> {
                        let ns = std::fs::File::open(&path)?;
                        rustix::thread::move_into_link_name_space(
                            std::os::fd::AsFd::as_fd(&ns),
                            Some(rustix::thread::LinkNameSpaceType::Network),
                        )?;
                        socket()
                    })
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
                })?
            }
        };
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        // Large receive buffer: a refused batch of many messages queues one error each.
        let _ = sockopt::set_socket_recv_buffer_size_force(&fd, 8 << 20)
            .or_else(|_| sockopt::set_socket_recv_buffer_size(&fd, 8 << 20));
        let sndbuf = sockopt::socket_send_buffer_size(&fd).unwrap_or(200_000);
        Ok(NfSock {
            fd,
            sndbuf,
            rx: vec![0; 256 << 10],
        })
    }

    /// Send one transaction; Ok when the kernel applied all of it.
    pub(crate) fn commit(&mut self, batch: Batch) -> Result<(), Refused> {
        if batch.is_empty() {
            return Ok(());
        }
        let (buf, msgs) = batch.finish();
        self.drain_stale();
        // The whole batch must fit in one datagram (the kernel checks against SO_SNDBUF).
        if buf.len() + 1024 > self.sndbuf / 2 {
            let want = buf.len() + 64 * 1024;
            let set = sockopt::set_socket_send_buffer_size_force(&self.fd, want)
                .or_else(|_| sockopt::set_socket_send_buffer_size(&self.fd, want));
            if set.is_ok() {
                self.sndbuf = sockopt::socket_send_buffer_size(&self.fd).unwrap_or(self.sndbuf);
            }
        }
        let sent = rustix::net::send(&self.fd, &buf, SendFlags::empty()).map_err(|e| Refused {
            what: format!("sending a batch of {} bytes", buf.len()),
            error: e.into(),
        })?;
        if sent != buf.len() {
            return Err(Refused {
                what: format!("sending a batch of {} bytes", buf.len()),
                error: io::Error::other(format!("only {sent} bytes were sent")),
            });
        }
        // The kernel processed the batch inside send(): read what it queued.
        let mut first: Option<Refused> = None;
        loop {
            match rustix::net::recv(&self.fd, &mut self.rx[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    let n = n.min(self.rx.len());
                    if let Some(err) = first_error(&self.rx[..n], &msgs)
                        && first.is_none()
                    {
                        first = Some(err);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // ENOBUFS: so many errors that replies were dropped. Still a refusal.
                    first.get_or_insert(Refused {
                        what: "reading the kernel's answer".into(),
                        error: e.into(),
                    });
                    break;
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn drain_stale(&mut self) {
        while let Ok((n, _)) = rustix::net::recv(&self.fd, &mut self.rx[..], RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
        }
    }
}

fn socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::NETFILTER),
    )?)
}

/// The first `NLMSG_ERROR` with a non-zero error in a datagram of replies.
fn first_error(mut data: &[u8], msgs: &[MsgInfo]) -> Option<Refused> {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        if len < 16 || len > data.len() {
            return None;
        }
        if ty == NLMSG_ERROR && len >= 20 {
            let errno = i32::from_ne_bytes(data[16..20].try_into().expect("4 bytes"));
            if errno != 0 {
                // The original header follows: its sequence number says which message.
                let seq = (len >= 36)
                    .then(|| u32::from_ne_bytes(data[28..32].try_into().expect("4 bytes")));
                let what = seq
                    .and_then(|s| msgs.iter().find(|m| m.seq == s))
                    .map(|m| m.what.clone())
                    .unwrap_or_else(|| "the batch".into());
                return Some(Refused {
                    what,
                    error: io::Error::from_raw_os_error(-errno),
                });
            }
        }
        let step = (len + 3) & !3;
        if step >= data.len() {
            break;
        }
        data = &data[step..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_elements_and_top_of_space() {
        let n: IpNet = "10.8.0.0/24".parse().unwrap();
        let [s, e] = Elem::for_net(&n, true, Some(60_000));
        let (s, e) = (s.unwrap(), e.unwrap());
        assert_eq!(&s.key[..4], &[10, 8, 0, 0]);
        assert_eq!(s.timeout_ms, Some(60_000));
        assert!(!s.end);
        assert_eq!(&e.key[..4], &[10, 8, 1, 0]);
        assert!(e.end && e.timeout_ms.is_none());
        let top: IpNet = "255.255.255.0/24".parse().unwrap();
        assert_eq!(Elem::for_net(&top, true, None)[1], None);
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        let [_, e6] = Elem::for_net(&v6, true, None);
        assert_eq!(&e6.unwrap().key[..4], &[0x20, 0x01, 0x0d, 0xb9]);
    }

    /// The bytes of one add match what `nft --debug=mnl` sends for
    /// `add element inet t s4 { 10.8.0.0/24 timeout 60s }` (minus its SET_ID).
    #[test]
    fn wire_format_matches_nft() {
        let mut b = Batch::new();
        let n: IpNet = "10.8.0.0/24".parse().unwrap();
        let elems: Vec<Elem> = Elem::for_net(&n, true, Some(60_000))
            .into_iter()
            .flatten()
            .collect();
        b.elements(false, "t", "s4", &elems);
        let (buf, msgs) = b.finish();
        assert_eq!(msgs.len(), 1);
        // begin (20) + add + end (20)
        let add = &buf[20..buf.len() - 20];
        let len = u32::from_ne_bytes(add[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, add.len());
        assert_eq!(u16::from_ne_bytes(add[4..6].try_into().unwrap()), 0x0a0c);
        let body = &add[16..];
        assert_eq!(&body[..4], &[1, 0, 0, 0]);
        // Elements nest: 56 bytes as in nft's dump (two elements of 28 / 24).
        let elems_at = 4 + 8 + 8; // nfgenmsg + "t\0" attr + "s4\0" attr
        assert_eq!(
            u16::from_ne_bytes(body[elems_at..elems_at + 2].try_into().unwrap()),
            56
        );
        assert!(body.windows(4).any(|w| w == [0x0a, 8, 1, 0]));
        assert!(body.windows(8).any(|w| w == 60_000u64.to_be_bytes()));
    }

    #[test]
    fn big_lists_split_below_64k() {
        let mut b = Batch::new();
        let elems: Vec<Elem> = (0..10_000u32)
            .map(|i| Elem::of(IpAddr::V4(i.into()), Some(1000), false))
            .collect();
        b.elements(false, "shield", "ban4", &elems);
        let (buf, msgs) = b.finish();
        assert!(msgs.len() >= 5, "{}", msgs.len());
        let mut off = 0;
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            assert!(len < 65_000);
            off += len;
        }
        assert_eq!(off, buf.len());
    }
}
