//! Test inputs for "never panics on input" tests: seeds mutated at random (bytes replaced,
//! cut or inserted), from a fixed xorshift state, so a failure repeats.

/// `n` mutations of `seeds` (taken in turn), 0–7 edits each, from `state` (non-zero).
pub fn mutations(seeds: &[&[u8]], n: usize, mut state: u64) -> Vec<Vec<u8>> {
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let mut b = seeds[i % seeds.len()].to_vec();
            for _ in 0..(next() % 8) {
                let at = (next() as usize) % (b.len() + 1);
                match next() % 3 {
                    0 if at < b.len() => b[at] = next() as u8,
                    1 if at < b.len() => b.truncate(at),
                    _ => b.insert(at, next() as u8),
                }
            }
            b
        })
        .collect()
}
