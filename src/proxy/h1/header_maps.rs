//! Spare `HeaderMap`s, kept per thread so that each request does not allocate (and free)
//! the two vectors of a map for its own head and again for its response's.
//!
//! A map is given back once its message has been encoded onto the wire, cleared but with
//! its room kept. Only a few modest maps are kept, so a burst of requests with huge heads
//! leaves nothing large behind.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread.
const SPARES: usize = 32;
/// A map with room for more fields than this is dropped, not kept.
const LARGEST: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields`.
pub fn take(fields: usize) -> HeaderMap {
    match SPARE.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Keeps `map`'s room for a later `take`.
pub fn give_back(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > LARGEST {
        return;
    }
    map.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARES {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests share their threads: start each from no spares.
    fn no_spares() {
        SPARE.with_borrow_mut(Vec::clear);
    }

    #[test]
    fn hands_back_an_empty_map_with_its_room() {
        no_spares();
        let mut map = take(8);
        map.insert("x-a", "1".parse().unwrap());
        let room = map.capacity();
        give_back(map);
        let again = take(1);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn keeps_no_large_map() {
        no_spares();
        let mut large = HeaderMap::with_capacity(1000);
        large.insert("x-a", "1".parse().unwrap());
        give_back(large);
        assert!(take(1).capacity() <= LARGEST);
    }
}
