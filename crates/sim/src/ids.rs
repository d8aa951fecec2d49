//! Opaque ids that are unique by construction and deterministic.
//!
//! Each id is a keyed bijection of a unique index (person, then a per-person counter), so two
//! ids of one space never collide, and an id reveals neither its owner nor its neighbours: a
//! resolver cannot cheat by reading ids.

/// What an id names; each space has its own key, so equal indexes give unrelated ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSpace {
    Case = 1,
    Session,
    Call,
    Visitor,
    Message,
    Post,
    Account,
}

/// splitmix64: a good 64-bit mixer, used to derive keys and seeds.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The seed of stream `stream` of a generation seeded with `seed`.
pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// A bijection on `0..2^bits` (xor-shifts and odd multiplications modulo `2^bits`).
fn permute(mut x: u64, bits: u32) -> u64 {
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let half = bits / 2;
    x &= mask;
    x ^= x >> half;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd) & mask;
    x ^= x >> (half + 1);
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53) & mask;
    x ^ (x >> half)
}

/// Makes the ids of one world.
#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    seed: u64,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> Self {
        IdGen { seed }
    }

    fn scramble(&self, space: IdSpace, index: u64, bits: u32) -> u64 {
        let key = derive_seed(self.seed, 0x1d00 + space as u64);
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        permute((index ^ key) & mask, bits)
    }

    /// 16 hex digits, unique per `index` within `space`.
    pub(crate) fn hex(&self, space: IdSpace, index: u64) -> String {
        format!("{:016x}", self.scramble(space, index, 64))
    }

    /// A case id such as `CS-3F09A1C2B7D4`; unique for indexes below 2^48.
    pub(crate) fn case(&self, index: u64) -> String {
        format!("CS-{:012X}", self.scramble(IdSpace::Case, index, 48))
    }

    /// A CRM account id such as `A0413958201`; unique for indexes below 2^32.
    pub(crate) fn account(&self, index: u64) -> String {
        format!("A{:010}", self.scramble(IdSpace::Account, index, 32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_within_a_space() {
        let ids = IdGen::new(7);
        let mut seen = HashSet::new();
        for i in 0..20_000u64 {
            assert!(seen.insert(ids.case(i << 20 | (i % 7))));
            assert!(seen.insert(ids.account(i)));
            assert!(seen.insert(ids.hex(IdSpace::Session, i)));
        }
        assert_ne!(ids.hex(IdSpace::Session, 1), ids.hex(IdSpace::Call, 1));
    }
}
