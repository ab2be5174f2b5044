//! What Link peers announce of their session (control thread): jamrig listens,
//! and only listens, to Ableton Link's discovery multicast, reads each peer's
//! session, timeline and start/stop state, and tells whether the session jamrig
//! is in plays, which Link itself does not tell a newcomer.
//!
//! The wire format (ported from Link's discovery protocol, version 1): an 8-byte
//! protocol header `_asdp_v\x01`, the message type (1 alive, 2 response, 3 bye),
//! a TTL in seconds, a 16-bit group (0), the sender's 8-byte node id, then payload
//! entries, each a 32-bit key, a 32-bit size and that many bytes; all big-endian.
//! The entries read here are `tmln` (microseconds per beat, beat origin in
//! micro-beats, time origin in µs: three i64), `sess` (the session id, 8 bytes)
//! and `stst` (playing as one byte, beats in micro-beats, timestamp in µs).
//! Timestamps are on the session's shared clock, so the members' start/stop states
//! compare: the newest one is the session's.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The IPv4 multicast group Link peers announce themselves to.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 76, 78, 75);
/// The port of Link's discovery multicast.
pub const DISCOVERY_PORT: u16 = 20808;
/// The largest message Link sends (its receive buffer): anything longer is not Link's.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Nodes remembered at once; announcements from more are counted and dropped.
pub const MAX_NODES: usize = 64;
/// Datagrams read per [`PeerWatch::poll`], so that a flood cannot hold up the
/// control thread (the rest wait in the socket for the next poll).
pub const MAX_DATAGRAMS_PER_POLL: usize = 512;
/// How often the interfaces are looked at again, to join the group on one that
/// came up since (Link scans for them too).
const INTERFACE_RESCAN: Duration = Duration::from_secs(5);

const PROTOCOL_HEADER: [u8; 8] = *b"_asdp_v\x01";
const HEADER_BYTES: usize = PROTOCOL_HEADER.len() + 1 + 1 + 2 + 8;
const KEY_TIMELINE: u32 = u32::from_be_bytes(*b"tmln");
const KEY_SESSION: u32 = u32::from_be_bytes(*b"sess");
const KEY_START_STOP: u32 = u32::from_be_bytes(*b"stst");
const TIMELINE_BYTES: usize = 24;
const SESSION_BYTES: usize = 8;
const START_STOP_BYTES: usize = 17;

/// A Link node id, and a session id (the id of the node that founded it).
pub type NodeId = [u8; 8];

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A node's periodic (or changed) state, to the group.
    Alive,
    /// A node's state, in answer to another's alive.
    Response,
    /// A node leaves.
    ByeBye,
}

/// A session's timeline: tempo as microseconds per beat, and the beat at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub micros_per_beat: i64,
    pub beat_origin_ubeats: i64,
    pub time_origin_us: i64,
}

impl Timeline {
    pub fn bpm(&self) -> f64 {
        60e6 / self.micros_per_beat as f64
    }

    /// Whether `bpm` is this tempo, as Link rounds it on the wire (to a whole
    /// microsecond per beat).
    pub fn is_tempo(&self, bpm: f64) -> bool {
        bpm > 0.0 && ((60e6 / bpm).round() as i64 - self.micros_per_beat).abs() <= 1
    }
}

/// A session's start/stop state, as a node holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartStop {
    pub playing: bool,
    pub beats_ubeats: i64,
    /// On the session's shared clock (µs); 0 for a state nobody set.
    pub timestamp_us: i64,
}

/// One message of Link's discovery protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub kind: Kind,
    /// How long the state holds without a new message, in seconds.
    pub ttl_s: u8,
    pub node: NodeId,
    pub session: Option<NodeId>,
    pub timeline: Option<Timeline>,
    pub start_stop: Option<StartStop>,
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Reads one datagram. `None` for anything Link itself would not take: not the
/// protocol's header, another group, an unknown type, an entry that runs past the
/// end, a known entry of the wrong size, a tempo that is not positive, or more
/// than [`MAX_MESSAGE_BYTES`]. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Option<Announcement> {
    if bytes.len() < HEADER_BYTES || bytes.len() > MAX_MESSAGE_BYTES || bytes[..8] != PROTOCOL_HEADER {
        return None;
    }
    let kind = match bytes[8] {
        1 => Kind::Alive,
        2 => Kind::Response,
        3 => Kind::ByeBye,
        _ => return None,
    };
    let ttl_s = bytes[9];
    if bytes[10] != 0 || bytes[11] != 0 {
        return None;
    }
    let mut node = [0u8; 8];
    node.copy_from_slice(&bytes[12..20]);
    let mut a = Announcement { kind, ttl_s, node, session: None, timeline: None, start_stop: None };
    let mut rest = &bytes[HEADER_BYTES..];
    while !rest.is_empty() {
        if rest.len() < 8 {
            return None;
        }
        let (key, size) = (be_u32(rest), be_u32(&rest[4..]) as usize);
        let value = rest.get(8..8usize.checked_add(size)?)?;
        rest = &rest[8 + size..];
        match key {
            KEY_TIMELINE => {
                if size != TIMELINE_BYTES {
                    return None;
                }
                let t = Timeline {
                    micros_per_beat: be_i64(value),
                    beat_origin_ubeats: be_i64(&value[8..]),
                    time_origin_us: be_i64(&value[16..]),
                };
                if t.micros_per_beat <= 0 {
                    return None;
                }
                a.timeline = Some(t);
            }
            KEY_SESSION => {
                if size != SESSION_BYTES {
                    return None;
                }
                let mut s = [0u8; 8];
                s.copy_from_slice(value);
                a.session = Some(s);
            }
            KEY_START_STOP => {
                if size != START_STOP_BYTES {
                    return None;
                }
                a.start_stop = Some(StartStop {
                    playing: value[0] != 0,
                    beats_ubeats: be_i64(&value[1..]),
                    timestamp_us: be_i64(&value[9..]),
                });
            }
            // Endpoints and entries of later versions: not needed here.
            _ => {}
        }
    }
    Some(a)
}

/// What the peers of a session say of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Its newest start/stop state says it plays.
    Playing,
    /// Its newest start/stop state says it does not.
    Stopped,
    /// No announced session has that tempo (nothing heard yet, or a tempo change
    /// on its way).
    Nothing,
    /// More than one session could be it: no guess is made.
    Ambiguous,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    id: NodeId,
    session: NodeId,
    timeline: Timeline,
    start_stop: StartStop,
    expires: Instant,
}

/// The nodes heard, each with its latest state, until it says bye or its TTL runs
/// out. At most [`MAX_NODES`]. Pure data: [`PeerWatch`] feeds it from the socket.
#[derive(Default)]
pub struct PeerTable {
    nodes: Vec<Node>,
    /// Announcements dropped because the table was full.
    pub overflow: u64,
}

impl PeerTable {
    /// Takes one message heard at `now`.
    pub fn note(&mut self, a: &Announcement, now: Instant) {
        self.expire(now);
        let at = self.nodes.iter().position(|n| n.id == a.node);
        if a.kind == Kind::ByeBye {
            if let Some(i) = at {
                self.nodes.swap_remove(i);
            }
            return;
        }
        // A state without a session or a timeline is not one to go by.
        let (Some(session), Some(timeline)) = (a.session, a.timeline) else { return };
        let node = Node {
            id: a.node,
            session,
            timeline,
            start_stop: a.start_stop.unwrap_or_default(),
            expires: now + Duration::from_secs(a.ttl_s.max(1) as u64),
        };
        match at {
            Some(i) => self.nodes[i] = node,
            None if self.nodes.len() < MAX_NODES => self.nodes.push(node),
            None => self.overflow += 1,
        }
    }

    /// Forgets the nodes whose TTL ran out by `now`.
    pub fn expire(&mut self, now: Instant) {
        self.nodes.retain(|n| n.expires > now);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// What the session at `bpm` says, of which jamrig is a member with `peers`
    /// others. The session is the one whose timeline has that tempo; if several
    /// have, the one with `peers + 1` members; if that leaves none or several, no
    /// guess ([`Heard::Ambiguous`]). Its state is the newest start/stop state any
    /// member announces (Link's own rule: a newer timestamp wins).
    pub fn session_at(&self, bpm: f64, peers: u64) -> Heard {
        let mut sessions: Vec<NodeId> = Vec::new();
        for n in self.nodes.iter().filter(|n| n.timeline.is_tempo(bpm)) {
            if !sessions.contains(&n.session) {
                sessions.push(n.session);
            }
        }
        let members = |s: &NodeId| self.nodes.iter().filter(|n| n.session == *s).count() as u64;
        if sessions.len() > 1 {
            sessions.retain(|s| members(s) == peers + 1);
            if sessions.len() != 1 {
                return Heard::Ambiguous;
            }
        }
        let Some(session) = sessions.first() else { return Heard::Nothing };
        let newest = self.nodes.iter().filter(|n| n.session == *session).map(|n| n.start_stop).max_by(|a, b| {
            // Equal timestamps: playing wins (the same moment, told both ways).
            a.timestamp_us.cmp(&b.timestamp_us).then(a.playing.cmp(&b.playing))
        });
        match newest {
            Some(s) if s.playing => Heard::Playing,
            _ => Heard::Stopped,
        }
    }
}

/// A socket on Link's discovery multicast, beside Link's own (address reuse), with
/// the group joined on every running IPv4 interface as Link does (the loopback
/// included). Non-blocking: [`PeerWatch::poll`] reads what has arrived. It never
/// sends anything.
pub struct PeerWatch {
    socket: Socket,
    last_scan: Instant,
    pub table: PeerTable,
    /// Datagrams on the port that were not Link messages.
    pub malformed: u64,
}

impl PeerWatch {
    /// Opens the socket and joins the group. Fails if no interface could join it.
    pub fn open() -> io::Result<PeerWatch> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DISCOVERY_PORT)))?;
        let watch = PeerWatch { socket, last_scan: Instant::now(), table: PeerTable::default(), malformed: 0 };
        watch.join_interfaces()?;
        Ok(watch)
    }

    /// Joins the group on every running IPv4 interface (one already joined says
    /// so and stays joined; one that went away was left by the system). Fails if
    /// the group is joined on none.
    fn join_interfaces(&self) -> io::Result<()> {
        let mut joined = 0;
        let mut last_err = io::Error::other("no running IPv4 interface");
        for addr in ipv4_interfaces() {
            match self.socket.join_multicast_v4(&GROUP_V4, &addr) {
                Ok(()) => joined += 1,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => joined += 1,
                Err(e) => last_err = e,
            }
        }
        if joined == 0 { Err(last_err) } else { Ok(()) }
    }

    /// Reads one waiting datagram into `buf`, without waiting: its length, or
    /// `None` when nothing is waiting (or the socket failed). Bytes past `buf`'s
    /// length are cut off.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: recv only writes initialised bytes into the buffer, and the
        // length it returns counts only those.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        self.socket.recv(uninit).ok()
    }

    /// Takes every datagram that has arrived (up to [`MAX_DATAGRAMS_PER_POLL`]).
    pub fn poll(&mut self, now: Instant) {
        let mut buf = [0u8; MAX_MESSAGE_BYTES + 1];
        for _ in 0..MAX_DATAGRAMS_PER_POLL {
            let Some(len) = self.recv(&mut buf) else { break };
            match parse(&buf[..len.min(buf.len())]) {
                Some(a) => self.table.note(&a, now),
                None => self.malformed += 1,
            }
        }
        self.table.expire(now);
        if now.duration_since(self.last_scan) >= INTERFACE_RESCAN {
            self.last_scan = now;
            let _ = self.join_interfaces();
        }
    }
}

/// The IPv4 addresses of the running interfaces (as Link scans them).
fn ipv4_interfaces() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs frees;
    // each node is read only while the list lives, and its address only when its
    // family says it is a sockaddr_in.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return vec![Ipv4Addr::LOCALHOST];
        }
        let mut p = list;
        while !p.is_null() {
            let ifa = &*p;
            if !ifa.ifa_addr.is_null()
                && ifa.ifa_flags & libc::IFF_RUNNING as libc::c_uint != 0
                && (*ifa.ifa_addr).sa_family as libc::c_int == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A message as Link encodes it (the format above), for tests.
    pub fn encode(kind: u8, node: NodeId, session: NodeId, tl: Timeline, ss: Option<StartStop>) -> Vec<u8> {
        let mut m = PROTOCOL_HEADER.to_vec();
        m.extend([kind, 5, 0, 0]);
        m.extend(node);
        if kind == 3 {
            return m;
        }
        m.extend(KEY_TIMELINE.to_be_bytes());
        m.extend(24u32.to_be_bytes());
        m.extend(tl.micros_per_beat.to_be_bytes());
        m.extend(tl.beat_origin_ubeats.to_be_bytes());
        m.extend(tl.time_origin_us.to_be_bytes());
        m.extend(KEY_SESSION.to_be_bytes());
        m.extend(8u32.to_be_bytes());
        m.extend(session);
        if let Some(s) = ss {
            m.extend(KEY_START_STOP.to_be_bytes());
            m.extend(17u32.to_be_bytes());
            m.push(s.playing as u8);
            m.extend(s.beats_ubeats.to_be_bytes());
            m.extend(s.timestamp_us.to_be_bytes());
        }
        // An endpoint entry (mep4: address and port), skipped by the parser.
        m.extend(u32::from_be_bytes(*b"mep4").to_be_bytes());
        m.extend(6u32.to_be_bytes());
        m.extend([127, 0, 0, 1, 0x9c, 0x40]);
        m
    }

    fn tl(bpm: f64) -> Timeline {
        Timeline { micros_per_beat: (60e6 / bpm).round() as i64, beat_origin_ubeats: 0, time_origin_us: 1_000 }
    }

    fn ss(playing: bool, timestamp_us: i64) -> Option<StartStop> {
        Some(StartStop { playing, beats_ubeats: 0, timestamp_us })
    }

    #[test]
    fn an_announcement_is_read_entry_by_entry() {
        let m = encode(1, [1; 8], [2; 8], tl(131.5), ss(true, 77));
        let a = parse(&m).expect("parsed");
        assert_eq!(a.kind, Kind::Alive);
        assert_eq!(a.ttl_s, 5);
        assert_eq!(a.node, [1; 8]);
        assert_eq!(a.session, Some([2; 8]));
        assert!(a.timeline.unwrap().is_tempo(131.5));
        assert!((a.timeline.unwrap().bpm() - 131.5).abs() < 1e-3);
        assert_eq!(a.start_stop, ss(true, 77));
        assert_eq!(parse(&encode(3, [1; 8], [0; 8], tl(1.0), None)).unwrap().kind, Kind::ByeBye);
    }

    #[test]
    fn what_link_would_refuse_is_refused() {
        let m = encode(2, [1; 8], [2; 8], tl(120.0), ss(false, 0));
        let mut other_group = m.clone();
        other_group[11] = 1;
        assert_eq!(parse(&other_group), None);
        let mut bad_type = m.clone();
        bad_type[8] = 9;
        assert_eq!(parse(&bad_type), None);
        let mut bad_header = m.clone();
        bad_header[7] = 2;
        assert_eq!(parse(&bad_header), None);
        // A cut entry, at every length short of the whole.
        for len in 0..m.len() {
            let cut = &m[..len];
            let whole_entries = len >= HEADER_BYTES && parse(cut).is_some();
            // Only a cut exactly between entries is still a message.
            assert!(
                !whole_entries
                    || [HEADER_BYTES, HEADER_BYTES + 32, HEADER_BYTES + 48, HEADER_BYTES + 73].contains(&len)
            );
        }
        // A known entry of the wrong size.
        let mut wrong = m.clone();
        wrong[HEADER_BYTES + 7] = 23;
        assert_eq!(parse(&wrong), None);
        // A size past the end, and one that would overflow.
        let mut past = m.clone();
        past[HEADER_BYTES + 4..HEADER_BYTES + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(&past), None);
        // A tempo of zero.
        let zero = encode(1, [1; 8], [2; 8], Timeline { micros_per_beat: 0, ..tl(120.0) }, None);
        assert_eq!(parse(&zero), None);
        // Too long to be Link's.
        let mut long = m.clone();
        long.extend(vec![0u8; MAX_MESSAGE_BYTES]);
        assert_eq!(parse(&long), None);
    }

    /// Mutated and random datagrams, seeded: parsed or refused, never a panic, and
    /// the table stays within its bound.
    #[test]
    fn fuzzed_datagrams_never_panic() {
        use rand::RngExt;
        let mut rng = rand_pcg::Pcg32::new(13, 7);
        let seeds = [
            encode(1, [1; 8], [1; 8], tl(120.0), ss(true, 5)),
            encode(2, [9; 8], [1; 8], tl(97.25), None),
            encode(3, [4; 8], [0; 8], tl(1.0), None),
        ];
        let mut table = PeerTable::default();
        let now = Instant::now();
        let mut taken = 0;
        for i in 0..30_000 {
            let mut m = seeds[i % seeds.len()].clone();
            match rng.random_range(0..5u32) {
                0 => {
                    for _ in 0..rng.random_range(1..6) {
                        let at = rng.random_range(0..m.len());
                        m[at] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => m.truncate(rng.random_range(0..m.len())),
                2 => {
                    let n = rng.random_range(0..80);
                    m.extend((0..n).map(|_| rng.random::<u8>()));
                }
                3 => {
                    // Random bytes after a valid header.
                    m.truncate(HEADER_BYTES);
                    let n = rng.random_range(0..600);
                    m.extend((0..n).map(|_| rng.random::<u8>()));
                }
                _ => {
                    let n = rng.random_range(0..700);
                    m = (0..n).map(|_| rng.random::<u8>()).collect();
                }
            }
            if let Some(a) = parse(&m) {
                taken += 1;
                table.note(&a, now);
                let _ = table.session_at(120.0, 1);
            }
            assert!(table.len() <= MAX_NODES);
        }
        assert!(taken > 100, "some mutations stay messages: {taken}");
    }

    /// Issue 13, item 7: a newcomer is not told that its session plays; its peers'
    /// announcements say so. The newest start/stop state of the session at the
    /// tempo jamrig follows is the session's.
    #[test]
    fn the_session_at_the_tempo_says_whether_it_plays() {
        let now = Instant::now();
        let mut t = PeerTable::default();
        assert_eq!(t.session_at(120.0, 1), Heard::Nothing);
        // The peer founded session P and plays.
        let peer = parse(&encode(1, [1; 8], [1; 8], tl(120.0), ss(true, 5_000))).unwrap();
        t.note(&peer, now);
        // jamrig, still in its own session at the same tempo: two sessions could be
        // it, neither with jamrig's peer count: no guess.
        let own = parse(&encode(1, [2; 8], [2; 8], tl(120.0), ss(false, 0))).unwrap();
        t.note(&own, now);
        assert_eq!(t.session_at(120.0, 1), Heard::Ambiguous);
        // jamrig joins P (its start/stop state reset): P has 2 members.
        let joined = parse(&encode(1, [2; 8], [1; 8], tl(120.0), ss(false, 0))).unwrap();
        t.note(&joined, now);
        assert_eq!(t.session_at(120.0, 1), Heard::Playing);
        // Another tempo: not this session.
        assert_eq!(t.session_at(121.0, 1), Heard::Nothing);
        // jamrig stops it: its newer state wins over the peer's older play.
        let stopped = parse(&encode(1, [2; 8], [1; 8], tl(120.0), ss(false, 9_000))).unwrap();
        t.note(&stopped, now);
        assert_eq!(t.session_at(120.0, 1), Heard::Stopped);
        // A third node in another session at the same tempo, with one member:
        // P (2 members, jamrig and one peer) is still told apart.
        let other = parse(&encode(1, [3; 8], [3; 8], tl(120.0), ss(true, 1))).unwrap();
        t.note(&other, now);
        assert_eq!(t.session_at(120.0, 1), Heard::Stopped);
        // The peer says bye; then P has jamrig alone, as has the other session its
        // founder: ambiguous.
        t.note(&parse(&encode(3, [1; 8], [0; 8], tl(1.0), None)).unwrap(), now);
        assert_eq!(t.session_at(120.0, 1), Heard::Ambiguous);
        // TTLs run out (5 s): nothing left.
        t.expire(now + Duration::from_secs(6));
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_counts_what_it_drops() {
        let now = Instant::now();
        let mut t = PeerTable::default();
        for i in 0..(MAX_NODES + 10) {
            let id = (i as u64).to_be_bytes();
            t.note(&parse(&encode(1, id, id, tl(120.0), None)).unwrap(), now);
        }
        assert_eq!(t.len(), MAX_NODES);
        assert_eq!(t.overflow, 10);
    }
}
