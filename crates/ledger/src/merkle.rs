//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.
//!
//! Leaf hash = SHA-256(0x00 ‖ leaf bytes), node hash = SHA-256(0x01 ‖ left ‖
//! right), the root of the empty tree is SHA-256 of nothing. The split of a
//! tree of `n > 1` leaves is at `k`, the largest power of two below `n`.
//! Proof generation follows the RFC's `PATH` and `SUBPROOF` definitions;
//! verification follows transparency-dev/merkle's `proof` package and
//! rejects every corrupted proof in its test vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// An inclusion proof was asked for a leaf the tree does not hold.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexBeyondSize {
        /// The leaf index (the entry's seq).
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from the empty tree.
    #[error("a consistency proof from the empty tree proves nothing; size 0 is not allowed")]
    EmptyOldTree,
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {size1} is larger than new tree size {size2}")]
    SizesReversed {
        /// The old tree's size.
        size1: u64,
        /// The new tree's size.
        size2: u64,
    },
    /// The proof has too few or too many hashes for the sizes: it is for
    /// other sizes, or was truncated.
    #[error("the proof has {got} hashes; a proof for these sizes has {want}")]
    WrongProofSize {
        /// Hashes in the proof.
        got: usize,
        /// Hashes a proof for these sizes has.
        want: usize,
    },
    /// A hash given (hex-decoded) is not 32 bytes long.
    #[error("a hash in the proof (or the leaf hash) is {got} bytes, not 32")]
    WrongHashSize {
        /// Its length in bytes.
        got: usize,
    },
    /// The proof does not lead to the root it is checked against: the
    /// entry or the earlier tree is not part of that tree.
    #[error("the proof leads to root {computed}, not the expected {expected}")]
    RootMismatch {
        /// The root the proof leads to (hex).
        computed: String,
        /// The root it was checked against (hex).
        expected: String,
    },
}

/// SHA-256(0x00 ‖ data): the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right): the hash of an interior node.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut tree = TreeBuilder::new();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree.root()
}

/// Builds the root incrementally: O(log n) memory, one node hash per leaf
/// on average. Used by the writer and by verification, which see the leaves
/// one at a time.
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    /// Roots of the perfect subtrees covering the leaves so far, largest
    /// first, with their sizes (distinct powers of two, decreasing).
    stack: Vec<(Hash, u64)>,
    size: u64,
}

impl TreeBuilder {
    /// The builder of the empty tree.
    pub fn new() -> TreeBuilder {
        TreeBuilder::default()
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = 1;
        while let Some(&(left, left_size)) = self.stack.last() {
            if left_size != size {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            size *= 2;
        }
        self.stack.push((hash, size));
        self.size += 1;
    }

    /// Appends the root of a perfect subtree of `size` leaves (a power of
    /// two); the tree's size must be a multiple of `size`, so the subtree
    /// is exactly the one the leaves would have built.
    pub fn push_subtree(&mut self, root: Hash, size: u64) {
        assert!(size.is_power_of_two() && self.size.is_multiple_of(size));
        let mut hash = root;
        let mut height = size;
        while let Some(&(left, left_size)) = self.stack.last() {
            if left_size != height {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            height *= 2;
        }
        self.stack.push((hash, height));
        self.size += size;
    }

    /// The root of the tree of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(mut acc, _)) = iter.next() else {
            return empty_root();
        };
        for (left, _) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the
/// first `size` leaves. Panics unless `index < size <= leaves.len()`.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Vec<Hash> {
    assert!(index < size && size as usize <= leaves.len());
    let mut out = Vec::new();
    path(index as usize, &leaves[..size as usize], &mut out);
    out
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The consistency proof between the trees of the first `size1` and the
/// first `size2` leaves. Panics unless `0 < size1 <= size2 <= leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], size1: u64, size2: u64) -> Vec<Hash> {
    assert!(0 < size1 && size1 <= size2 && size2 as usize <= leaves.len());
    let mut out = Vec::new();
    if size1 < size2 {
        subproof(size1 as usize, &leaves[..size2 as usize], true, &mut out);
    }
    out
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Inclusion proofs of chosen leaves in the tree of `size` leaves, gathered
/// in **one pass** over the leaves: [`ProofCollector::push`] each leaf in
/// order, saying whether its proof is wanted, then
/// [`ProofCollector::finish`]. Memory is O(log n) plus O(log n) per wanted
/// leaf, time O(n + k log n) for k wanted leaves — where asking
/// [`inclusion_proof`] once per leaf would cost O(k n) and keep every leaf.
///
/// Why it works: every hash on a leaf's audit path (RFC 9162 §2.1.3.1) is
/// the root of a perfect, aligned subtree — those to the left of the leaf
/// are on the builder's stack when the leaf arrives, those to its right
/// are made by a merge later — except at most one: the right sibling on
/// the tree's right border, an imperfect range ending at `size`, whose
/// root is that of the stack's last entries once every leaf is in.
#[derive(Debug)]
pub struct ProofCollector {
    size: u64,
    next: u64,
    /// Perfect subtrees covering `[0, next)`: (root, start, length).
    stack: Vec<(Hash, u64, u64)>,
    proofs: Vec<CollectedProof>,
    /// (start, length) of a perfect subtree still to come → the proof
    /// slots waiting for its root.
    waiting: std::collections::HashMap<(u64, u64), Vec<(usize, usize)>>,
    /// Slots waiting for the root of `[start, size)`: (proof, slot, start).
    border: Vec<(usize, usize, u64)>,
}

/// One leaf's inclusion proof, as [`ProofCollector::finish`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectedProof {
    /// The leaf's index.
    pub index: u64,
    /// The leaf's hash.
    pub leaf_hash: Hash,
    /// The audit path, from the leaf up (as [`inclusion_proof`] gives it).
    pub proof: Vec<Hash>,
}

/// The ranges `[start, end)` whose roots make up the audit path of leaf
/// `m` in the tree over `[lo, hi)`, from the leaf up (RFC 9162 `PATH`).
fn path_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n as usize) as u64;
    if m - lo < k {
        path_ranges(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        path_ranges(m, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

impl ProofCollector {
    /// A collector for proofs in the tree of the first `size` leaves.
    pub fn new(size: u64) -> ProofCollector {
        ProofCollector {
            size,
            next: 0,
            stack: Vec::new(),
            proofs: Vec::new(),
            waiting: std::collections::HashMap::new(),
            border: Vec::new(),
        }
    }

    /// How many leaves were pushed.
    pub fn pushed(&self) -> u64 {
        self.next
    }

    /// Takes in the next leaf (index [`ProofCollector::pushed`]); `want`
    /// asks for its proof. Leaves past `size` are ignored.
    pub fn push(&mut self, leaf: Hash, want: bool) {
        let index = self.next;
        if index >= self.size {
            return;
        }
        if want {
            let mut ranges = Vec::new();
            path_ranges(index, 0, self.size, &mut ranges);
            let p = self.proofs.len();
            self.proofs.push(CollectedProof {
                index,
                leaf_hash: leaf,
                proof: vec![[0; 32]; ranges.len()],
            });
            for (slot, (start, end)) in ranges.into_iter().enumerate() {
                let len = end - start;
                if end <= index {
                    // Left of the leaf: a perfect subtree on the stack.
                    if let Some((root, _, _)) =
                        self.stack.iter().find(|(_, s, l)| *s == start && *l == len)
                    {
                        self.proofs[p].proof[slot] = *root;
                    }
                } else if len.is_power_of_two() && start.is_multiple_of(len) {
                    self.waiting
                        .entry((start, len))
                        .or_default()
                        .push((p, slot));
                } else {
                    self.border.push((p, slot, start));
                }
            }
        }
        self.made(leaf, index, 1);
        let mut hash = leaf;
        let mut len = 1;
        let mut start = index;
        while let Some(&(left, left_start, left_len)) = self.stack.last() {
            if left_len != len {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            len *= 2;
            start = left_start;
            self.made(hash, start, len);
        }
        self.stack.push((hash, start, len));
        self.next += 1;
    }

    /// A perfect subtree's root is known: fill the slots waiting for it.
    fn made(&mut self, root: Hash, start: u64, len: u64) {
        if let Some(slots) = self.waiting.remove(&(start, len)) {
            for (p, slot) in slots {
                self.proofs[p].proof[slot] = root;
            }
        }
    }

    /// The proofs of the wanted leaves, in leaf order, and the root of the
    /// tree; `None` unless exactly `size` leaves were pushed.
    pub fn finish(mut self) -> Option<(Vec<CollectedProof>, Hash)> {
        if self.next != self.size {
            return None;
        }
        let root_from = |stack: &[(Hash, u64, u64)], from: u64| -> Option<Hash> {
            let first = stack.iter().position(|(_, s, _)| *s == from)?;
            let mut iter = stack[first..].iter().rev();
            let (mut acc, _, _) = *iter.next()?;
            for (left, _, _) in iter {
                acc = node_hash(left, &acc);
            }
            Some(acc)
        };
        for (p, slot, start) in std::mem::take(&mut self.border) {
            self.proofs[p].proof[slot] = root_from(&self.stack, start)?;
        }
        if !self.waiting.is_empty() {
            return None;
        }
        let root = if self.size == 0 {
            empty_root()
        } else {
            root_from(&self.stack, 0)?
        };
        Some((self.proofs, root))
    }
}

fn check_len(h: &[u8]) -> Result<(), ProofError> {
    if h.len() == 32 {
        Ok(())
    } else {
        Err(ProofError::WrongHashSize { got: h.len() })
    }
}

fn verify_match(computed: &[u8], expected: &[u8]) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            computed: hex::encode(computed),
            expected: hex::encode(expected),
        })
    }
}

/// (inner, border): the number of proof hashes below the point where the
/// path to `index` leaves the path to the last leaf, and above it.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

fn chain_inner<P: AsRef<[u8]>>(seed: Hash, proof: &[P], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 0 {
            node_hash(&acc, h.as_ref())
        } else {
            node_hash(h.as_ref(), &acc)
        }
    })
}

fn chain_inner_right<P: AsRef<[u8]>>(seed: Hash, proof: &[P], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 1 {
            node_hash(h.as_ref(), &acc)
        } else {
            acc
        }
    })
}

fn chain_border_right<P: AsRef<[u8]>>(seed: Hash, proof: &[P]) -> Hash {
    proof
        .iter()
        .fold(seed, |acc, h| node_hash(h.as_ref(), &acc))
}

/// The root an inclusion proof leads to.
pub fn root_from_inclusion_proof<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    check_len(leaf_hash)?;
    for h in proof {
        check_len(h.as_ref())?;
    }
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want: inner + border,
        });
    }
    let seed: Hash = leaf_hash.try_into().expect("length checked");
    let acc = chain_inner(seed, &proof[..inner], index);
    Ok(chain_border_right(acc, &proof[inner..]))
}

/// Checks that leaf `index` with hash `leaf_hash` is in the tree of `size`
/// leaves with root `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(index, size, leaf_hash, proof)?;
    verify_match(&computed, root)
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree
/// of `size1` leaves with root `root1`. `size1` must not be 0: every tree
/// extends the empty one, so such a proof says nothing and is refused.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size2 < size1 {
        return Err(ProofError::SizesReversed { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofSize {
                got: proof.len(),
                want: 0,
            });
        }
        return verify_match(root1, root2);
    }
    for h in proof {
        check_len(h.as_ref())?;
    }
    let (inner, border) = decompose(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    let inner = inner - shift;
    // The proof starts with the root of the subtree of size 2^shift, unless
    // the old tree is exactly that subtree, whose root the caller knows.
    let (seed, rest): (Hash, &[P]) = if size1 == 1 << shift {
        check_len(root1)?;
        (root1.try_into().expect("length checked"), proof)
    } else {
        let want = 1 + inner + border;
        let Some((first, rest)) = proof.split_first() else {
            return Err(ProofError::WrongProofSize { got: 0, want });
        };
        (first.as_ref().try_into().expect("length checked"), rest)
    };
    if rest.len() != inner + border {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want: proof.len() - rest.len() + inner + border,
        });
    }
    let mask = (size1 - 1) >> shift;
    let hash1 = chain_inner_right(seed, &rest[..inner], mask);
    let hash1 = chain_border_right(hash1, &rest[inner..]);
    verify_match(&hash1, root1)?;
    let hash2 = chain_inner(seed, &rest[..inner], mask);
    let hash2 = chain_border_right(hash2, &rest[inner..]);
    verify_match(&hash2, root2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    /// The RFC's recursive definition, independent of `TreeBuilder`.
    fn mth(l: &[Hash]) -> Hash {
        match l.len() {
            0 => empty_root(),
            1 => l[0],
            n => {
                let k = split(n);
                node_hash(&mth(&l[..k]), &mth(&l[k..]))
            }
        }
    }

    #[test]
    fn split_is_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1025, 1024)] {
            assert_eq!(split(n), k, "n={n}");
        }
    }

    #[test]
    fn builder_matches_recursive_definition() {
        let l = leaves(70);
        let mut b = TreeBuilder::new();
        assert_eq!(b.root(), mth(&[]));
        for n in 1..=70 {
            b.push(l[n - 1]);
            assert_eq!(b.root(), mth(&l[..n]), "n={n}");
            assert_eq!(b.size(), n as u64);
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_up_to_33_leaves() {
        let l = leaves(33);
        for size in 1..=33u64 {
            let r = mth(&l[..size as usize]);
            for index in 0..size {
                let p = inclusion_proof(&l, index, size);
                verify_inclusion(index, size, &l[index as usize], &p, &r).unwrap();
                // The same proof for a neighbouring leaf fails.
                let other = (index + 1) % size;
                if other != index {
                    assert!(verify_inclusion(other, size, &l[index as usize], &p, &r).is_err());
                }
            }
            for size1 in 1..=size {
                let p = consistency_proof(&l, size1, size);
                let r1 = mth(&l[..size1 as usize]);
                verify_consistency(size1, size, &p, &r1, &r).unwrap();
                if size1 < size {
                    assert!(verify_consistency(size1, size, &p, &r, &r1).is_err());
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_consistency(size1, size, &bad, &r1, &r).is_err());
                }
            }
        }
    }

    #[test]
    fn one_pass_proofs_equal_the_proofs_asked_one_by_one() {
        let l = leaves(70);
        for size in 0..=70u64 {
            for pick in [1u64, 2, 3, 7] {
                let mut c = ProofCollector::new(size);
                for (i, leaf) in l.iter().enumerate() {
                    c.push(*leaf, (i as u64).is_multiple_of(pick));
                }
                // Leaves past the tree are ignored; exactly `size` count.
                let (proofs, root) = c.finish().unwrap();
                assert_eq!(root, mth(&l[..size as usize]), "size={size}");
                let wanted: Vec<u64> = (0..size).filter(|i| i.is_multiple_of(pick)).collect();
                assert_eq!(proofs.len(), wanted.len());
                for (p, index) in proofs.iter().zip(wanted) {
                    assert_eq!(p.index, index);
                    assert_eq!(p.leaf_hash, l[index as usize]);
                    assert_eq!(
                        p.proof,
                        inclusion_proof(&l, index, size),
                        "size={size} index={index}"
                    );
                    verify_inclusion(index, size, &p.leaf_hash, &p.proof, &root).unwrap();
                }
            }
        }
        // Too few leaves: no proofs.
        let mut c = ProofCollector::new(5);
        c.push(l[0], true);
        assert!(c.finish().is_none());
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn random_proofs_verify_and_tampering_fails(
            size in 1u64..300, a in any::<u64>(), b in any::<u64>(), bit in 0usize..256
        ) {
            let l = leaves(size as usize);
            let index = a % size;
            let r = root(&l);
            let mut p = inclusion_proof(&l, index, size);
            prop_assert!(verify_inclusion(index, size, &l[index as usize], &p, &r).is_ok());
            if !p.is_empty() {
                let i = (b as usize) % p.len();
                p[i][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_inclusion(index, size, &l[index as usize], &p, &r).is_err());
            }
            let size1 = 1 + b % size;
            let r1 = root(&l[..size1 as usize]);
            let mut c = consistency_proof(&l, size1, size);
            prop_assert!(verify_consistency(size1, size, &c, &r1, &r).is_ok());
            if !c.is_empty() {
                let i = (a as usize) % c.len();
                c[i][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_consistency(size1, size, &c, &r1, &r).is_err());
            }
        }
    }
}
