//! Port blocks: thread N holds `base + N * block_size ..+ block_size`, and
//! named slots are offsets inside the block. Block 0 is left to the main
//! checkout, which keeps its usual ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use crate::error::{Diagnostic, ErrorKind};
use thiserror::Error;

use crate::thread::PortRange;

/// How ports are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLayout {
    pub base: u16,
    pub block_size: u16,
    pub slots: BTreeMap<String, u16>,
}

/// A block given to one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBlock {
    pub range: PortRange,
    pub named: BTreeMap<String, u16>,
}

/// A block passed over because one of its named ports was in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBlock {
    pub id: u32,
    pub port: u16,
    pub slot: String,
    pub reason: String,
}

impl std::fmt::Display for SkippedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped block {} (thread {}): port {} ({}) {}", self.id, self.id, self.port, self.slot, self.reason)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortsError {
    #[error("all {max} port blocks are taken ({held} held by threads{busy})")]
    Exhausted { max: u32, held: usize, busy: String },
}

impl Diagnostic for PortsError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }

    fn hint(&self) -> Option<String> {
        Some("free one with `iso cleanup <thread>`, or raise threads.max in iso.toml".into())
    }

    fn code(&self) -> &'static str {
        "no_ports"
    }
}

impl PortLayout {
    /// The block of thread `id`.
    pub fn block(&self, id: u32) -> PortBlock {
        let start = self.base as u32 + id * self.block_size as u32;
        let end = start + self.block_size as u32 - 1;
        let named = self.slots.iter().map(|(name, off)| (name.clone(), (start + *off as u32) as u16)).collect();
        PortBlock { range: PortRange { start: start as u16, end: end as u16 }, named }
    }

    /// Pick the lowest id in `1..=max` that no live thread holds and whose
    /// named ports are all free right now. Busy blocks are returned so the
    /// caller can say why they were passed over.
    pub fn allocate(&self, max: u32, held: &BTreeSet<u32>) -> Result<(u32, PortBlock, Vec<SkippedBlock>), PortsError> {
        let mut skipped = Vec::new();
        for id in (1..=max).filter(|id| !held.contains(id)) {
            let block = self.block(id);
            match probe(&block) {
                Ok(()) => return Ok((id, block, skipped)),
                Err(busy) => skipped.push(SkippedBlock { id, ..busy }),
            }
        }
        let busy = if skipped.is_empty() { String::new() } else { format!(", {} with ports in use by other programs", skipped.len()) };
        Err(PortsError::Exhausted { max, held: held.len(), busy })
    }
}

/// Check that every named port of `block` can be bound, on 127.0.0.1 and on
/// 0.0.0.0: a service published on either would collide.
pub fn probe(block: &PortBlock) -> Result<(), SkippedBlock> {
    for (slot, &port) in &block.named {
        for ip in [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED] {
            if let Err(e) = TcpListener::bind(SocketAddrV4::new(ip, port)) {
                return Err(SkippedBlock { id: 0, port, slot: slot.clone(), reason: format!("is busy on {ip} ({e})") });
            }
        }
    }
    Ok(())
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(base: u16) -> PortLayout {
        PortLayout { base, block_size: 100, slots: [("postgres", 0), ("redis", 1), ("api", 2)].into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }

    #[test]
    fn blocks_follow_the_documented_formula() {
        let l = layout(10000);
        assert_eq!(l.block(1).range, PortRange { start: 10100, end: 10199 });
        assert_eq!(l.block(10).range, PortRange { start: 11000, end: 11099 });
        assert_eq!(l.block(1).named["redis"], 10101);
        assert_eq!(l.block(2).named["api"], 10202);
    }

    #[test]
    fn allocation_skips_held_and_busy_blocks() {
        // A window of our own (11100-11699), below the kernel's ephemeral
        // range (32768+) where a client socket of another test could hold
        // one of these ports and make a block look busy.
        let l = layout(11100);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 11301)).unwrap();
        let held: BTreeSet<u32> = [1].into();
        let (id, block, skipped) = l.allocate(5, &held).unwrap();
        assert_eq!(id, 3, "1 is held, 2 has redis busy");
        assert_eq!(block.range.start, 11400);
        assert_eq!(skipped.len(), 1);
        assert_eq!((skipped[0].id, skipped[0].port, skipped[0].slot.as_str()), (2, 11301, "redis"));
        drop(listener);
    }

    #[test]
    fn exhaustion_says_how_many_are_held() {
        let l = layout(11700);
        let held: BTreeSet<u32> = [1, 2].into();
        let err = l.allocate(2, &held).unwrap_err();
        assert_eq!(err, PortsError::Exhausted { max: 2, held: 2, busy: String::new() });
        assert!(crate::error::with_hint(&err).contains("iso cleanup"));
    }
}
