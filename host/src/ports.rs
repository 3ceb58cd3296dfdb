//! Port blocks: block K is `base + K * block_size ..+ block_size`, and named
//! slots are offsets inside the block. Thread N gets block N when that block
//! is free machine-wide (no other repository's lease overlaps it, see
//! [`crate::ledger`]) and its named ports can be bound; otherwise the lowest
//! free block from 1 up. Block 0 is left to the main checkout, which keeps
//! its usual ports.

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
    /// The block's index K (ports `base + K * block_size`).
    pub block: u32,
    pub port: u16,
    pub slot: String,
    pub reason: String,
}

impl std::fmt::Display for SkippedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped block {}: port {} ({}) {}", self.block, self.port, self.slot, self.reason)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortsError {
    #[error("all {max} thread ids are taken ({held} threads live)")]
    Exhausted { max: u32, held: usize },
    #[error("no free port block from {base} up ({leased} held by threads of this machine's repositories, {busy} with ports in use by other programs)")]
    NoFreeBlock { base: u16, leased: usize, busy: usize },
}

impl Diagnostic for PortsError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            PortsError::Exhausted { .. } => "free one with `iso cleanup <thread>`, or raise threads.max in iso.toml".into(),
            PortsError::NoFreeBlock { .. } => {
                "free one with `iso cleanup <thread>` (`iso ports --all` shows who holds what), or lower ports.base in iso.toml".into()
            }
        })
    }

    fn code(&self) -> &'static str {
        "no_ports"
    }
}

impl PortLayout {
    /// Block `index` (the block thread `index` gets when it is free).
    pub fn block(&self, index: u32) -> PortBlock {
        let start = self.base as u32 + index * self.block_size as u32;
        let end = start + self.block_size as u32 - 1;
        let named = self.slots.iter().map(|(name, off)| (name.clone(), (start + *off as u32) as u16)).collect();
        PortBlock { range: PortRange { start: start as u16, end: end as u16 }, named }
    }

    /// The highest block index that still ends at or below port 65535.
    fn last_index(&self) -> u32 {
        let size = self.block_size.max(1) as u32;
        (65536u32.saturating_sub(self.base as u32) / size).saturating_sub(1)
    }

    /// The block for thread `id`: block `id` when no range in `taken`
    /// overlaps it and its named ports are free right now, else the lowest
    /// such block from 1 up. Blocks passed over for busy ports are returned
    /// so the caller can say why.
    pub fn allocate(&self, id: u32, taken: &[PortRange]) -> Result<(PortBlock, Vec<SkippedBlock>), PortsError> {
        let mut skipped = Vec::new();
        let mut leased = 0;
        let candidates = std::iter::once(id).chain((1..=self.last_index()).filter(|k| *k != id));
        for index in candidates.filter(|k| (1..=self.last_index()).contains(k)) {
            let block = self.block(index);
            if taken.iter().any(|t| t.start <= block.range.end && block.range.start <= t.end) {
                leased += 1;
                continue;
            }
            match probe(&block) {
                Ok(()) => return Ok((block, skipped)),
                Err(busy) => skipped.push(SkippedBlock { block: index, ..busy }),
            }
        }
        Err(PortsError::NoFreeBlock { base: self.base, leased, busy: skipped.len() })
    }
}

/// The lowest id in `1..=max` no live thread holds.
pub fn free_id(max: u32, held: &BTreeSet<u32>) -> Result<u32, PortsError> {
    (1..=max).find(|id| !held.contains(id)).ok_or(PortsError::Exhausted { max, held: held.len() })
}

/// Check that every named port of `block` can be bound, on 127.0.0.1 and on
/// 0.0.0.0: a service published on either would collide.
pub fn probe(block: &PortBlock) -> Result<(), SkippedBlock> {
    for (slot, &port) in &block.named {
        for ip in [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED] {
            if let Err(e) = TcpListener::bind(SocketAddrV4::new(ip, port)) {
                return Err(SkippedBlock { block: 0, port, slot: slot.clone(), reason: format!("is busy on {ip} ({e})") });
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
    fn allocation_keeps_the_ids_block_else_takes_the_next_free_one() {
        // A window of our own (11100-12599), below the kernel's ephemeral
        // range (32768+) where a client socket of another test could hold
        // one of these ports and make a block look busy.
        let l = layout(11100);
        let (block, skipped) = l.allocate(3, &[]).unwrap();
        assert_eq!((block.range.start, skipped.len()), (11400, 0), "thread 3 keeps block 3 when it is free");
        // Block 3 leased elsewhere, block 2's redis busy: block 1 is the lowest free.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 11301)).unwrap();
        let (block, _) = l.allocate(3, &[l.block(3).range]).unwrap();
        assert_eq!(block.range.start, 11200);
        let (block, skipped) = l.allocate(3, &[l.block(3).range, l.block(1).range]).unwrap();
        assert_eq!(block.range.start, 11500, "1 and 3 leased, 2 busy");
        assert_eq!((skipped[0].block, skipped[0].port, skipped[0].slot.as_str()), (2, 11301, "redis"));
        // A lease that only overlaps a block (another repository's other base) takes it too.
        let odd = PortRange { start: 11150, end: 11249 };
        assert_eq!(l.allocate(1, &[odd]).unwrap().0.range.start, 11400, "1 overlaps, 2 busy, 3 free");
        drop(listener);
    }

    #[test]
    fn exhaustion_says_how_many_are_held() {
        let held: BTreeSet<u32> = [1, 2].into();
        assert_eq!(free_id(3, &held), Ok(3));
        let err = free_id(2, &held).unwrap_err();
        assert_eq!(err, PortsError::Exhausted { max: 2, held: 2 });
        assert!(crate::error::with_hint(&err).contains("iso cleanup"));
        let top = PortLayout { base: 65000, block_size: 300, slots: BTreeMap::new() };
        assert_eq!(top.last_index(), 0, "block 1 (65300-65599) would pass 65535");
        assert!(matches!(top.allocate(1, &[]), Err(PortsError::NoFreeBlock { .. })));
    }
}
